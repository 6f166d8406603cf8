"""A campaign shared by many worker processes or hosts through Redis, each recipient sent once.

``load_campaign`` streams a recipient list into a Redis Stream; any number of
:class:`CampaignWorker` processes, anywhere that reaches the Redis, read it through one consumer
group and send. Requires the optional ``redis`` package (``pip install skycore-async[redis]``);
``redis.asyncio`` is imported only when a campaign is used.

Keys of campaign ``NAME`` (the ``{NAME}`` hash tag keeps them in one Redis Cluster slot, as the
Lua scripts need)::

    skycore:campaign:{NAME}:meta     hash    message, dialect, dedupe, source, offset, total,
                                             loaded, enqueued
    skycore:campaign:{NAME}:stream   stream  an entry per recipient to send: i, to[, r]
                                             (consumer group "workers")
    skycore:campaign:{NAME}:claims   hash    index -> worker id, written before its request
    skycore:campaign:{NAME}:results  hash    index -> outcome record (bulk's results fields)
    skycore:campaign:{NAME}:counts   hash    sent / failed / unknown / skipped
    skycore:campaign:{NAME}:workers  hash    worker id -> last heartbeat and counters
    skycore:campaign:{NAME}:fatal    string  the campaign-fatal error that stopped a worker

An entry moves ``queued`` (in the stream) -> ``delivered`` (read by a worker, in the group's
pending list) -> ``claimed`` (claims hash, before the request) -> ``done`` (results hash, acked
and deleted from the stream). Every transition that matters is one Lua script, so it is atomic:

* the claim refuses when the recipient already has an outcome or another worker's claim;
* the completion writes the outcome, counts it, drops the claim, ``XACK``s and ``XDEL``s;
* a take-over (``XAUTOCLAIM`` of an entry idle longer than the lease) acks an entry that is
  done, sends one that was never claimed, and records one claimed without an outcome as
  ``unknown`` (``INTERRUPTED``): it may have been accepted, so it is never resent unless the
  worker was started with ``resend_unknown``. If the claimant was alive after all (a stall
  longer than the lease), its real outcome replaces that ``unknown`` when it arrives.

Workers renew the lease on what they hold (``XCLAIM ... JUSTID`` resets the idle time) every
third of the lease, so a live worker's entries are not taken over; the lease must exceed the
longest request (the client's connect + read timeouts plus throttle waits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs
import orjson

from .bulk import BulkMessage, MessageEncoder, _failed, _from_error
from .dedupe import NumberSet
from .errors import ApiError, SkycoreError, ValidationError
from .fields import ApiRequest, Dialect
from .outcomes import STATUSES, Outcome
from .params import to_fields
from .recipients import Recipient, RowError
from .validation import normalize_number, validate_request

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .client import SkycoreClient

__all__ = [
    "CampaignError",
    "CampaignStatus",
    "CampaignWorker",
    "LoadReport",
    "WorkerInfo",
    "WorkerReport",
    "campaign_results",
    "campaign_status",
    "connect_redis",
    "load_campaign",
]

log = logging.getLogger("skycore_async")

GROUP: Final = "workers"
FORMAT_VERSION: Final = "1"
_INTERRUPTED_INFO: Final = (
    "a worker stopped while this request was in flight; it may have been delivered"
)


class CampaignError(Exception):
    """The campaign cannot be loaded or worked as asked (missing, mismatched, Redis down)."""


def connect_redis(url: str) -> Redis:
    """A ``redis.asyncio`` client for ``url`` (strings decoded); needs the ``redis`` extra."""
    try:
        from redis.asyncio import Redis
    except ImportError as exc:  # pragma: no cover - the extra is installed in development
        raise CampaignError(
            "shared campaigns need the redis package: pip install 'skycore-async[redis]'"
        ) from exc
    return Redis.from_url(url, decode_responses=True)


@attrs.frozen
class _Keys:
    meta: str
    stream: str
    claims: str
    results: str
    counts: str
    workers: str
    fatal: str

    @classmethod
    def of(cls, name: str) -> _Keys:
        if not name or any(c in name for c in "{}") or len(name) > 200:
            raise ValueError("a campaign name is 1-200 characters without braces")
        base = f"skycore:campaign:{{{name}}}:"
        return cls(*(base + part for part in attrs.fields_dict(cls)))


# ---------------------------------------------------------------------- Lua scripts

# KEYS meta stream results counts; ARGV expected-offset new-offset n (i to r)*n (i status rec)*
_LOAD_CHUNK: Final = """
local offset = tonumber(redis.call('HGET', KEYS[1], 'offset') or '0')
if offset ~= tonumber(ARGV[1]) then return redis.error_reply('SKYCORE_OFFSET ' .. offset) end
local n = tonumber(ARGV[3])
local a = 4
for _ = 1, n do
  if ARGV[a + 2] == '' then
    redis.call('XADD', KEYS[2], '*', 'i', ARGV[a], 'to', ARGV[a + 1])
  else
    redis.call('XADD', KEYS[2], '*', 'i', ARGV[a], 'to', ARGV[a + 1], 'r', ARGV[a + 2])
  end
  a = a + 3
