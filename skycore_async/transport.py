"""HTTP transports: the one place aiohttp's client session lives, and a mock for tests.

aiohttp failures are translated here, once, into the library's tree (``errors``), with the
distinction that matters for a send that has no idempotency key:

* nothing was written (connection refused, DNS, connect timeout) -> :class:`ConnectError`;
* the request may have gone out (read timeout, reset, broken reply) ->
  :class:`OutcomeUnknownError`.

Nothing here logs a request body or a GET query string: both carry the API key. Redirects are
not followed (a 307 would resend the body, key included, wherever the server points), and
errors raised for a GET never quote or chain aiohttp's exception, whose text may hold the URL.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple, Protocol

import aiohttp
from aiohttp import hdrs
from multidict import CIMultiDict, CIMultiDictProxy

from .errors import (
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    ProtocolError,
    ResponseTimeoutError,
    TransportError,
)

__all__ = [
    "AiohttpTransport",
    "HttpRequest",
    "HttpResponse",
    "MockTransport",
    "Transport",
]

log = logging.getLogger("skycore_async")

#: Replies larger than this are refused without being read whole.
DEFAULT_MAX_RESPONSE_BYTES = 1 << 20
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
#: The headers of every POST, immutable and already in aiohttp's own form (a plain dict would
#: be copied into one per request).
FORM_HEADERS: Mapping[str, str] = CIMultiDictProxy(
    CIMultiDict({hdrs.CONTENT_TYPE: FORM_CONTENT_TYPE})
)


# Requests and replies are built once per send on the bulk hot path: tuple.__new__ skips the
# NamedTuple's Python-level constructor (about half the cost).
_new_tuple = tuple.__new__


class HttpRequest(NamedTuple):
    """One HTTP request, ready to send; built once and reused for every attempt.

    ``body`` and ``url`` may contain the API key: ``repr`` hides them. (A NamedTuple rather
    than an attrs class: one is built per send on the bulk hot path.)
    """

    method: str
    url: str
    body: bytes | None = None
    headers: Mapping[str, str] = {}  # never mutated: a shared empty default is safe
    action: str = ""

    def __repr__(self) -> str:
        return f"HttpRequest(method={self.method!r}, action={self.action!r})"


class HttpResponse(NamedTuple):
    """Status, body and content type of a reply."""

    status: int
    body: bytes
    content_type: str = ""

    def __repr__(self) -> str:
        size = len(self.body)
        return f"HttpResponse(status={self.status}, content_type={self.content_type!r}, {size} B)"


class Transport(Protocol):
    """What the client needs from an HTTP layer."""

    async def send(
        self, request: HttpRequest, *, connect_timeout: float, read_timeout: float
    ) -> HttpResponse:
        """Send one request; raise a :class:`TransportError` or :class:`ProtocolError`."""
        ...

    async def aclose(self) -> None:
        """Release connections; idempotent."""
        ...


class AiohttpTransport:
    """The default transport: one ``aiohttp.ClientSession`` with a pool sized for the client.

    Args:
        pool_size: connections kept; the client passes at least its concurrency cap so no
            request waits for a connection while its timeout runs.
        max_response_bytes: replies above this are a ProtocolError, never read whole.
        ssl: passed to aiohttp; certificate verification is on by default.
    """

    def __init__(
        self,
        *,
        pool_size: int = 100,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        ssl: bool | object = True,
    ) -> None:
        self._pool_size = pool_size
        self._max_bytes = max_response_bytes
        self._ssl = ssl
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float, float], aiohttp.ClientTimeout] = {}

    def __repr__(self) -> str:
        state = "open" if self._session and not self._session.closed else "idle"
        return f"<AiohttpTransport pool_size={self._pool_size} {state}>"

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily inside the running loop, as aiohttp requires.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, ssl=self._ssl)  # type: ignore[arg-type]
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
            # aiohttp silently resends a GET once when a kept-alive connection drops. A GET
            # send is not idempotent here (no idempotency key): a resend may text someone
            # twice, so retries stay the retry policy's decision alone.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
        return self._session

    async def send(
        self, request: HttpRequest, *, connect_timeout: float, read_timeout: float
    ) -> HttpResponse:
        """Send ``request``; map aiohttp's failures into the library's errors."""
        timeout = self._timeouts.get((connect_timeout, read_timeout)) or self._timeout(
            connect_timeout, read_timeout
        )
        started = time.perf_counter() if log.isEnabledFor(logging.DEBUG) else 0.0
        try:
            async with self._get_session().request(
                request.method,
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
                if 300 <= status < 400:
                    raise ProtocolError(
                        f"HTTP {status}: redirect refused (the request carries the API key; "
                        "set base_url to the final endpoint)",
                        status=status,
                    )
                # Header names as aiohttp's istr constants: a plain str key costs a case fold
                # per lookup, and this runs once per send.
                headers = response.headers
                length = response.content_length
                # A compressed reply's Content-Length is its compressed size: stream it, so
                # the cap applies to what it inflates to (a gzip bomb is refused, not read).
                if (
                    length is not None
                    and length <= self._max_bytes
                    and hdrs.CONTENT_ENCODING not in headers
                ):
                    body = await response.read()
                else:
                    body = await self._read_capped(response, length)
                # The raw header: parsing it (response.content_type) costs more than it is worth.
                content_type = headers.get(hdrs.CONTENT_TYPE, "")
        except (TransportError, ProtocolError):
            raise
        except Exception as exc:
            error = _translate(exc, request)
            if request.method == "GET":  # aiohttp's exception may quote the URL, key included
                raise error from None
            raise error from exc
        if started:
            elapsed = (time.perf_counter() - started) * 1000
            log.debug("HTTP %s %s -> %d (%.1f ms)", request.method, request.action, status, elapsed)
        return _new_tuple(HttpResponse, (status, body, content_type))

    def _timeout(self, connect: float, read: float) -> aiohttp.ClientTimeout:
        # ``connect`` bounds getting a connection (pool wait included): when it fires, nothing
        # was sent. ``total`` bounds the whole exchange, so a reply that trickles in slowly
        # cannot hold a send forever; one timer per request is also cheaper than a per-read
        # ``sock_read`` timer.
        total = None if math.isinf(connect) or math.isinf(read) else connect + read
        timeout = aiohttp.ClientTimeout(
            total=total, connect=None if math.isinf(connect) else connect
        )
        self._timeouts[(connect, read)] = timeout
        return timeout

    async def _read_capped(self, response: aiohttp.ClientResponse, declared: int | None) -> bytes:
        if declared is not None and declared > self._max_bytes:
            raise ProtocolError(
                f"reply of {declared} bytes exceeds the {self._max_bytes}-byte cap",
                status=response.status,
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self._max_bytes:
                raise ProtocolError(
                    f"reply exceeds the {self._max_bytes}-byte cap", status=response.status
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _translate(exc: BaseException, request: HttpRequest) -> TransportError:
    """One ladder from aiohttp/OS failures to "never sent" or "outcome unknown"."""
    where = f"{request.method} {request.action or 'request'}"
    detail = _detail(exc, request)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeoutError(f"{where}: timed out connecting ({detail})")
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.InvalidURL):
        return ConnectError(f"{where}: could not connect ({detail})")
    if isinstance(exc, aiohttp.SocketTimeoutError | TimeoutError):
        return ResponseTimeoutError(
            f"{where}: no answer within the read timeout; it may have been delivered"
        )
    return ConnectionLostError(
        f"{where}: connection lost after the request started ({detail}); it may have been delivered"
    )


_QUERY = re.compile(r"\?[^\s'\"<>()\[\]]*")


def _detail(exc: BaseException, request: HttpRequest) -> str:
    """``Type: text`` of an aiohttp failure; query strings cut for a GET (they hold the key)."""
    text = f"{type(exc).__name__}: {exc}"
    return _QUERY.sub("?<query hidden>", text) if request.method == "GET" else text


Handler = Callable[[HttpRequest], "HttpResponse | Awaitable[HttpResponse]"]


class MockTransport:
    """A transport that calls ``handler(request)`` instead of the network (for tests).

    The handler returns an :class:`HttpResponse` (or an awaitable of one), or raises any
    library error to simulate a fault. ``requests`` records the requests it was given, oldest
    first, and ``count`` counts them.

    Args:
        handler: answers each request.
        keep: record only the last ``keep`` requests (0: none), so that a long run (a bulk
            test of a million recipients) does not hold every request; None records all.
    """

    def __init__(self, handler: Handler, *, keep: int | None = None) -> None:
        if keep is not None and keep < 0:
            raise ValueError("keep must be >= 0 or None")
        self._handler = handler
        self._keep = keep
        self.requests: list[HttpRequest] = []
        self.count = 0
        self.closed = False

    async def send(
        self, request: HttpRequest, *, connect_timeout: float, read_timeout: float
    ) -> HttpResponse:
        """Record the request and return the handler's answer."""
        self.count += 1
        self.requests.append(request)
        if self._keep is not None and len(self.requests) > self._keep:
            del self.requests[0]
        result = self._handler(request)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def aclose(self) -> None:
        """Mark closed."""
        self.closed = True
