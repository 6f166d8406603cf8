"""The bulk fan-out engine: stream any recipient list through the client, exactly once.

Shape (aiometer's ``amap``, with bounded buffers both ways)::

    input (lazy) -> producer -> Queue(bounded) -> N workers -> batcher -> Queue(2) -> consumer
                                                     |             |
                                            client.execute     journal (write-ahead)

* Memory is O(queue + in flight + one batch), whatever the input's size; plus one byte per
  input index when a journal is used (the resume map).
* Each worker sends through the client's pipeline, so the shared throttle, the retry policy
  and the error classification are exactly those of single sends.
* Per-recipient failures are :class:`Outcome` values; campaign-fatal errors (authentication,
  billing, quota, IP not allowed) stop the run after flushing and are raised from the loop.
* With a journal, a run survives ``kill -9`` at any point; see :mod:`skycore_async.journal`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from .dedupe import NumberSet
from .errors import (
    ApiError,
    ConnectError,
    ConnectionLostError,
    ProtocolError,
    ResponseTimeoutError,
    SkycoreError,
    ValidationError,
)
from .journal import CLAIMED, FINAL, NEW, UNKNOWN, Journal, ResumeState
from .outcomes import Outcome, Progress, ResultBatch
from .params import check_names, to_fields
from .recipients import Recipient, RowError
from .template import SavedMmsTemplate
from .transport import FORM_HEADERS, HttpRequest
from .validation import normalize_number, validate_request

if TYPE_CHECKING:
    from .client import SkycoreClient

__all__ = ["BulkMessage", "BulkRun", "MessageEncoder"]

log = logging.getLogger("skycore_async")

_END: Final = object()
RecipientInput = Iterable[str | Recipient | RowError] | AsyncIterable[str | Recipient | RowError]


@attrs.frozen
class BulkMessage:
    """What every recipient of a bulk run gets: a saved template plus shared fields.

    The keywords mirror :meth:`SkycoreClient.send_saved_mms` (without ``to`` and
    ``client_reference``, which are per recipient). ``data``, ``custom_text`` and
    ``custom_subject`` given here are defaults that a :class:`Recipient` may override.
    """

    mms_id: int | str
    from_: str
    shared: dict[str, Any] = attrs.field(factory=dict)

    @classmethod
    def saved_mms(cls, *, mms_id: int | str, from_: str, **shared: Any) -> BulkMessage:
        """Build from the same keywords as ``send_saved_mms``."""
        if "to" in shared or "client_reference" in shared:
            raise TypeError("'to' and 'client_reference' are per recipient: put them on Recipient")
        check_names("sendSavedMMS", shared)
        return cls(mms_id=mms_id, from_=from_, shared=shared)

    def send_kwargs(self, recipient: Recipient | None) -> dict[str, Any]:
        """Keyword arguments for ``send_saved_mms`` (minus ``to``) for one recipient."""
        kwargs: dict[str, Any] = {"mms_id": self.mms_id, "from_": self.from_, **self.shared}
        if recipient is None:
            return kwargs
        if recipient.data:
            kwargs["data"] = {**(self.shared.get("data") or {}), **recipient.data}
        if recipient.custom_text is not None:
            kwargs["custom_text"] = recipient.custom_text
        if recipient.custom_subject is not None:
            kwargs["custom_subject"] = recipient.custom_subject
        if recipient.client_reference is not None:
            kwargs["client_reference"] = recipient.client_reference
        return kwargs

    def journal_header(self) -> dict[str, Any]:
        """What a journal records to recognise this message on resume."""
        return {"action": "sendSavedMMS", "mms_id": str(self.mms_id), "from": self.from_}


# One request per send: tuple.__new__ skips the NamedTuple's Python-level constructor.
_new_tuple = tuple.__new__


class MessageEncoder:
    """Encodes a :class:`BulkMessage` for one recipient after another, as cheaply as possible.

    Validates the shared message once (raising ``ValidationError``) and, for POST XML, encodes
    its shared part once (:class:`SavedMmsTemplate`): a plain recipient then costs only the
    number. Personalised recipients go through the client's regular build/validate/encode.
    """

    def __init__(self, client: SkycoreClient, message: BulkMessage) -> None:
        self._client = client
        self._message = message
        kwargs = {"to": "10000000000", **message.send_kwargs(None)}
        probe = client.build_request("sendSavedMMS", to_fields("sendSavedMMS", kwargs))
        validate_request(probe, client.dialect)
        self._url = client.base_url
        self._body: Callable[[str], bytes] | None = None  # the template's, for POST XML
        if client.uses_post_xml:
            shared = {k: v for k, v in probe.fields.items() if k != "TO"}
            template = SavedMmsTemplate.build(attrs.evolve(probe, fields=shared), client.dialect)
            self._body = template.body

    def encode(self, number: str, recipient: Recipient | None) -> HttpRequest:
        """The HTTP request for one (normalised) number; ``ValidationError`` if invalid."""
        body = self._body
        if body is not None and (recipient is None or recipient.is_plain):
            fields = ("POST", self._url, body(number), FORM_HEADERS, "sendSavedMMS")
            return _new_tuple(HttpRequest, fields)
        kwargs = {"to": number, **self._message.send_kwargs(recipient)}
        request = self._client.build_request("sendSavedMMS", to_fields("sendSavedMMS", kwargs))
        validate_request(request, self._client.dialect)
        return self._client.encode(request)


@attrs.define
class _Counters:
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0
    in_flight: int = 0

    def add(self, status: str) -> None:
        if status == "sent":  # the common case first: this runs once per send
            self.sent += 1
        else:
            setattr(self, status, getattr(self, status) + 1)

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.unknown + self.skipped


class BulkRun:
    """A running bulk send. Use ``async with client.send_bulk(...) as run: async for batch in run``.

    Leaving the ``async with`` block (normally, by ``break`` or by an exception) stops taking
    new recipients, lets in-flight requests finish, flushes the journal and stops the workers.
    :meth:`stop` does the same from elsewhere (e.g. a SIGINT handler): iteration then ends
    after the in-flight outcomes are delivered.
    """

    def __init__(
        self,
        client: SkycoreClient,
        message: BulkMessage,
        recipients: RecipientInput,
        *,
        journal: str | Path | None = None,
        resume: bool = False,
        resend_unknown: bool = False,
        dedupe: bool = True,
        batch_size: int = 500,
        batch_interval: float = 1.0,
        concurrency: int | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        progress_interval: float = 1.0,
        total: int | None = None,
        fsync: bool = False,
    ) -> None:
        if batch_size < 1 or batch_interval <= 0 or progress_interval <= 0:
            raise ValueError("batch_size must be >= 1; intervals must be > 0")
        self._client = client
        self._message = message
        self._recipients = recipients
        self._journal_path = Path(journal) if journal is not None else None
        self._resume = resume
        self._resend_unknown = resend_unknown
        self._dedupe = NumberSet() if dedupe else None
        self._batch_size = batch_size
        self._batch_interval = batch_interval
        self._concurrency = concurrency or client.limits.concurrency
        self._on_progress = on_progress
        self._progress_interval = progress_interval
        self.total = total if total is not None else _len_or_none(recipients)
        self._fsync = fsync
        self._counts = _Counters()
        self._journal: Journal | None = None
        self._state = ResumeState()
        self._encoder: MessageEncoder | None = None
        self._batch: list[Outcome] = []
        self._batch_number = 0
        self._delivered = 0
        self._emit_lock = asyncio.Lock()
        self._sync_input = iter(recipients) if not isinstance(recipients, AsyncIterable) else None
        self._async_input = aiter(recipients) if isinstance(recipients, AsyncIterable) else None
        self._input_lock = asyncio.Lock()
        self._next_index = 0
        self._out: asyncio.Queue[Any] = asyncio.Queue(maxsize=2)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False  # a plain flag: workers read it once per recipient
        self._fatal: BaseException | None = None
        self._detached = False
        self._pending_ack = 0
        self._finished = False
        self._started_at = 0.0
        self._recent: deque[tuple[float, int]] = deque(maxlen=64)

    def __repr__(self) -> str:
        c = self._counts
        return (
            f"<BulkRun done={c.done} sent={c.sent} failed={c.failed} "
            f"unknown={c.unknown} in_flight={c.in_flight}>"
        )

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> BulkRun:
        self._prepare()
        loop = asyncio.get_running_loop()
        self._started_at = loop.time()
        self._recent.append((self._started_at, 0))
        self._tasks = [asyncio.create_task(self._tick(), name="skycore-bulk-ticker")]
        self._supervisor = asyncio.create_task(self._supervise(), name="skycore-bulk-supervisor")
        return self

    def _prepare(self) -> None:
        """Validate the shared message once, encode it once, open the journal (no I/O yet)."""
        self._encoder = MessageEncoder(self._client, self._message)
        if self._journal_path is not None:
            self._journal, self._state = Journal.open(
                self._journal_path,
                self._message.journal_header(),
                resume=self._resume,
                fsync=self._fsync,
            )
            for status, count in self._state.counts.items():
                setattr(self._counts, status, count)
            self._delivered = self._state.acked

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is None:
            self._ack()  # left the loop cleanly: the last batch was handled
        self.stop()
        await self._shutdown()

    def stop(self) -> None:
        """Stop taking new recipients; in-flight sends finish and are delivered."""
        self._stopping = True

    async def _shutdown(self) -> None:
        # The consumer has left: nobody reads batches any more. Undelivered outcomes stay
        # in the journal unacknowledged, so a resume hands them out again.
        self._detached = True
        while not self._out.empty():
            self._out.get_nowait()
        supervisor = getattr(self, "_supervisor", None)
        if supervisor is not None:
            try:
                await asyncio.shield(supervisor)
            except asyncio.CancelledError:
                for task in self._tasks:
                    task.cancel()
                raise
        if self._journal is not None:
            self._journal.close()

    async def _supervise(self) -> None:
        """Replay undelivered outcomes, run the workers, then flush and end the stream."""
        await self._replay_unacked()  # before any new outcome exists: keeps journal order
        workers = [
            asyncio.create_task(self._work(), name=f"skycore-bulk-worker-{n}")
            for n in range(self._concurrency)
        ]
        self._tasks += workers
        await asyncio.gather(*workers, return_exceptions=True)
        self._tasks[0].cancel()  # the ticker
        await self._emit()
        if self._journal is not None:
            self._journal.flush()
        self._report_progress()
        await self._deliver(_END)

    # ------------------------------------------------------------------ consumer side

    def __aiter__(self) -> BulkRun:
        return self

    async def __anext__(self) -> ResultBatch:
        self._ack()
        item = await self._out.get()
        if item is _END:
            self._finished = True
            self._out.put_nowait(_END)  # later calls end too
            if self._fatal is not None:
                raise self._fatal
            raise StopAsyncIteration
        assert isinstance(item, ResultBatch)
        self._pending_ack = len(item)
        return item

    def _ack(self) -> None:
        """The consumer asked for the next batch, so it is done with the previous one."""
        if self._pending_ack and self._journal is not None:
            self._delivered += self._pending_ack
            self._journal.ack(self._delivered)
        self._pending_ack = 0

    async def _deliver(self, item: object) -> None:
        if not self._detached:
            await self._out.put(item)

    @property
    def progress(self) -> Progress:
        """A snapshot of the run now."""
        return self._snapshot()

    @property
    def finished(self) -> bool:
        """True once every recipient has an outcome and the last batch was delivered."""
        return self._finished

    # ------------------------------------------------------------------ input and workers

    # Workers pull from one shared input instead of a producer filling a queue: read-ahead is
    # bounded by the worker count, memory stays O(concurrency), and each recipient costs no
    # queue hand-off. An async input is read under a lock (async generators are not
    # re-entrant); a sync one needs none, since next() never yields to the loop.

    def _take(self) -> tuple[int, Any] | None:
        """The next (index, item) of a sync input, or None when exhausted or stopping.

        A plain call, not a coroutine: this runs once per recipient.
        """
        if self._stopping:
            return None
        try:
            item = next(self._sync_input)  # type: ignore[arg-type]
        except StopIteration:
            return None
        except Exception as exc:  # the input itself failed: stop, flush, then raise it
            self._input_failed(exc)
            return None
        index = self._next_index
        self._next_index += 1
        return index, item

    async def _next(self) -> tuple[int, Any] | None:
        """The next (index, item) of an async input, or None when exhausted or stopping."""
        if self._stopping:
            return None
        try:
            async with self._input_lock:
                item = await anext(self._async_input)  # type: ignore[arg-type]
        except StopAsyncIteration:
            return None
        except Exception as exc:
            self._input_failed(exc)
            return None
        index = self._next_index
        self._next_index += 1
        return index, item

    def _input_failed(self, exc: Exception) -> None:
        log.error("reading recipients failed at index %d: %r", self._next_index, exc)
        self._fatal = self._fatal or exc
        self._stopping = True

    async def _work(self) -> None:
        take = self._take if self._sync_input is not None else None
        execute, journal, counts = self._client.execute, self._journal, self._counts
        while (entry := take() if take is not None else await self._next()) is not None:
            index, item = entry
            decided = self._admit(index, item)
            if decided is None:
                continue  # reported by an earlier run
            if not isinstance(decided, Outcome):
                # The send, inline rather than in a coroutine of its own: each time the
                # request suspends and resumes, it passes through every frame that awaits it.
                number, reference, http = decided
                claim = partial(journal.claim, index, number) if journal is not None else None
                counts.in_flight += 1
                try:
                    reply, attempts = await execute(http, before_send=claim)
                except SkycoreError as exc:
                    refused = self._refused(index, number, reference, exc)
                    if refused is None:
                        continue  # nothing was sent: the recipient stays pending
                    decided = refused
                else:
                    tracking_id = reply.fields.get("TRACKINGID") or None
                    sent = (index, number, "sent", tracking_id, None, None, attempts, reference)
                    decided = _new_tuple(Outcome, sent)
                finally:
                    counts.in_flight -= 1
            if self._record(decided):
                await self._emit()

    def _admit(
        self, index: int, item: str | Recipient | RowError
    ) -> Outcome | tuple[str, str | None, HttpRequest] | None:
        """Decide one input item: an immediate outcome, None, or what to send.

        What to send is (number, client reference, encoded request); None means an earlier
        run already reported the item.
        """
        state = self._state.state_of(index) if self._state.status else NEW
        if isinstance(item, RowError):
            info = f"line {item.line}: {item.reason}"
            return (
                Outcome(index, item.to or "", "failed", error_code="ROW", error_info=info)
                if state == NEW
                else None
            )
        recipient = item if isinstance(item, Recipient) else None
        reference = recipient.client_reference if recipient is not None else None
        try:
            number = normalize_number(recipient.to if recipient is not None else str(item))
        except ValidationError as exc:
            raw = recipient.to if recipient is not None else str(item)
            return _failed(index, raw, reference, exc) if state == NEW else None
        first = self._dedupe.add(number) if self._dedupe is not None else True
        if state == FINAL or (state == UNKNOWN and not self._resend_unknown):
            return None
        if state == CLAIMED and not self._resend_unknown:
            info = "the run stopped while this request was in flight; it may have been delivered"
            return Outcome(
                index,
                number,
                "unknown",
                error_code="INTERRUPTED",
                error_info=info,
                attempts=1,
                client_reference=reference,
            )
        if not first and state == NEW:
            info = "number already in this run"
            return Outcome(
                index,
                number,
                "skipped",
                error_code="DUPLICATE",
                error_info=info,
                client_reference=reference,
            )
        try:
            return number, reference, self._encoder.encode(number, recipient)  # type: ignore[union-attr]
        except ValidationError as exc:
            return _failed(index, number, reference, exc)

    def _refused(
        self, index: int, number: str, reference: str | None, exc: SkycoreError
    ) -> Outcome | None:
        """A send that raised: its outcome, or None when a campaign-wide refusal left it unsent."""
        if not exc.fatal:
            return _from_error(index, number, reference, exc)
        if self._fatal is None:
            self._fatal = exc
            self._stopping = True
        if exc.ambiguous or self._client.retry_policy.retry_ambiguous:
            return _from_error(index, number, reference, exc)
        # Refused for the whole campaign (key, billing, quota, shared throttle down):
        # nothing was sent, so the recipient stays pending and a resume sends it.
        if self._journal is not None:
            self._journal.release(index)
        return None

    # ------------------------------------------------------------------ batches and progress

    def _record(self, outcome: Outcome) -> bool:
        """Journal, count and batch ``outcome``; True when the batch is full and due."""
        if self._journal is not None:
            self._journal.complete(outcome)
        self._counts.add(outcome.status)
        self._batch.append(outcome)
        return len(self._batch) >= self._batch_size

    async def _emit(self, *, replayed: bool = False) -> None:
        # Under one lock, so batches enter the queue in journal order (acks count lines).
        async with self._emit_lock:
            if not self._batch:
                return
            batch, self._batch = self._batch, []
            if self._journal is not None:
                self._journal.flush()
            await self._deliver(ResultBatch(self._batch_number, tuple(batch), replayed=replayed))
            self._batch_number += 1

    async def _replay_unacked(self) -> None:
        """Hand out outcomes an earlier run completed but never delivered.

        Runs first in the producer, before any new outcome exists, so replayed outcomes
        keep their place in journal order (acks count done-lines).
        """
        unacked = self._state.unacked
        for start in range(0, len(unacked), self._batch_size):
            async with self._emit_lock:
                chunk = tuple(unacked[start : start + self._batch_size])
                await self._deliver(ResultBatch(self._batch_number, chunk, replayed=True))
                self._batch_number += 1

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        next_batch = next_progress = loop.time()
        while True:
            await asyncio.sleep(min(self._batch_interval, self._progress_interval))
            now = loop.time()
            self._recent.append((now, self._counts.done))
            if now - next_batch >= self._batch_interval:
                next_batch = now
                await self._emit()
            if now - next_progress >= self._progress_interval:
                next_progress = now
                self._report_progress()

    def _report_progress(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self._snapshot())

    def _snapshot(self) -> Progress:
        loop = asyncio.get_running_loop()
        now = loop.time()
        c = self._counts
        rate = _rate(self._recent, now, c.done)
        remaining = None if self.total is None else max(0, self.total - c.done)
        eta = remaining / rate if remaining is not None and rate > 0 else None
        return Progress(
            done=c.done,
            sent=c.sent,
            failed=c.failed,
            unknown=c.unknown,
            skipped=c.skipped,
            in_flight=c.in_flight,
            total=self.total,
            rate=rate,
            elapsed=now - self._started_at,
            eta=eta,
        )


# ---------------------------------------------------------------------- helpers


def _rate(recent: deque[tuple[float, int]], now: float, done: int) -> float:
    """Completions per second over the window kept in ``recent`` (up to ~64 ticks)."""
    if not recent:
        return 0.0
    then, done_then = recent[0]
    return (done - done_then) / (now - then) if now > then else 0.0


def _len_or_none(value: object) -> int | None:
    try:
        return len(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def _failed(index: int, raw: str, reference: str | None, error: ValidationError) -> Outcome:
    return Outcome(
        index, raw, "failed", error_code=error.code, error_info=error.message,
        attempts=0, client_reference=reference,
    )  # fmt: skip


_LOCAL_CODES: Final[tuple[tuple[type[SkycoreError], str], ...]] = (
    (ResponseTimeoutError, "TIMEOUT"),
    (ConnectionLostError, "CONNECTION_LOST"),
    (ProtocolError, "PROTOCOL"),
    (ConnectError, "CONNECT"),
)


def _from_error(index: int, number: str, reference: str | None, error: SkycoreError) -> Outcome:
    if isinstance(error, ApiError | ValidationError):
        code = error.code
        info = error.info if isinstance(error, ApiError) else error.message
    else:
        code = next((c for cls, c in _LOCAL_CODES if isinstance(error, cls)), type(error).__name__)
        info = str(error)
    return Outcome(
        index,
        number,
        "unknown" if error.ambiguous else "failed",
        error_code=code,
        error_info=info or str(error),
        attempts=error.attempts,
        client_reference=reference,
    )