end
while a <= #ARGV do
  if redis.call('HSETNX', KEYS[3], ARGV[a], ARGV[a + 2]) == 1 then
    redis.call('HINCRBY', KEYS[4], ARGV[a + 1], 1)
  end
  a = a + 3
end
redis.call('HSET', KEYS[1], 'offset', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'enqueued', n)
return n
"""

# KEYS meta; ARGV total
_FINISH_LOAD: Final = """
local offset = tonumber(redis.call('HGET', KEYS[1], 'offset') or '0')
if offset ~= tonumber(ARGV[1]) then return redis.error_reply('SKYCORE_OFFSET ' .. offset) end
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'loaded', '1')
return 1
"""

# KEYS claims results; ARGV index worker. 1: claimed (or already ours), 0: refused.
_CLAIM: Final = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner and owner ~= ARGV[2] then return 0 end
if not owner then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""

# KEYS claims; ARGV index worker. Voids our claim: the request was certainly not sent.
_RELEASE: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
"""

# KEYS results counts claims stream; ARGV index status record worker group id.
# 1: recorded, 2: replaced a take-over's INTERRUPTED, 0: an outcome was already there.
_COMPLETE: Final = """
local prev = redis.call('HGET', KEYS[1], ARGV[1])
local ours = redis.call('HGET', KEYS[3], ARGV[1]) == ARGV[4]
local written = 0
if not prev then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  written = 1
elseif ours then
  local old = cjson.decode(prev)
  if old['status'] == 'unknown' and old['error_code'] == 'INTERRUPTED' then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
    redis.call('HINCRBY', KEYS[2], 'unknown', -1)
    redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
    written = 2
  end
end
if ours then redis.call('HDEL', KEYS[3], ARGV[1]) end
redis.call('XACK', KEYS[4], ARGV[5], ARGV[6])
redis.call('XDEL', KEYS[4], ARGV[6])
return written
"""

# KEYS results counts claims stream; ARGV index worker group id unknown-record resend.
_TAKEOVER: Final = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('XACK', KEYS[4], ARGV[3], ARGV[4])
  redis.call('XDEL', KEYS[4], ARGV[4])
  return 'done'
end
if not redis.call('HGET', KEYS[3], ARGV[1]) then return 'send' end
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
  return 'resend'
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
redis.call('HINCRBY', KEYS[2], 'unknown', 1)
redis.call('XACK', KEYS[4], ARGV[3], ARGV[4])
redis.call('XDEL', KEYS[4], ARGV[4])
return 'unknown'
"""


def _record(outcome: Outcome) -> str:
    return orjson.dumps(outcome.to_record()).decode()


def _extras(recipient: Recipient | None) -> str:
    """A recipient's personalisation as JSON ('' for a plain number)."""
    if recipient is None or recipient.is_plain:
        return ""
    extras = {
        "data": recipient.data,
        "custom_text": recipient.custom_text,
        "custom_subject": recipient.custom_subject,
        "client_reference": recipient.client_reference,
    }
    present = {k: v for k, v in extras.items() if v is not None}
    return orjson.dumps(present, option=orjson.OPT_NON_STR_KEYS).decode()


def _recipient(to: str, extras: str | None) -> Recipient | None:
    if not extras:
        return None
    values: dict[str, Any] = orjson.loads(extras)
    text = values.get("custom_text")
    if isinstance(text, dict):
        values["custom_text"] = {int(k): v for k, v in text.items()}
    return Recipient(to=to, **values)


# ---------------------------------------------------------------------- load


