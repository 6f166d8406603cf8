"""The fault matrix: every way an exchange can fail, through the public API, one row each.

Each row names a fault, where it is made (the emulator, or a hand-written HTTP server on
127.0.0.1 for faults the emulator cannot make), and what a caller with a retrying policy
(``RetryPolicy.testing(attempts=3, throttle_attempts=4)``) must see: the exception type (or
success), how many attempts the call made, whether the error is ambiguous (the request may
have been acted on), how many requests the server read, and how many it may have acted on.
The invariant behind the last two columns: an ambiguous failure is never resent unless the
policy says ``retry_ambiguous=True``, so nothing is ever acted on twice.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import socket
import struct
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from skycore_async import (
    AccountError,
    ApiError,
    AuthenticationError,
    BillingError,
    BulkMessage,
    CallIntervalError,
    ConnectError,
    ConnectionLostError,
    InvalidRequestError,
    ProtocolError,
    QuotaExceededError,
    RecipientError,
    ResponseTimeoutError,
    RetryPolicy,
    ServerError,
    SkycoreClient,
    SkycoreError,
    Throttle,
    ThroughputExceededError,
    Timeouts,
)
from skycore_async.config import Limits
from skycore_async.testing import Emulator, EmulatorSettings

TO = "16501234123"
MMS_ID = 35674
POLICY = RetryPolicy.testing(attempts=3, throttle_attempts=4)
FAST = Timeouts(connect=5.0, read=5.0)
#: For rows that must time out: the whole exchange may take connect + read = 0.6 s.
SHORT = Timeouts(connect=0.3, read=0.3)
NO_LIMITS = Limits()
HUGE = 64 << 20  # what the huge-body rows offer; the client's cap is 1 MiB
#: Bytes a refused huge reply may occupy on the client side (cap + socket and parser buffers).
HUGE_BOUND = 8 << 20


# ---------------------------------------------------------------------- a raw HTTP server


def xml_reply(*fields: tuple[str, str]) -> bytes:
    """A Skycore reply document."""
    leaves = "".join(f"<{name}>{value}</{name}>" for name, value in fields)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<RESPONSE>{leaves}</RESPONSE>'.encode()


SUCCESS = xml_reply(
    ("STATUS", "Success"), ("TO", TO), ("MMSID", str(MMS_ID)), ("TRACKINGID", "VFJBQ0s=")
)


def failure(code: str, info: str = "") -> bytes:
    """A Skycore failure reply."""
    return xml_reply(("STATUS", "Failure"), ("ERRORCODE", code), ("ERRORINFO", info))


def html(status: int) -> bytes:
    """An error page as a proxy or PHP would send it."""
    return (
        f"<html><head><title>{status}</title></head><body><h1>{status}</h1></body></html>".encode()
    )


Writer = asyncio.StreamWriter


@attrs.frozen
class Behaviour:
    """What the raw server does with one request.

    ``act`` gets the server and the writer once the request was read (or, when
    ``reads_request`` is False, as soon as the connection is accepted) and returns whether
    the connection stays open for another request. ``rejects`` marks answers that prove the
    request was not acted on (a Skycore failure reply with an E-code).
    """

    act: Callable[[RawServer, Writer], Awaitable[bool]]
    reads_request: bool = True
    rejects: bool = False
    prepare: Callable[[], object] | None = None


def respond(
    status: int = 200,
    body: bytes = SUCCESS,
    *,
    content_type: str = "text/xml; charset=utf-8",
    headers: Sequence[tuple[str, str]] = (),
    rejects: bool = False,
) -> Behaviour:
    """A complete HTTP/1.1 response with a Content-Length; keep-alive."""

    async def act(server: RawServer, writer: Writer) -> bool:
        lines = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}"]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return True

    return Behaviour(act, rejects=rejects)


def reject(code: str, info: str = "") -> Behaviour:
    """A 200 Skycore failure reply: the request was refused, not acted on."""
    return respond(body=failure(code, info), rejects=True)


def reset(*, reads_request: bool) -> Behaviour:
    """Abort the connection with a TCP RST (SO_LINGER 0), before or after reading."""

    async def act(server: RawServer, writer: Writer) -> bool:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        return False

    return Behaviour(act, reads_request=reads_request)


def raw_bytes(data: bytes) -> Behaviour:
    """Write ``data`` verbatim, then close (a short body, or something that is not HTTP)."""

    async def act(server: RawServer, writer: Writer) -> bool:
        writer.write(data)
        await writer.drain()
        writer.close()
        return False

    return Behaviour(act)


def trickle(body: bytes = SUCCESS, delay: float = 0.1) -> Behaviour:
    """Headers at once, then the body one byte every ``delay`` seconds."""

    async def act(server: RawServer, writer: Writer) -> bool:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n"
        writer.write(head.encode())
        for byte in body:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(delay)
        return True

    return Behaviour(act)


def huge(*, chunked: bool) -> Behaviour:
    """Offer a 64 MiB body (declared, or chunked with no length); count what got through."""

    async def act(server: RawServer, writer: Writer) -> bool:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {HUGE}"
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n{framing}\r\n\r\n".encode())
        block = b"<" * (256 << 10)
        frame = b"%x\r\n%s\r\n" % (len(block), block) if chunked else block
        try:
            for _ in range(HUGE // len(block)):
                writer.write(frame)
                await writer.drain()
                server.body_bytes_sent += len(block)
        except ConnectionError:
            pass  # the client hung up: what it refused never left this side
        writer.close()
        return False

    return Behaviour(act)


@functools.cache
def _bomb() -> bytes:
    return gzip.compress(bytes(HUGE), compresslevel=1)


def gzip_bomb() -> Behaviour:
    """A ~290 KiB gzip body (under the cap) that inflates to 64 MiB."""

    async def act(server: RawServer, writer: Writer) -> bool:
        body = _bomb()
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Encoding: gzip\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        return True

    return Behaviour(act, prepare=_bomb)  # built before the client's memory is traced


def close_when_idle(delay: float = 0.05) -> Behaviour:
    """Answer with keep-alive, then close the idle connection (a server's keep-alive timeout)."""
    answer = respond()

    async def act(server: RawServer, writer: Writer) -> bool:
        await answer.act(server, writer)
        await asyncio.sleep(delay)
        writer.close()
        return False

    return Behaviour(act)


@attrs.define
class RawServer:
    """An HTTP/1.1 server written by hand on 127.0.0.1, following a script.

    Request ``n`` (0-based, across connections) gets ``script[n]``; the last behaviour
    repeats. ``requests`` holds every request read in full (head and body bytes).
    """

    script: Sequence[Behaviour]
    requests: list[bytes] = attrs.field(factory=list)
    acted_on: int = 0
    body_bytes_sent: int = 0
    url: str = ""
    _turn: int = 0
    _tasks: set[asyncio.Task[None]] = attrs.field(factory=set)

    def _next(self) -> Behaviour:
        behaviour = self.script[min(self._turn, len(self.script) - 1)]
        self._turn += 1
        return behaviour

    async def _connection(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # cancelled by running() on exit; ending quietly keeps asyncio from logging it
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _exchange(self, reader: asyncio.StreamReader, writer: Writer) -> bool:
        if reader.at_eof():
            return False
        behaviour = self._next()
        if behaviour.reads_request:
            request = await _read_request(reader)
            if request is None:
                return False
            self.requests.append(request)
            self.acted_on += not behaviour.rejects
        return await behaviour.act(self, writer)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[RawServer]:
        """Listen on an ephemeral 127.0.0.1 port while the block runs."""
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/API/wxml/1.3/index.php"
        try:
            yield self
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request's head and body, or None when the client closed the connection first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


# ---------------------------------------------------------------------- targets


@attrs.define
class Target:
    """Where a row's fault is made, and what that side recorded."""

    url: str
    received: Callable[[], int]
    acted_on: Callable[[], int]
    raw: RawServer | None = None


def emulator(**changes: Any) -> Callable[[], Any]:
    """A row made by the emulator with these settings."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Target]:
        async with Emulator(EmulatorSettings(seed=7, **changes)) as emu:
            emu.add_template(MMS_ID)
            yield Target(emu.url, lambda: emu.requests_received, lambda: len(emu.accepted))

    return setup


def raw(*script: Behaviour) -> Callable[[], Any]:
    """A row made by the raw server following ``script``."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Target]:
        for behaviour in script:
            if behaviour.prepare is not None:
                behaviour.prepare()
        async with RawServer(script).running() as server:
            yield Target(
                server.url, lambda: len(server.requests), lambda: server.acted_on, raw=server
            )

    return setup


def refused() -> Callable[[], Any]:
    """A 127.0.0.1 port nothing listens on."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Target]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        yield Target(f"http://127.0.0.1:{port}/", lambda: 0, lambda: 0)

    return setup


# ---------------------------------------------------------------------- the matrix


async def send(client: SkycoreClient) -> Any:
    """The call every row makes."""
    return await client.send_saved_mms(to=TO, mms_id=MMS_ID, from_="60856")


async def send_unknown_template(client: SkycoreClient) -> Any:
    """A send of a template the account does not have (E241)."""
    return await client.send_saved_mms(to=TO, mms_id=99999, from_="60856")


@attrs.frozen
class Fault:
    """One row: the fault, and what the caller and the server must see.

    Attributes:
        name: the fault.
        setup: where it is made (``emulator(...)``, ``raw(...)``, ``refused()``).
        error: the exact exception type, or None for success.
        attempts: HTTP attempts the call made (``error.attempts`` / ``result.attempts``).
        ambiguous: ``error.ambiguous`` (None on success).
        received: requests the server read in full, over all attempts.
        acted_on: of those, how many the server may have acted on (not refused with an
            E-code); never more than 1, so nobody is texted twice.
        timeouts: the client's timeouts.
        limits: throttle limits (``Throttle.testing`` keeps the quota cooldown).
        call: what the client does.
        says: a fragment the error message must contain.
        warm_up: make one successful call first (on the same client) and wait a moment.
        memory_bound: assert the call's peak traced allocation stays under this.
    """

    name: str
    setup: Callable[[], Any]
    error: type[SkycoreError] | None
    attempts: int
    ambiguous: bool | None
    received: int
    acted_on: int
    timeouts: Timeouts = FAST
    limits: Limits = NO_LIMITS
    call: Callable[[SkycoreClient], Awaitable[Any]] = send
    says: str = ""
    warm_up: bool = False
    memory_bound: int | None = None


GATE = POLICY.throttle_attempts + 1  # a throttle code every time: the throttle budget, then raise

MATRIX = [
    # --- transport: nothing sent
    Fault("connection refused", refused(), ConnectError, 3, False, 0, 0),
    Fault("idle keep-alive closed by the server, then a send", raw(close_when_idle(), respond()),
          None, 1, None, 2, 2, warm_up=True),
    # --- transport: the request may have been read
    Fault("RST on accept, before the request is read", raw(reset(reads_request=False)),
          ConnectionLostError, 1, True, 0, 0),
    Fault("RST after the request is read", raw(reset(reads_request=True)),
          ConnectionLostError, 1, True, 1, 1),
    Fault("closed before accepting (emulator)", emulator(drop_before_accept=1.0),
          ConnectionLostError, 1, True, 1, 0),
    Fault("closed after accepting (emulator)", emulator(drop_after_accept=1.0),
          ConnectionLostError, 1, True, 1, 1),
    Fault("read timeout (emulator latency)", emulator(latency=3.0),
          ResponseTimeoutError, 1, True, 1, 1, timeouts=SHORT),
    Fault("slow trickle reply", raw(trickle()), ResponseTimeoutError, 1, True, 1, 1,
          timeouts=SHORT),
    Fault("body shorter than its Content-Length",
          raw(raw_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n" + SUCCESS[:60])),
          ConnectionLostError, 1, True, 1, 1),
    Fault("not HTTP at all", raw(raw_bytes(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")),
          ConnectionLostError, 1, True, 1, 1),
    # --- an answer that is not a Skycore reply
    Fault("HTTP 500 HTML page", raw(respond(500, html(500), content_type="text/html")),
          ProtocolError, 1, True, 1, 1, says="HTTP 500"),
    Fault("HTTP 502 HTML page (emulator)", emulator(html_error_rate=1.0),
          ProtocolError, 1, True, 1, 0, says="HTTP 502"),
    Fault("HTTP 503 HTML page", raw(respond(503, html(503), content_type="text/html")),
          ProtocolError, 1, True, 1, 1, says="HTTP 503"),
    Fault("307 redirect (not followed)",
          raw(respond(307, b"", headers=[("Location", "/elsewhere")])),
          ProtocolError, 1, True, 1, 1, says="redirect refused"),
    Fault("truncated XML (emulator)", emulator(truncated_after_accept=1.0),
          ProtocolError, 1, True, 1, 1),
    Fault("200, empty body", raw(respond(body=b"")), ProtocolError, 1, True, 1, 1),
    Fault("200, XML that is not a Skycore reply",
          raw(respond(body=b"<error><message>maintenance</message></error>")),
          ProtocolError, 1, True, 1, 1),
    Fault("200, <RESPONSE> without STATUS",
          raw(respond(body=xml_reply(("RESULT", "ok")))), ProtocolError, 1, True, 1, 1),
    Fault("200, JSON (wrong content type)",
          raw(respond(body=b'{"status": "Success"}', content_type="application/json")),
          ProtocolError, 1, True, 1, 1),
    Fault("200, Skycore XML labelled text/html", raw(respond(content_type="text/html")),
          None, 1, None, 1, 1),
    Fault("huge body, declared length", raw(huge(chunked=False)), ProtocolError, 1, True, 1, 1,
          says="cap", memory_bound=HUGE_BOUND),
    Fault("huge body, chunked", raw(huge(chunked=True)), ProtocolError, 1, True, 1, 1,
          says="cap", memory_bound=HUGE_BOUND),
    Fault("gzip bomb (small Content-Length)", raw(gzip_bomb()), ProtocolError, 1, True, 1, 1,
          says="cap", memory_bound=HUGE_BOUND),
    # --- throttle codes: the call was refused, so it is resent under the throttle budget
    Fault("E106 once", raw(reject("E106", "You can call API every 0.01 seconds"), respond()),
          None, 2, None, 2, 1),
    Fault("E113 once", raw(reject("E113"), respond()), None, 2, None, 2, 1),
    Fault("E106 every time (emulator)", emulator(error_rates={"E106": 1.0}),
          CallIntervalError, GATE, False, GATE, 0),
    Fault("E113 every time (emulator)", emulator(error_rates={"E113": 1.0}),
          ThroughputExceededError, GATE, False, GATE, 0),
    Fault("E120 quota (emulator)", emulator(quota=0), QuotaExceededError, 1, False, 1, 0),
    Fault("E120 with quota_cooldown: one resend", emulator(quota=0), QuotaExceededError,
          2, False, 2, 0, limits=Limits(quota_cooldown=0.0)),
    # --- transient codes: the error budget, with backoff
    Fault("E503 every time (emulator)", emulator(error_rates={"E503": 1.0}), ServerError,
          3, False, 3, 0),
    Fault("E618 once", raw(reject("E618"), respond()), None, 2, None, 2, 1),
    Fault("E626 every time", raw(reject("E626")), ServerError, 3, False, 3, 0),
    # --- permanent codes: raised at once
    Fault("E104 wrong key (emulator)", emulator(api_keys={"another-key"}),
          AuthenticationError, 1, False, 1, 0),
    Fault("E112 IP not allowed (emulator)", emulator(error_rates={"E112": 1.0}),
          AccountError, 1, False, 1, 0),
    Fault("E713 billing (emulator)", emulator(error_rates={"E713": 1.0}),
          BillingError, 1, False, 1, 0),
    Fault("E241 unknown template (emulator)", emulator(), InvalidRequestError, 1, False, 1, 0,
          call=send_unknown_template),
    Fault("E114 blacklisted (emulator)", emulator(blacklist={TO}), RecipientError,
          1, False, 1, 0),
    Fault("E4242, a code not in the table", raw(reject("E4242")), ApiError, 1, False, 1, 0),
]  # fmt: skip


def client_for(target: Target, fault: Fault, policy: RetryPolicy = POLICY) -> SkycoreClient:
    """A client with a retrying policy and a throttle that never waits."""
    return SkycoreClient(
        api_key="test-key",
        base_url=target.url,
        timeouts=fault.timeouts,
        retry=policy,
        throttle=Throttle.testing(fault.limits),
    )


async def run_row(fault: Fault, policy: RetryPolicy = POLICY) -> tuple[Any, Target]:
    """Make the row's call; returns (result or error, target) once the server is idle."""
    async with fault.setup() as target, client_for(target, fault, policy) as client:
        if fault.warm_up:
            await send(client)
            await asyncio.sleep(0.2)
        if fault.memory_bound is not None:
            tracemalloc.start()
        try:
            outcome: Any = await fault.call(client)
        except SkycoreError as error:
            outcome = error
        finally:
            if fault.memory_bound is not None:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                assert peak < fault.memory_bound, f"peak allocation {peak} B"
        await asyncio.sleep(0)  # let the server record a request it finished reading
        return outcome, target


@pytest.mark.parametrize("fault", MATRIX, ids=[fault.name for fault in MATRIX])
async def test_fault_matrix(fault: Fault) -> None:
    """Each fault gives its typed outcome, retried only when nothing was acted on."""
    outcome, target = await run_row(fault)
    warm = 1 if fault.warm_up else 0
    if fault.error is None:
        assert not isinstance(outcome, BaseException), repr(outcome)
        assert outcome.attempts == fault.attempts
    else:
        assert type(outcome) is fault.error, repr(outcome)
        assert outcome.attempts == fault.attempts
        assert outcome.ambiguous is fault.ambiguous
        assert fault.says in str(outcome)
        if outcome.ambiguous:
            assert outcome.attempts == 1, "an ambiguous failure was resent"
    assert target.received() == fault.received
    assert target.acted_on() == fault.acted_on
    assert target.acted_on() - warm <= 1, "the same send may have been acted on twice"
    if target.raw is not None and target.raw.body_bytes_sent:
        assert target.raw.body_bytes_sent < HUGE, "the refused body was read to the end"


AMBIGUOUS = [fault for fault in MATRIX if fault.ambiguous]


@pytest.mark.parametrize("fault", AMBIGUOUS, ids=[fault.name for fault in AMBIGUOUS])
async def test_ambiguous_faults_are_resent_only_when_opted_in(fault: Fault) -> None:
    """With retry_ambiguous=True the same faults are resent: the policy alone holds them back."""
    policy = RetryPolicy.testing(attempts=2, retry_ambiguous=True)
    outcome, target = await run_row(fault, policy)
    assert type(outcome) is fault.error, repr(outcome)
    assert outcome.attempts == 2
    assert target.received() == 2 * fault.received
    assert target.acted_on() == 2 * fault.acted_on


def test_matrix_covers_every_retry_class() -> None:
    """Every exception class a send can end in has a row (a new class needs a new row)."""
    covered = {fault.error for fault in MATRIX}
    expected = {
        ConnectError, ConnectionLostError, ResponseTimeoutError, ProtocolError,
        CallIntervalError, ThroughputExceededError, QuotaExceededError, ServerError,
        AuthenticationError, AccountError, BillingError, InvalidRequestError, RecipientError,
        ApiError, None,
    }  # fmt: skip
    assert expected <= covered


# ---------------------------------------------------------------------- bulk runs


NUMBERS = ["16501230001", "16501230002", "16501230003"]


@attrs.frozen
class BulkFault:
    """A fault during a bulk run, and the status every recipient must end with.

    ``attempts`` is each outcome's attempt count (None: any, but they must add up to the
    requests the server read); ``acted_on`` counts what the server may have acted on.
    """

    name: str
    setup: Callable[[], Any]
    status: str
    code: str | None
    attempts: int | None
    acted_on: int
    timeouts: Timeouts = FAST


BULK = [
    BulkFault("closed after accepting", emulator(drop_after_accept=1.0), "unknown",
              "CONNECTION_LOST", 1, 3),
    BulkFault("RST after the request is read", raw(reset(reads_request=True)), "unknown",
              "CONNECTION_LOST", 1, 3),
    BulkFault("read timeout", emulator(latency=3.0), "unknown", "TIMEOUT", 1, 3,
              timeouts=SHORT),
    BulkFault("HTTP 502 HTML page", emulator(html_error_rate=1.0), "unknown", "PROTOCOL", 1, 0),
    BulkFault("huge body", raw(huge(chunked=True)), "unknown", "PROTOCOL", 1, 3),
    BulkFault("connection refused", refused(), "failed", "CONNECT", 3, 0),
    BulkFault("E503 every time", emulator(error_rates={"E503": 1.0}), "failed", "E503", 3, 0),
    BulkFault("E114 blacklisted", emulator(blacklist=set(NUMBERS)), "failed", "E114", 1, 0),
    BulkFault("E618 on the first request", raw(reject("E618"), respond()), "sent", None,
              None, 3),
    BulkFault("E113 on half the requests", emulator(error_rates={"E113": 0.5}), "sent", None,
              None, 3),
]  # fmt: skip


@pytest.mark.parametrize("fault", BULK, ids=[fault.name for fault in BULK])
async def test_bulk_outcomes_under_faults(fault: BulkFault, tmp_path: Path) -> None:
    """Ambiguous faults end ``unknown``, refusals ``failed``, resent throttles ``sent``; a
    resume of the same journal sends nothing again."""
    policy = RetryPolicy.testing(attempts=3, throttle_attempts=30)
    journal = tmp_path / "run.journal"
    async with fault.setup() as target:
        options: dict[str, Any] = {"api_key": "test-key", "base_url": target.url,
                                   "timeouts": fault.timeouts, "retry": policy,
                                   "throttle": Throttle.testing()}  # fmt: skip
        message = BulkMessage.saved_mms(mms_id=MMS_ID, from_="60856")
        async with SkycoreClient(**options) as client:
            async with client.send_bulk(message, NUMBERS, journal=journal) as run:
                outcomes = [o async for batch in run for o in batch.outcomes]
            received = target.received()
            async with client.send_bulk(message, NUMBERS, journal=journal, resume=True) as again:
                resumed = [o async for batch in again for o in batch.outcomes]
        await asyncio.sleep(0)
        assert sorted(o.to for o in outcomes) == NUMBERS
        assert {o.status for o in outcomes} == {fault.status}
        assert {o.error_code for o in outcomes} == {fault.code}
        if fault.attempts is not None:
            assert {o.attempts for o in outcomes} == {fault.attempts}
        if fault.code != "CONNECT":  # refused attempts never reach a server
            assert sum(o.attempts for o in outcomes) == target.received()
        assert target.acted_on() == fault.acted_on
        assert resumed == []
        assert target.received() == received, "resume sent again"
