"""The postback receiver: an ``aiohttp.web`` application that never loses or double-counts.

Skycore POSTs each notification to one URL per account, wants HTTP 200 within 10 s and
otherwise retries every 5 minutes, up to 5 times. So for every request the receiver

1. checks the secret, if one is set: ``POST /postbacks/{token}`` (a wrong token is 404) or
   ``POST /postbacks`` with HTTP basic auth whose password is the secret (401 otherwise);
   compared in constant time;
2. reads at most ``max_body`` bytes (413 beyond, judged by ``Content-Length`` first);
3. decodes it with :func:`~skycore_async.notifications.decode_notifications` (raw XML or the
   ``xml``/``XML`` form field; 400 for anything undecodable, and it keeps serving);
4. drops notifications already seen (same :meth:`~Notification.dedupe_key`; still 200),
   remembering the last ``dedupe_window`` keys plus every key already in ``out`` at startup;
5. answers 503 when ``queue_size`` notifications wait for the callback, so Skycore retries;
6. appends each new notification to ``out`` (JSONL, see
   :func:`~skycore_async.reconcile.notification_record`, plus ``received_at``) with one
   ``os.write`` on an ``O_APPEND`` descriptor, *before* answering 200, so a crash never loses
   an acknowledged notification (``fsync=True`` survives power loss too);
7. answers 200 and hands the new notifications to ``on_notification`` in a background task.

Steps 3 to 7 run without yielding to the event loop, so concurrent redeliveries cannot both
pass the duplicate check. Use::

    app = make_postback_app(out="notifications.jsonl", secret=os.environ["POSTBACK_SECRET"])
    web.run_app(app, host="127.0.0.1", port=8081, access_log=None)  # the path holds the token

or :func:`serve_postbacks`, or ``skycore-async postbacks serve``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import attrs
import orjson
from aiohttp import hdrs, web

from .errors import ProtocolError
from .notifications import Notification, decode_notifications
from .reconcile import notification_from_record, notification_record

__all__ = [
    "POSTBACK_PATH",
    "RECEIVER_KEY",
    "PostbackReceiver",
    "ReceiverStats",
    "make_postback_app",
    "serve_postbacks",
]

log = logging.getLogger("skycore_async")

#: The path the receiver answers on (``/postbacks/{token}`` when a secret is set).
POSTBACK_PATH: Final = "/postbacks"
DEFAULT_DEDUPE_WINDOW: Final = 250_000
_DRAIN_TIMEOUT: Final = 5.0
_UNAUTHORIZED_HEADERS: Final = {hdrs.WWW_AUTHENTICATE: 'Basic realm="postbacks"'}

NotificationCallback = Callable[[Notification], Awaitable[None]]


@attrs.define
class ReceiverStats:
    """Counters of what the receiver did (requests and notifications).

    Attributes:
        requests: HTTP requests received.
        accepted: new notifications stored and acknowledged.
        duplicates: notifications dropped as already seen (answered 200).
        malformed: requests answered 400.
        too_large: requests answered 413.
        unauthorized: requests answered 401 or 404 for a missing or wrong secret.
        busy: requests answered 503 because the callback queue was full.
        write_errors: requests answered 500 because ``out`` could not be written.
        callback_errors: exceptions raised by ``on_notification`` (logged, then skipped).
        loaded_keys: dedupe keys read from ``out`` at startup.
    """

    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    malformed: int = 0
    too_large: int = 0
    unauthorized: int = 0
    busy: int = 0
    write_errors: int = 0
    callback_errors: int = 0
    loaded_keys: int = 0


class _RecentKeys:
    """The most recently seen dedupe keys, at most ``capacity`` of them (LRU)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def seen(self, key: str) -> bool:
        """True when ``key`` is remembered (and refresh it)."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        return False

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        if len(self._keys) > self._capacity:
            self._keys.popitem(last=False)


class PostbackReceiver:
    """The state behind :func:`make_postback_app`: dedupe memory, output file, queue, stats.

    Reach it as ``app[RECEIVER_KEY]``.
    """

    def __init__(
        self,
        *,
        on_notification: NotificationCallback | None = None,
        out: str | Path | None = None,
        secret: str | None = None,
        max_body: int = 1 << 20,
        queue_size: int = 10_000,
        dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
        fsync: bool = False,
    ) -> None:
        if secret is not None and not secret:
            raise ValueError("an empty secret would let anyone in; pass None for no secret")
        if min(max_body, queue_size, dedupe_window) < 1:
            raise ValueError("max_body, queue_size and dedupe_window must be positive")
        self.out = Path(out) if out is not None else None
        self.max_body = max_body
        self.queue_size = queue_size
        self.stats = ReceiverStats()
        self._callback = on_notification
        self._secret = secret.encode("utf-8") if secret is not None else None
        self._fsync = fsync
        self._seen = _RecentKeys(dedupe_window)
        self._queue: asyncio.Queue[Notification] = asyncio.Queue()
        self._fd = -1
        self._consumer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, _app: web.Application | None = None) -> None:
        """Load the keys already in ``out``, open it for appending, start the callback task."""
        if self.out is not None:
            self.stats.loaded_keys = await asyncio.to_thread(_load_keys, self.out, self._seen)
            self._fd = os.open(self.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if self._callback is not None:
            self._consumer = asyncio.create_task(self._consume(self._callback))

    async def stop(self, _app: web.Application | None = None) -> None:
        """Give the callback up to 5 s to drain the queue, then stop it and close ``out``.

        Whatever is still queued is in ``out`` already.
        """
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drain(), _DRAIN_TIMEOUT)
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    async def drain(self) -> None:
        """Wait until the callback has processed every notification queued so far."""
        await self._queue.join()

    async def _consume(self, callback: NotificationCallback) -> None:
        while True:
            notification = await self._queue.get()
            try:
                await callback(notification)
            except Exception:
                self.stats.callback_errors += 1
                log.exception("postback callback failed for %s", notification.code)
            finally:
                self._queue.task_done()

    # ------------------------------------------------------------------ HTTP

    async def handle(self, request: web.Request) -> web.Response:
        """``POST /postbacks``: basic auth when a secret is set."""
        self.stats.requests += 1
        if self._secret is not None and not self._basic_auth_ok(request):
            self.stats.unauthorized += 1
            return web.Response(status=401, text="unauthorized", headers=_UNAUTHORIZED_HEADERS)
        return await self._receive(request)

    async def handle_token(self, request: web.Request) -> web.Response:
        """``POST /postbacks/{token}``: the token must be the secret (404 otherwise)."""
        self.stats.requests += 1
        token = request.match_info.get("token", "").encode("utf-8")
        if self._secret is None or not hmac.compare_digest(token, self._secret):
            self.stats.unauthorized += 1
            raise web.HTTPNotFound()
        return await self._receive(request)

    def _basic_auth_ok(self, request: web.Request) -> bool:
        password = _basic_password(request.headers.get(hdrs.AUTHORIZATION, ""))
        return self._secret is not None and hmac.compare_digest(password, self._secret)

    async def _receive(self, request: web.Request) -> web.Response:
        body = await _read_capped(request, self.max_body)
        if body is None:
            self.stats.too_large += 1
            return web.Response(status=413, text="postback body too large")
        status = self.accept(body, request.headers.get(hdrs.CONTENT_TYPE, ""))
        return web.Response(status=status, text=_TEXTS[status])

    # ------------------------------------------------------------------ the core (synchronous)

    def accept(self, body: bytes, content_type: str = "") -> int:
        """Decode, dedupe, store and enqueue one postback body; returns the HTTP status.

        200 (stored, or all duplicates), 400 (undecodable), 503 (callback queue full),
        500 (``out`` could not be written). Synchronous: nothing interleaves with it.
        """
        try:
            notifications = decode_notifications(body, content_type, max_bytes=self.max_body)
        except ProtocolError as exc:
            self.stats.malformed += 1
            log.warning("malformed postback answered 400: %s", exc)
            return 400
        fresh = self._fresh(notifications)
        self.stats.duplicates += len(notifications) - len(fresh)
        if not fresh:
            return 200
        if self._callback is not None and self._queue.qsize() >= self.queue_size:
            self.stats.busy += 1
            return 503
        try:
            self._store(fresh.values())
        except OSError:
            self.stats.write_errors += 1
            log.exception("could not store postbacks; answered 500 so Skycore retries")
            return 500
        for key, notification in fresh.items():
            self._seen.add(key)
            if self._callback is not None:
                self._queue.put_nowait(notification)
        self.stats.accepted += len(fresh)
        return 200

    def _fresh(self, notifications: Iterable[Notification]) -> dict[str, Notification]:
        """The notifications not seen before, by key (a batch may repeat one, too)."""
        fresh: dict[str, Notification] = {}
        for notification in notifications:
            key = notification.dedupe_key()
            if key not in fresh and not self._seen.seen(key):
                fresh[key] = notification
        return fresh

    def _store(self, notifications: Iterable[Notification]) -> None:
        if self._fd < 0:
            return
        now = datetime.now(UTC)
        data = b"".join(orjson.dumps(notification_record(n, now)) + b"\n" for n in notifications)
        while data:
            data = data[os.write(self._fd, data) :]
        if self._fsync:
            os.fsync(self._fd)


_TEXTS: Final = {
    200: "OK",
    400: "malformed postback",
    500: "could not store the postback",
    503: "busy, retry later",
}


def _basic_password(header: str) -> bytes:
    """The password of a ``Basic`` authorization header as bytes (UTF-8), or ``b""``."""
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return b""
    try:
        decoded = base64.b64decode(credentials.strip().encode("ascii"), validate=True)
    except (ValueError, binascii.Error):
        return b""
    _user, colon, password = decoded.partition(b":")
    return password if colon else b""


async def _read_capped(request: web.Request, cap: int) -> bytes | None:
    """The body, or None when it is longer than ``cap`` (never buffers more than cap + 1)."""
    if request.content_length is not None and request.content_length > cap:
        return None
    data = bytearray()
    while chunk := await request.content.read(cap + 1 - len(data)):
        data += chunk
        if len(data) > cap:
            return None
    return bytes(data)


def _load_keys(path: Path, keys: _RecentKeys) -> int:
    """Remember the dedupe keys stored in ``path``; cut a torn last line. Returns the count.

    A torn line was never acknowledged (the write precedes the 200), so dropping it is safe.
    Unreadable lines are logged and skipped: a receiver that refuses to start loses more.
    Streams the file: memory stays within the dedupe window.
    """
    if not path.exists():
        return 0
    loaded, complete = 0, 0
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                break
            complete += len(line)
            key = _stored_key(line)
            if key is None:
                log.warning("%s:%d: unreadable postback record skipped", path, number)
                continue
            keys.add(key)
            loaded += 1
    if path.stat().st_size != complete:
        with open(path, "r+b") as handle:
            handle.truncate(complete)
    return loaded


def _stored_key(line: bytes) -> str | None:
    try:
        record = orjson.loads(line)
        key = record.get("key") if isinstance(record, dict) else None
        if isinstance(key, str):
            return key
        return notification_from_record(record).dedupe_key()
    except (ValueError, TypeError, AttributeError):
        return None


RECEIVER_KEY: Final = web.AppKey("skycore_postback_receiver", PostbackReceiver)


def make_postback_app(
    *,
    on_notification: NotificationCallback | None = None,
    out: str | Path | None = None,
    secret: str | None = None,
    max_body: int = 1 << 20,
    queue_size: int = 10_000,
    dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
    fsync: bool = False,
) -> web.Application:
    """An ``aiohttp.web`` application that receives Skycore postbacks (see the module doc).

    Args:
        on_notification: awaited once per new notification, in a background task, after the
            200 went out; exceptions are logged and counted, never stop the receiver.
        out: JSONL file to append every new notification to (before the 200); its keys are
            loaded at startup so a restart does not count anything twice.
        secret: require ``/postbacks/{secret}`` or basic auth with this password.
        max_body: largest body accepted, in bytes (413 above).
        queue_size: notifications waiting for the callback before requests get 503.
        dedupe_window: how many recent keys to remember (about 200 bytes each). Skycore
            retries for 25 minutes; size it for 25 minutes of traffic or more.
        fsync: fsync ``out`` after each write (survives power loss, costs a disk flush).

    ``app[RECEIVER_KEY]`` is the :class:`PostbackReceiver` (its ``stats``).
    """
    receiver = PostbackReceiver(
        on_notification=on_notification,
        out=out,
        secret=secret,
        max_body=max_body,
        queue_size=queue_size,
        dedupe_window=dedupe_window,
        fsync=fsync,
    )
    app = web.Application()
    app[RECEIVER_KEY] = receiver
    app.router.add_post(POSTBACK_PATH, receiver.handle)
    if secret is not None:
        app.router.add_post(POSTBACK_PATH + "/{token}", receiver.handle_token)
    app.on_startup.append(receiver.start)
    app.on_cleanup.append(receiver.stop)
    return app


async def serve_postbacks(
    host: str,
    port: int,
    out: str | Path,
    secret: str | None = None,
    *,
    fsync: bool = False,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Receive postbacks on ``host:port`` into ``out`` until cancelled.

    ``ready`` is called with the URL once listening (default: print it). Access logging is
    off: the path may carry the secret.
    """
    app = make_postback_app(out=out, secret=secret, fsync=fsync)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        url = f"http://{shown}:{bound_port}{POSTBACK_PATH}"
        (ready or _print_ready)(url)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def _print_ready(url: str) -> None:
    print(f"postback receiver listening on {url}", flush=True)