@attrs.frozen
class LoadReport:
    """What ``load_campaign`` did.

    Attributes:
        total: input rows in the campaign (every one gets exactly one outcome).
        enqueued: rows put in the stream by this call.
        recorded: rows this call recorded directly (``failed`` bad rows/numbers,
            ``skipped`` duplicates).
        resumed_at: the row this call started at (0 for a fresh load).
        already_loaded: the campaign was complete before this call; nothing was read.
    """

    total: int
    enqueued: int
    recorded: int
    resumed_at: int
    already_loaded: bool


def _message_meta(message: BulkMessage, dialect: Dialect, dedupe: bool) -> dict[str, str]:
    definition = {"mms_id": str(message.mms_id), "from": message.from_, "shared": message.shared}
    return {
        "version": FORMAT_VERSION,
        "message": orjson.dumps(definition, option=orjson.OPT_SORT_KEYS).decode(),
        "dialect": dialect,
        "dedupe": "1" if dedupe else "0",
    }


def _check_message(message: BulkMessage, dialect: Dialect) -> None:
    """Validate the shared fields once, as a worker will (fails before anything is stored)."""
    kwargs = {"to": "10000000000", **message.send_kwargs(None)}
    fields = {k: v for k, v in to_fields("sendSavedMMS", kwargs).items() if v is not None}
    validate_request(ApiRequest("sendSavedMMS", {"API_KEY": "-", **fields}), dialect)


async def load_campaign(
    redis: Redis,
    name: str,
    message: BulkMessage,
    recipients: Iterable[str | Recipient | RowError],
    *,
    dialect: Dialect = "skycore",
    dedupe: bool = True,
    source: str = "",
    chunk: int = 1000,
) -> LoadReport:
    """Put ``recipients`` into campaign ``name``, streaming (one chunk in memory at a time).

    Numbers are normalised; unusable rows and invalid numbers are recorded ``failed``, repeated
    numbers ``skipped`` (unless ``dedupe=False``), everything else enqueued. Each chunk is
    committed by one atomic script together with the input offset it reaches, so calling this
    again for the same campaign (after a crash, or after it finished) never enqueues a row twice:
    it continues at the stored offset, or does nothing when the load was complete.

    Args:
        source: identifies the input (e.g. a file name and size); a reload with another
            source, message, dialect or dedupe setting raises :class:`CampaignError`.

    Raises:
        ValidationError: the shared message is invalid.
        CampaignError: the campaign exists with other settings, or another load is running.
    """
    if chunk < 1:
        raise ValueError("chunk must be >= 1")
    _check_message(message, dialect)
    keys = _Keys.of(name)
    meta = await _init_meta(
        redis, keys, {**_message_meta(message, dialect, dedupe), "source": source}
    )
    offset = int(meta.get("offset") or 0)
    if meta.get("loaded") == "1":
        return LoadReport(int(meta["total"]), 0, 0, offset, already_loaded=True)
    await _ensure_group(redis, keys)
    loader = _Loader(redis, keys, NumberSet() if dedupe else None, offset, chunk)
    for index, item in enumerate(recipients):
        await loader.add(index, item)
    return await loader.finish()


async def _init_meta(redis: Redis, keys: _Keys, wanted: Mapping[str, str]) -> dict[str, str]:
    async with redis.pipeline(transaction=True) as pipe:
        for field, value in wanted.items():
            pipe.hsetnx(keys.meta, field, value)
        pipe.hgetall(keys.meta)
        *_, meta = await pipe.execute()
    for field, value in wanted.items():
        if meta.get(field) != value:
            raise CampaignError(
                f"campaign {keys.meta.split('{')[1].split('}')[0]!r} was loaded with "
                f"{field}={meta.get(field)!r}, not {value!r}: use the original settings, "
                "or a new campaign name"
            )
    return dict(meta)


async def _ensure_group(redis: Redis, keys: _Keys) -> None:
    from redis.exceptions import ResponseError

    try:
        await redis.xgroup_create(keys.stream, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class _Loader:
    """Turns input rows into committed chunks, continuing after ``offset`` rows."""

    def __init__(
        self, redis: Redis, keys: _Keys, seen: NumberSet | None, offset: int, chunk: int
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._seen = seen
        self._resumed_at = self._offset = offset
        self._chunk = chunk
        self._sends: list[str] = []
        self._outcomes: list[str] = []
        self._next = 0
        self._enqueued = self._recorded = 0
        self._script = redis.register_script(_LOAD_CHUNK)

    async def add(self, index: int, item: str | Recipient | RowError) -> None:
        decided = _admit(index, item, self._seen)
        self._next = index + 1
        if index < self._offset:
            return  # committed by an earlier load; read only to rebuild the dedupe set
        if isinstance(decided, Outcome):
            self._outcomes += (str(index), decided.status, _record(decided))
        else:
            self._sends += (str(index), *decided)
        if (len(self._sends) + len(self._outcomes)) // 3 >= self._chunk:
            await self._commit()

    async def _commit(self) -> None:
        if self._next <= self._offset:
            return
        sends = len(self._sends) // 3
        args: list[str | int] = [self._offset, self._next, sends, *self._sends, *self._outcomes]
        try:
            await self._script(keys=[self._keys.meta, self._keys.stream, self._keys.results,
                                     self._keys.counts], args=args)  # fmt: skip
        except Exception as exc:
            if "SKYCORE_OFFSET" in str(exc):
                raise CampaignError(
                    "another load of this campaign moved the offset; let it finish, then "
                    "re-run this load to continue"
                ) from None
            raise
        self._enqueued += sends
        self._recorded += len(self._outcomes) // 3
        self._offset = self._next
        self._sends, self._outcomes = [], []

    async def finish(self) -> LoadReport:
        await self._commit()
        if self._next < self._offset:
            raise CampaignError(
                f"the input has {self._next} rows but {self._offset} were loaded before: "
                "it is not the input this campaign was loaded from"
            )
        finish = self._redis.register_script(_FINISH_LOAD)
        await finish(keys=[self._keys.meta], args=[self._offset])
        return LoadReport(self._offset, self._enqueued, self._recorded, self._resumed_at, False)


def _admit(
    index: int, item: str | Recipient | RowError, seen: NumberSet | None
) -> Outcome | tuple[str, str]:
    """One input row: an outcome recorded at load time, or (number, extras) to enqueue."""
    if isinstance(item, RowError):
        info = f"line {item.line}: {item.reason}"
        return Outcome(index, item.to or "", "failed", error_code="ROW", error_info=info)
    recipient = item if isinstance(item, Recipient) else None
    raw = recipient.to if recipient is not None else str(item)
    reference = recipient.client_reference if recipient is not None else None
    try:
        number = normalize_number(raw)
    except ValidationError as exc:
        return _failed(index, raw, reference, exc)
    if seen is not None and not seen.add(number):
        return Outcome(
            index, number, "skipped", error_code="DUPLICATE",
            error_info="number already in this campaign", client_reference=reference,
        )  # fmt: skip
    return number, _extras(recipient)


# ---------------------------------------------------------------------- work


@attrs.frozen
class WorkerReport:
    """What one worker did.

    Attributes:
        worker: its id (the consumer name in the group).
        sent, failed, unknown: outcomes it recorded (``unknown`` includes take-overs).
        taken_over: entries it took over from workers whose lease ran out.
        drained: True when it stopped because the campaign has nothing left to send.
    """

    worker: str
    sent: int
    failed: int
    unknown: int
    taken_over: int
    drained: bool


class _ClaimRefused(Exception):
    """The claim script refused: another worker owns the recipient, or it is done."""


@attrs.define
class _Entry:
    id: str
    fields: dict[str, str]
    reclaimed: bool


class CampaignWorker:
    """One worker of a shared campaign: ``await CampaignWorker(redis, name, client).run()``.

    Args:
        redis: a ``redis.asyncio`` client with ``decode_responses=True`` (:func:`connect_redis`).
        name: the campaign.
        client: the client to send with; its dialect must match the campaign's. Give it a
            shared throttle (``SkycoreClient(throttle=...)``) when several workers send from
            one account: each worker's own throttle only paces that worker.
        concurrency: requests in flight at most (also how many entries it holds).
        lease: seconds an entry may sit unrenewed before another worker takes it over; longer
            than any request can take. Renewed every ``lease / 3`` while the worker lives.
        resend_unknown: on take-over, resend entries whose request may have gone out
            (at-least-once) instead of recording them ``unknown``.
        poll: seconds a read blocks waiting for new entries.
        worker_id: the consumer name (default: host, pid and a random suffix).
        on_progress: called with the worker's running counters after every heartbeat.

    Raises from :meth:`run`: :class:`CampaignError` (no such campaign, dialect mismatch, Redis
    lost), ``ValidationError`` (the stored message is invalid), or the campaign-fatal
    ``SkycoreError`` (authentication, billing, quota...) after in-flight requests finished.
    """

    def __init__(
        self,
        redis: Redis,
        name: str,
        client: SkycoreClient,
        *,
        concurrency: int = 32,
        lease: float = 60.0,
        resend_unknown: bool = False,
        poll: float = 0.5,
        worker_id: str | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if concurrency < 1 or lease <= 0 or poll <= 0:
            raise ValueError("concurrency must be >= 1; lease and poll must be > 0")
        self._redis = redis
        self._keys = _Keys.of(name)
        self._client = client
        self._concurrency = concurrency
        self._lease = lease
        self._resend_unknown = resend_unknown
        self._poll = poll
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._on_progress = on_progress
        self._queue: asyncio.Queue[_Entry | None] = asyncio.Queue()
        self._held: dict[str, _Entry] = {}
        self._room = asyncio.Event()
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None
        self._drained = False
        self._in_flight = 0
        self._counts = dict.fromkeys((*STATUSES, "taken_over"), 0)
        self._started = time.time()
        self._encoder: MessageEncoder | None = None
        self._scripts = {
            name: redis.register_script(body)
            for name, body in (
                ("claim", _CLAIM), ("release", _RELEASE),
                ("complete", _COMPLETE), ("takeover", _TAKEOVER),
            )
        }  # fmt: skip

    def __repr__(self) -> str:
        return f"<CampaignWorker {self.worker_id!r} {self._keys.meta!r} {self.counts}>"

    @property
    def counts(self) -> dict[str, int]:
        """Outcomes this worker recorded so far, plus ``taken_over`` and ``in_flight``."""
        return {**self._counts, "in_flight": self._in_flight}

    def stop(self) -> None:
        """Stop taking new entries; in-flight requests finish, held entries are handed back."""
        self._stopping.set()

    async def run(self) -> WorkerReport:
        """Work until the campaign is drained, :meth:`stop` is called, or a fatal error."""
        await self._prepare()
        heartbeat = asyncio.create_task(self._heartbeat(), name="skycore-campaign-heartbeat")
        senders = [
            asyncio.create_task(self._send_loop(), name=f"skycore-campaign-sender-{n}")
            for n in range(self._concurrency)
        ]
        try:
            await self._fetch_loop()
        except Exception as exc:  # Redis lost while reading: stop like a fatal error
            self._fail(exc)
        finally:
            for _ in senders:
                self._queue.put_nowait(None)
            await asyncio.gather(*senders, return_exceptions=True)
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await self._hand_back()
            await self._sign_off()
        if self._fatal is not None:
            raise self._fatal
        c = self._counts
        return WorkerReport(
            self.worker_id, c["sent"], c["failed"], c["unknown"], c["taken_over"], self._drained
        )

    async def _prepare(self) -> None:
        meta = await self._redis.hgetall(self._keys.meta)
        if not meta:
            raise CampaignError(f"no campaign at {self._keys.meta}: run 'campaign load' first")
        if meta.get("version") != FORMAT_VERSION:
            raise CampaignError(f"campaign format {meta.get('version')!r} is not supported")
        if meta.get("dialect") != self._client.dialect:
            raise CampaignError(
                f"the campaign was loaded for dialect {meta.get('dialect')!r}, "
                f"the client speaks {self._client.dialect!r}"
            )
        definition = orjson.loads(meta["message"])
        message = BulkMessage(definition["mms_id"], definition["from"], definition["shared"])
        self._encoder = MessageEncoder(self._client, message)
        await _ensure_group(self._redis, self._keys)
        fatal = await self._redis.get(self._keys.fatal)
        if fatal:
            log.warning("an earlier worker of this campaign stopped on: %s", fatal)
        await self._beat("working")

    # ------------------------------------------------------------------ fetching

    async def _fetch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_takeover = 0.0
        cursor = "0-0"
        while not self._stopping.is_set():
            room = await self._wait_for_room()
            if room == 0:
                continue
            if loop.time() >= next_takeover:
                cursor, taken = await self._take_over(cursor, room)
                if taken:
                    continue
                next_takeover = loop.time() + min(self._lease / 4, 1.0)
            loaded = await self._redis.hget(self._keys.meta, "loaded") == "1"
            reply: Any = await self._redis.xreadgroup(
                GROUP, self.worker_id, {self._keys.stream: ">"},
                count=room, block=max(1, int(self._poll * 1000)),
            )  # fmt: skip
            entries = reply[0][1] if reply else []
            for entry_id, fields in entries:
                self._hold(_Entry(entry_id, fields, reclaimed=False))
            if not entries and loaded and not self._held and await self._nothing_pending():
                self._drained = True
                return

    async def _wait_for_room(self) -> int:
        """How many more entries this worker may hold (waits while it holds its fill)."""
        while len(self._held) >= self._concurrency and not self._stopping.is_set():
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), timeout=self._poll)
        return 0 if self._stopping.is_set() else self._concurrency - len(self._held)

    async def _take_over(self, cursor: str, room: int) -> tuple[str, bool]:
        """Claim entries idle past the lease (their worker died); True if any were taken."""
        reply: Any = await self._redis.xautoclaim(
            self._keys.stream, GROUP, self.worker_id,
            min_idle_time=int(self._lease * 1000), start_id=cursor, count=room,
        )  # fmt: skip
        cursor, entries = reply[0], reply[1]
        taken = False
        for entry_id, fields in entries:
            if entry_id in self._held or not fields:
                continue  # already ours and under way here, or deleted meanwhile
            self._hold(_Entry(entry_id, fields, reclaimed=True))
            taken = True
        return cursor, taken

    async def _nothing_pending(self) -> bool:
        summary = await self._redis.xpending(self._keys.stream, GROUP)
        return int(summary["pending"]) == 0

    def _hold(self, entry: _Entry) -> None:
        self._held[entry.id] = entry
        self._queue.put_nowait(entry)

    def _let_go(self, entry: _Entry) -> None:
        self._held.pop(entry.id, None)
        self._room.set()

    async def _hand_back(self) -> None:
        """Make held, unsent entries at once claimable by other workers (idle = 10 leases)."""
        ids: list[Any] = list(self._held)
        if not ids:
            return
        idle = int(self._lease * 10_000)
        try:
            await self._redis.xclaim(
                self._keys.stream, GROUP, self.worker_id, 0, ids, idle=idle, justid=True
            )
        except Exception as exc:  # they are taken over after the lease anyway
            log.warning("could not hand back %d entries: %r", len(ids), exc)

    # ------------------------------------------------------------------ sending

    async def _send_loop(self) -> None:
        while (entry := await self._queue.get()) is not None:
            if self._stopping.is_set():
                continue  # not started: handed back at exit
            try:
                finished = await self._process(entry)
            except _ClaimRefused:
                self._let_go(entry)
            except Exception as exc:  # Redis failed: stop; the lease protects the rest
                self._fail(exc)
            else:
                if finished:  # else it stays held, to be handed back at exit
                    self._let_go(entry)

    async def _process(self, entry: _Entry) -> bool:
        """Send one entry and record its outcome; False when it was left unsent (fatal)."""
        index, number = int(entry.fields["i"]), entry.fields["to"]
        recipient = _recipient(number, entry.fields.get("r"))
        reference = recipient.client_reference if recipient is not None else None
        if entry.reclaimed and not await self._resolve_takeover(entry, index, number, reference):
            return True
        try:
            http = self._encoder.encode(number, recipient)  # type: ignore[union-attr]
        except ValidationError as exc:
            await self._complete(entry, _failed(index, number, reference, exc))
            return True
        self._in_flight += 1
        try:
            reply, attempts = await self._client.execute(
                http, before_send=lambda: self._claim(index)
            )
        except SkycoreError as exc:
            if exc.fatal:
                self._fail(exc)
                if not (exc.ambiguous or self._client.retry_policy.retry_ambiguous):
                    # Refused for the whole campaign: not sent. Left pending for a later worker.
                    await self._scripts["release"](
                        keys=[self._keys.claims], args=[index, self.worker_id]
                    )
                    return False
            outcome = _from_error(index, number, reference, exc)
        else:
            tracking_id = reply.fields.get("TRACKINGID") or None
            outcome = Outcome(
                index, number, "sent", tracking_id=tracking_id,
                attempts=attempts, client_reference=reference,
            )  # fmt: skip
        finally:
            self._in_flight -= 1
        await self._complete(entry, outcome)
        return True

    async def _resolve_takeover(
        self, entry: _Entry, index: int, number: str, reference: str | None
    ) -> bool:
        """Decide an entry taken over from another worker; True when it is to be sent."""
        unknown = Outcome(
            index, number, "unknown", error_code="INTERRUPTED", error_info=_INTERRUPTED_INFO,
            attempts=1, client_reference=reference,
        )  # fmt: skip
        verdict = await self._scripts["takeover"](
            keys=[self._keys.results, self._keys.counts, self._keys.claims, self._keys.stream],
            args=[index, self.worker_id, GROUP, entry.id, _record(unknown),
                  "1" if self._resend_unknown else "0"],
        )  # fmt: skip
        self._counts["taken_over"] += 1
        if verdict == "unknown":
            self._counts["unknown"] += 1
            log.info("recipient %d was in flight at a worker that stopped: unknown", index)
        elif verdict == "resend":
            log.info("recipient %d was in flight at a worker that stopped: resending", index)
        return verdict in ("send", "resend")

    async def _claim(self, index: int) -> None:
        """The write-ahead claim, awaited inside the throttle slot right before the request."""
        granted = await self._scripts["claim"](
            keys=[self._keys.claims, self._keys.results], args=[index, self.worker_id]
        )
        if not granted:
            raise _ClaimRefused(index)

    async def _complete(self, entry: _Entry, outcome: Outcome) -> None:
        """Record the outcome, ack and delete the entry: one script, retried while Redis blips."""
        keys = [self._keys.results, self._keys.counts, self._keys.claims, self._keys.stream]
        args = [outcome.index, outcome.status, _record(outcome), self.worker_id, GROUP, entry.id]
        for attempt in range(6):
            try:
                written = await self._scripts["complete"](keys=keys, args=args)
                break
            except Exception as exc:
                if attempt == 5:
                    log.error("outcome not recorded (Redis failed: %r): %s", exc, args[2])
                    raise
                await asyncio.sleep(min(self._lease / 6, 0.2 * 2**attempt))
        if written:  # 2: it replaced a take-over's INTERRUPTED (counted at that worker)
            self._counts[outcome.status] += 1

    def _fail(self, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
            log.error("worker %s stopping: %s", self.worker_id, error)
        self._stopping.set()

    # ------------------------------------------------------------------ heartbeat

    async def _heartbeat(self) -> None:
        """Renew the lease on held entries every lease/3; stop before it can lapse."""
        loop = asyncio.get_running_loop()
        interval = self._lease / 3
        renewed = loop.time()
        while True:
            await asyncio.sleep(interval)
            held: list[Any] = list(self._held)
            try:
                if held:
                    await self._redis.xclaim(
                        self._keys.stream, GROUP, self.worker_id, 0, held, justid=True
                    )
                renewed = loop.time()
                await self._beat("working")
                await self._check_fatal()
            except Exception as exc:
                if loop.time() - renewed + interval >= self._lease:
                    self._fail(
                        CampaignError(f"lost Redis; stopping before the lease lapses: {exc!r}")
                    )
                    return
                log.warning("heartbeat failed (%r); retrying", exc)
            if self._on_progress is not None:
                self._on_progress(self.counts)

    async def _beat(self, state: str) -> None:
        info = {
            "host": socket.gethostname(), "pid": os.getpid(), "state": state,
            "started": self._started, "heartbeat": time.time(), **self.counts,
        }  # fmt: skip
        await self._redis.hset(self._keys.workers, self.worker_id, orjson.dumps(info).decode())

    async def _sign_off(self) -> None:
        """Last heartbeat with the final state; publish a campaign-fatal API error."""
        state = "drained" if self._drained else "failed" if self._fatal else "stopped"
        try:
            await self._beat(state)
            if isinstance(self._fatal, ApiError):  # the account's problem: every worker's
                error = self._fatal
                notice = {
                    "error": str(error), "code": getattr(error, "code", None),
                    "worker": self.worker_id, "at": time.time(),
                }  # fmt: skip
                await self._redis.set(self._keys.fatal, orjson.dumps(notice).decode())
        except Exception as exc:  # Redis is what failed: nothing more to record
            log.warning("could not record the worker's final state: %r", exc)

    async def _check_fatal(self) -> None:
        raw: str | None = await self._redis.get(self._keys.fatal)  # type: ignore[assignment]
        if raw and orjson.loads(raw).get("at", 0) > self._started and self._fatal is None:
            self._fail(CampaignError(f"another worker stopped the campaign: {raw}"))


# ---------------------------------------------------------------------- status and results


@attrs.frozen
class WorkerInfo:
    """A worker as its last heartbeat described it.

    Attributes:
        worker: the worker id; ``host`` and ``pid`` where it runs.
        state: ``working``, ``drained``, ``stopped`` (interrupted) or ``failed``.
        started, heartbeat: Unix times (the worker's clock) it started and last reported.
        counts: its outcomes (``sent``, ``failed``, ``unknown``), ``taken_over``, ``in_flight``.
    """

    worker: str
    host: str
    pid: int
    state: str
    started: float
    heartbeat: float
    counts: dict[str, int]


@attrs.frozen
class CampaignStatus:
    """Progress of a campaign across all its workers.

    Attributes:
        total: input rows (while a load runs: rows loaded so far).
        loaded: the load finished.
        sent, failed, unknown, skipped: outcomes recorded; ``done`` is their sum.
        queued: entries no worker has read yet.
        held: entries read by a worker and not done (in flight, or waiting for take-over).
        workers: every worker seen, by its last heartbeat.
        fatal: the campaign-fatal error that stopped a worker, if any.
        dialect: the XML dialect the campaign was loaded for (workers speak it).
        message: the stored message definition (``mms_id``, ``from``, ``shared``).
    """

    name: str
    total: int
    loaded: bool
    sent: int
    failed: int
    unknown: int
    skipped: int
    queued: int
    held: int
    workers: tuple[WorkerInfo, ...]
    fatal: str | None
    dialect: Dialect
    message: dict[str, Any]

    @property
    def done(self) -> int:
        """Rows with an outcome."""
        return self.sent + self.failed + self.unknown + self.skipped

    @property
    def pending(self) -> int:
        """Rows without an outcome yet."""
        return max(0, self.total - self.done)


async def campaign_status(redis: Redis, name: str) -> CampaignStatus:
    """A snapshot of campaign ``name`` (raises :class:`CampaignError` when it does not exist)."""
    from redis.exceptions import ResponseError

    keys = _Keys.of(name)
    async with redis.pipeline(transaction=True) as pipe:
        for key in (keys.meta, keys.counts, keys.workers):
            pipe.hgetall(key)
        pipe.xlen(keys.stream)
        pipe.get(keys.fatal)
        meta, counts, workers, length, fatal = await pipe.execute()
    if not meta:
        raise CampaignError(f"no campaign at {keys.meta}")
    try:
        held = int((await redis.xpending(keys.stream, GROUP))["pending"])
    except ResponseError:  # no group yet
        held = 0
    infos = tuple(sorted((_worker_info(k, v) for k, v in workers.items()), key=_started))
    total = int(meta.get("total") or meta.get("offset") or 0)
    c = {status: int(counts.get(status) or 0) for status in STATUSES}
    return CampaignStatus(
        name=name, total=total, loaded=meta.get("loaded") == "1", **c,
        queued=max(0, int(length) - held), held=held, workers=infos, fatal=fatal,
        dialect=meta.get("dialect", "skycore"), message=orjson.loads(meta.get("message") or "{}"),
    )  # fmt: skip


def _started(info: WorkerInfo) -> float:
    return info.started


def _worker_info(worker: str, raw: str) -> WorkerInfo:
    data = orjson.loads(raw)
    counts = {k: int(data.get(k) or 0) for k in ("sent", "failed", "unknown", "taken_over",
                                                  "in_flight")}  # fmt: skip
    return WorkerInfo(
        worker=worker, host=str(data.get("host", "")), pid=int(data.get("pid", 0)),
        state=str(data.get("state", "")), started=float(data.get("started", 0.0)),
        heartbeat=float(data.get("heartbeat", 0.0)), counts=counts,
    )  # fmt: skip


async def campaign_results(redis: Redis, name: str, *, chunk: int = 1000) -> AsyncIterator[str]:
    """Every outcome record (JSON text, the ``bulk`` results fields), in input order, once each.

    Rows without an outcome yet are left out; compare the count with ``total`` to know whether
    the campaign is complete. Reads ``chunk`` rows per round trip: memory stays flat.
    """
    keys = _Keys.of(name)
    meta = await redis.hmget(keys.meta, ["total", "offset"])
    total = int(meta[0] or meta[1] or 0)
    for start in range(0, total, chunk):
        fields = [str(i) for i in range(start, min(total, start + chunk))]
        values: list[Any] = await redis.hmget(keys.results, fields)
        for value in values:
            if value is not None:
                yield value
