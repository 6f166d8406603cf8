"""A throttle shared through Redis: many processes or hosts, one account's limits.

:class:`RedisThrottle` has :class:`~skycore_async.throttle.Throttle`'s interface, so a client
takes it unchanged::

    throttle = RedisThrottle("redis://10.0.0.5:6379/0", account=account_from_api_key(key),
                             limits=Limits(rate=150))
    async with SkycoreClient(api_key=key, throttle=throttle) as client:
        ...

Every decision is taken inside Redis by a Lua script (atomic, on Redis's own ``TIME``, so the
workers' clocks do not matter). The keys of one account share a hash tag (``{account}``), so
the scripts also run on Redis Cluster::

    <prefix>:{<account>}:account          hash: tat  account GCRA: theoretical arrival time
                                                pu   paused until (Redis time, s)
                                                pt   seconds of pause booked so far
                                                mi   spacing learnt from E106 (s)
                                                st   spacing: earliest next start
                                                sh   "1" while the latest spaced call is
                                                     unanswered; sl: its grant time
    <prefix>:{<account>}:action:<action>  hash: tat, iv  the action's GCRA and its interval
                                                ep   congestion epoch (E113 cuts so far)
                                                cr, wm, k, rg  the last cut: rate, W_max,
                                                     CUBIC's K, regrowth start
                                                n, w0, p0, pr  meter of granted calls

Both expire after an hour without use. The account name is whatever the caller gives
(:func:`account_from_api_key` hashes a key); the API key itself never reaches Redis.

Admission (script ``ADMIT``), for one call of one action:

1. wait while the shared pause (``pu``) lasts;
2. under spacing (``mi``, or ``Limits.min_interval``) wait for ``st``: a grant sets it to
   ``start + 2 X`` and the call's answer lowers it to ``max(start + X, answer + X - credit)``
   (the single-process rule of :class:`~skycore_async.throttle._Spacing`); while the latest
   call is unanswered, waiters poll (every X/10, 2-50 ms) instead of sleeping the whole hold;
3. GCRA on the account rate L: a call conforms when ``tat - (burst - 1) / L <= now``; a grant
   sets ``tat = max(tat, now - 5 ms) + 1 / L``. The 5 ms catch-up lets a waiter woken a little
   late keep the schedule (timers and the round trip to Redis make every waiter ~1 ms late);
4. the same GCRA on the action's own rate, when it has one (``Limits.per_action``) or was cut.

A call that conforms is granted and booked; otherwise the script answers how long to wait and
books nothing. In each process one waiter per action asks at a time (an ``asyncio.Lock``), so
Redis sees about one request per grant per process. In any 1 s window the grants number at
most ``L + (burst - 1) + ceil(0.005 L)``: with the default burst of 1 that is 1.005 L at
200/s and 1.01 L at 100/s; what reaches Skycore also carries each call's network jitter.

E113/E510 (script ``THROTTLED``): one cut per congestion event across all workers. Each grant
carries the action's epoch ``ep``; a report cuts only when its call's epoch is still current
(then ``ep`` increases), so the other answers to calls sent before the cut change nothing. The
cut sets the action's rate to ``max(floor, decrease x min(rate limit, measured))`` where
"measured" is the aggregate rate all workers were granted over the last second of sending
(paused time left out), pauses every worker ``e113_pause``, and regrowth then follows
``W(t) = max(cut + increase t, cubic (t - K)^3 + W_max)`` (t since the pause's end), computed
from the time in every admission, until it reaches the ceiling. Unlike the single-process
throttle, regrowth is not capped by twice the measured rate.

E106 raises the shared spacing to X (never lowers it) and pauses every worker X. E120 pauses
every worker ``quota_cooldown`` when that is set.

Redis errors, connection failures and timeouts raise
:class:`~skycore_async.errors.ThrottleUnavailableError` from the slot, before the call is
sent: a worker never falls back to an unshared limit. ``on_throttled`` is synchronous (as the
client calls it), so its report goes to Redis from a task; the process's next slot waits for
that report, and raises if it could not be delivered.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Literal

import attrs
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from .config import DEFAULT_LIMITS, Limits
from .errors import CallIntervalError, QuotaExceededError, ThrottledError, ThrottleUnavailableError

# The same policy as the in-process throttle: catch-up allowance for a late waiter, the
# round-trip credit in E106 spacing, and the first call's warm-up hold.
from .throttle import (
    _CATCH_UP,
    _RTT_CREDIT,
    _RTT_SAMPLES,
    _WARM_UP,
    Permit,
    ThrottleEvent,
    ThrottleStats,
    call_hook,
)

__all__ = ["RedisThrottle", "account_from_api_key"]

_log = logging.getLogger("skycore_async")

#: A grant may book a slot up to this far ahead (then the caller sleeps until it, without
#: asking again): one process can keep several slots booked while its next ask travels.
_HORIZON: Final = 0.025
#: Keys expire after this long unused (longer while a pause lasts).
_TTL_MS: Final = 3_600_000
#: Connections to Redis per throttle (a URL-made client): asks are short, and a burst of
#: callers must not open one connection each.
_CONNECTIONS: Final = 4
#: current_rate / measured_rate / stats read the shared state at most this often.
_CACHE: Final = 0.5
_ACCOUNT = re.compile(r"[^\s{}]{1,200}")

_PRELUDE: Final = """
local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function num(v, d)
  if v then return tonumber(v) end
  return d
end
local function fmt(x) return string.format('%.6f', x) end
-- Pause seconds that have elapsed (pt books whole pauses, some of it still ahead).
local function paused_elapsed(pu, pt, now)
  if pu > now then return pt - (pu - now) end
  return pt
end
-- The action's rate: its ceiling (0 = none), or after a cut the regrowth curve at now.
local function action_rate(now, ceiling, cr, wm, k, rg, inc, cubic)
  if not cr then return ceiling end
  local t = now - rg
  if t <= 0 then return cr end
  local w = cr + inc * t
  if cubic > 0 then
    local c = cubic * (t - k) ^ 3 + wm
    if c > w then w = c end
  end
  if ceiling > 0 and w >= ceiling then return ceiling end
  return w
end
-- Calls/s granted over the last second of sending; the second value is false when the
-- meter has seen under 0.1 s of sending (then the rate is calls / 0.1 s).
local function measured(now, n, w0, p0, pr, pe)
  if not w0 then return 0, false end
  local span = (now - w0) - (pe - p0)
  if span < 0 then span = 0 end
  if pr >= 0 and span < 1 then return n + pr * (1 - span), true end
  if span < 0.1 then return n / 0.1, false end
  return n / span, true
end
local function expire(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
"""

# KEYS: account, action. ARGV: rate (0 = none), burst, ceiling (0 = none), own (1 = the
# action has a rate of its own), min_interval, catch_up, increase, cubic, ttl_ms, horizon.
# Returns {granted, wait_us, epoch, rate, measured, grant time or now, paused_until, spaced}:
# granted: go in wait_us (a slot booked at most the horizon ahead); not: ask again then.
_ADMIT: Final = (
    _PRELUDE
    + """
local now = now_s()
local rate, burst, ceiling = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local own, catch_up = ARGV[4] == '1', tonumber(ARGV[6])
local inc, cubic, ttl = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local horizon = tonumber(ARGV[10])
local a = redis.call('HMGET', KEYS[1], 'tat', 'pu', 'pt', 'mi', 'st', 'sh')
local tat, pu, pt = num(a[1], 0), num(a[2], 0), num(a[3], 0)
local mi = math.max(num(a[4], 0), tonumber(ARGV[5]))
local st, holding = num(a[5], 0), a[6] == '1'
local x = redis.call('HMGET', KEYS[2], 'tat', 'iv', 'ep', 'cr', 'wm', 'k', 'rg',
                     'n', 'w0', 'p0', 'pr')
local xtat, xiv, ep = num(x[1], 0), num(x[2], 0), num(x[3], 0)
local cr = num(x[4], nil)
local arate = action_rate(now, ceiling, cr, num(x[5], 0), num(x[6], 0), num(x[7], 0), inc, cubic)
local pe = paused_elapsed(pu, pt, now)
local n, w0, p0, pr = num(x[8], 0), num(x[9], nil), num(x[10], 0), num(x[11], -1)
local m = measured(now, n, w0, p0, pr, pe)

-- The earliest time every gate allows: the pause, the spacing, the two GCRAs.
local at = now
if pu > at then at = pu end
local hold = mi > 0 and holding and st > now
if mi > 0 and st > at then at = st end
local iv = 0
if rate > 0 then
  iv = 1 / rate
  at = math.max(at, tat - (burst - 1) * iv)
end
local paced = arate > 0 and (own or cr ~= nil)
local aiv = 0
if paced then
  aiv = 1 / arate
  if xtat > now and xiv > 0 and xiv ~= aiv then xtat = now + (xtat - now) * aiv / xiv end
  at = math.max(at, xtat - (burst - 1) * aiv)
end
-- At most one interval ahead: a booked slot whose process is then late (CPU starved)
-- moves into the next window, and at most ~one such slot is outstanding at a time.
if iv > 0 and iv < horizon then horizon = iv end
if aiv > 0 and aiv < horizon then horizon = aiv end
local wait = 0
if hold then  -- the hold ends when the latest call's answer comes: poll, reserve nothing
  wait = math.min(at - now, math.max(0.002, math.min(mi / 10, 0.05)))
elseif at - now > horizon then  -- come back when the slot is within the horizon
  wait = at - now - horizon
end
if wait > 0 then
  return {0, math.ceil(wait * 1000000), ep, fmt(arate), fmt(m), fmt(now), fmt(pu), 0}
end

-- Granted: book the slot at `at` (now, or up to the horizon ahead).
if rate > 0 then
  redis.call('HSET', KEYS[1], 'tat', fmt(math.max(tat, at - catch_up) + iv))
end
local granted = fmt(at)
if mi > 0 then
  redis.call('HSET', KEYS[1], 'st', fmt(at + 2 * mi), 'sh', '1', 'sl', granted)
end
if paced then
  redis.call('HSET', KEYS[2], 'tat', fmt(math.max(xtat, at - catch_up) + aiv), 'iv', fmt(aiv))
end
if cr and ceiling > 0 and arate >= ceiling then
  redis.call('HDEL', KEYS[2], 'cr', 'wm', 'k', 'rg')
end
if not w0 then w0, p0, n = now, pe, 0 end
local span = (now - w0) - (pe - p0)
if span >= 1 then pr, n, w0, p0 = n / span, 0, now, pe end
redis.call('HSET', KEYS[2], 'n', n + 1, 'w0', fmt(w0), 'p0', fmt(p0), 'pr', fmt(pr))
expire(KEYS[1], ttl)
expire(KEYS[2], ttl)
local spaced = 0
if mi > 0 then spaced = 1 end
return {1, math.ceil((at - now) * 1000000), ep, fmt(arate), fmt(m), granted, fmt(pu), spaced}
"""
)

# KEYS: account. ARGV: grant time (as ADMIT returned it), min_interval, credit, ttl_ms.
# Returns 1 when the next start moved earlier (local waiters may go sooner).
_ANSWERED: Final = (
    _PRELUDE
    + """
local now = now_s()
local a = redis.call('HMGET', KEYS[1], 'mi', 'st', 'sl')
local mi = math.max(num(a[1], 0), tonumber(ARGV[2]))
if mi <= 0 then return 0 end
local st = num(a[2], 0)
local bound = now + mi - tonumber(ARGV[3])
if a[3] == ARGV[1] then
  local next_start = math.max(tonumber(ARGV[1]) + mi, bound)
  redis.call('HSET', KEYS[1], 'st', fmt(next_start), 'sh', '0')
  expire(KEYS[1], tonumber(ARGV[4]))
  if next_start < st then return 1 end
elseif bound > st then
  redis.call('HSET', KEYS[1], 'st', fmt(bound))
end
return 0
"""
)

# KEYS: account, action. ARGV: kind (interval | quota | throughput), seconds (the pause; for
# interval also the spacing), observed epoch, ceiling, decrease, floor, increase, cubic, ttl.
# Returns {cut (1/0), epoch, paused_until, rate, basis, now}.
_THROTTLED: Final = (
    _PRELUDE
    + """
local now = now_s()
local kind, seconds, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[9])
local ceiling, inc, cubic = tonumber(ARGV[4]), tonumber(ARGV[7]), tonumber(ARGV[8])
local a = redis.call('HMGET', KEYS[1], 'pu', 'pt', 'mi')
local pu, pt = num(a[1], 0), num(a[2], 0)
local function pause()
  local untl = now + seconds
  if untl > pu then
    pt = pt + untl - math.max(pu, now)
    pu = untl
    redis.call('HSET', KEYS[1], 'pu', fmt(pu), 'pt', fmt(pt))
    expire(KEYS[1], math.max(ttl, math.ceil((seconds + 60) * 1000)))
  end
end
if kind == 'interval' then
  redis.call('HSET', KEYS[1], 'mi', fmt(math.max(num(a[3], 0), seconds)))
  pause()
  return {1, 0, fmt(pu), '0', '0', fmt(now)}
end
if kind == 'quota' then
  pause()
  return {1, 0, fmt(pu), '0', '0', fmt(now)}
end
local x = redis.call('HMGET', KEYS[2], 'ep', 'cr', 'wm', 'k', 'rg', 'n', 'w0', 'p0', 'pr')
local ep = num(x[1], 0)
local cr = num(x[2], nil)
local limit = action_rate(now, ceiling, cr, num(x[3], 0), num(x[4], 0), num(x[5], 0), inc, cubic)
if tonumber(ARGV[3]) < ep then
  return {0, ep, fmt(pu), fmt(limit), '0', fmt(now)}
end
local m, trusted = measured(now, num(x[6], 0), num(x[7], nil), num(x[8], 0), num(x[9], -1),
                            paused_elapsed(pu, pt, now))
local sending = limit
if limit <= 0 or (trusted and m < limit) then sending = m end
local new = math.max(tonumber(ARGV[6]), tonumber(ARGV[5]) * sending)
if limit > 0 and new > limit then new = limit end
local wm = math.max(sending, new)
local k = 0
if cubic > 0 then k = ((wm - new) / cubic) ^ (1 / 3) end
ep = ep + 1
redis.call('HSET', KEYS[2], 'ep', ep, 'cr', fmt(new), 'wm', fmt(wm), 'k', fmt(k),
           'rg', fmt(now + seconds))
expire(KEYS[2], ttl)
pause()
return {1, ep, fmt(pu), fmt(new), fmt(sending), fmt(now)}
"""
)

# KEYS: account, action. ARGV: ceiling, increase, cubic.
# Returns {rate, measured, now, paused_until, min_interval, epoch}.
_READ: Final = (
    _PRELUDE
    + """
local now = now_s()
local a = redis.call('HMGET', KEYS[1], 'pu', 'pt', 'mi')
local pu, pt = num(a[1], 0), num(a[2], 0)
local x = redis.call('HMGET', KEYS[2], 'ep', 'cr', 'wm', 'k', 'rg', 'n', 'w0', 'p0', 'pr')
local rate = action_rate(now, tonumber(ARGV[1]), num(x[2], nil), num(x[3], 0), num(x[4], 0),
                         num(x[5], 0), tonumber(ARGV[2]), tonumber(ARGV[3]))
local m = measured(now, num(x[6], 0), num(x[7], nil), num(x[8], 0), num(x[9], -1),
                   paused_elapsed(pu, pt, now))
return {fmt(rate), fmt(m), fmt(now), fmt(pu), fmt(num(a[3], 0)), num(x[1], 0)}
"""
)

_Kind = Literal["interval", "quota", "throughput"]


def account_from_api_key(api_key: str) -> str:
    """A stable account name for Redis keys, derived from an API key by hashing (SHA-256).

    Every worker of one account gets the same name; the key cannot be read back from it.
    """
    digest = hashlib.sha256(b"skycore-async account\0" + api_key.encode("utf-8")).hexdigest()
    return f"key-{digest[:32]}"


@attrs.define
class _Local:
    """What this process knows about one action (the shared values are cached copies)."""

    epoch: int = 0  # the newest congestion epoch seen
    known: bool = False  # the shared values below were read at least once
    rate: float | None = None  # shared rate limit (None = unlimited) ...
    measured: float = 0.0  # ... and shared measured rate, as of ...
    read_at: float = -math.inf  # ... this loop time
    sent: int = 0
    throttled: int = 0
    retried: int = 0


@attrs.frozen
class _Grant:
    epoch: int
    granted: str  # Redis time of the grant, as the script wrote it
    spaced: bool
    started: float  # loop time


class _RedisSlot:
    """The async context manager returned by :meth:`RedisThrottle.slot`."""

    __slots__ = ("_action", "_grant", "_throttle")

    def __init__(self, throttle: RedisThrottle, action: str) -> None:
        self._throttle = throttle
        self._action = action
        self._grant: _Grant | None = None

    async def __aenter__(self) -> Permit:
        throttle = self._throttle
        throttle._bind()
        await throttle._sem.acquire()
        try:
            permit, self._grant = await throttle._admit(self._action)
        except BaseException:
            throttle._warmed_up()
            throttle._sem.release()
            raise
        throttle._in_flight += 1
        return permit

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        throttle, grant = self._throttle, self._grant
        assert grant is not None
        throttle._in_flight -= 1
        try:
            if grant.spaced:
                await throttle._answered(grant)
        finally:
            # Last, after any await: on_throttled runs right after this exit and reads it.
            throttle._answer_epoch = grant.epoch
            throttle._warmed_up()
            throttle._sem.release()


class RedisThrottle:
    """A throttle shared by every process that uses the same Redis and account name.

    Same interface as :class:`~skycore_async.throttle.Throttle`; see the module docstring for
    how admission, pauses and E113 cuts are shared. It binds to the event loop that first uses
    it; use one per loop (and one per process: the concurrency cap is per instance).

    Args:
        redis: a ``redis://`` URL (the throttle makes and closes its own client), or a
            ``redis.asyncio.Redis`` the caller owns.
        account: the name every worker of the account uses, e.g.
            ``account_from_api_key(api_key)``; no whitespace or braces, at most 200 chars.
        limits: rates, burst, concurrency (per process) and the adaptive parameters; every
            worker of an account should use the same.
        on_throttle: called with a :class:`~skycore_async.throttle.ThrottleEvent` from
            :meth:`on_throttled`.
        key_prefix: prefix of the Redis keys.
        timeout: seconds a Redis call may take before the slot raises
            :class:`~skycore_async.errors.ThrottleUnavailableError`.
        headroom: the share of each rate left unused (default 3 %). Grants are exact, but
            what happens after a grant is not: processes on busy hosts wake late and their
            calls reach Skycore bunched. Pacing at 97 % keeps the busiest second under the
            limit; 0 paces at the full rate.
    """

    def __init__(
        self,
        redis: str | Redis,
        *,
        account: str,
        limits: Limits = DEFAULT_LIMITS,
        on_throttle: Callable[[ThrottleEvent], None] | None = None,
        key_prefix: str = "skycore:throttle",
        timeout: float = 2.0,
        headroom: float = 0.03,
    ) -> None:
        if not 0 <= headroom < 0.5:
            raise ValueError(f"headroom must be in [0, 0.5), got {headroom!r}")
        if not _ACCOUNT.fullmatch(account):
            raise ValueError("account must be 1-200 characters, no whitespace or braces")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        self._limits = limits
        self._scale = 1.0 - headroom
        self.on_throttle = on_throttle
        self._url = redis if isinstance(redis, str) else None
        self._client: Redis | None = None if isinstance(redis, str) else redis
        self._where = _describe(redis)
        self._timeout = timeout
        base = f"{key_prefix}:{{{account}}}"
        self._account_key = f"{base}:account"
        self._action_prefix = f"{base}:action:"
        self._scripts: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem = asyncio.Semaphore(limits.concurrency)
        self._askers: dict[str, asyncio.Lock] = {}
        self._sleepers: set[asyncio.Future[None]] = set()
        self._reports: deque[tuple[_Kind, str, float, int]] = deque()
        self._flush_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._actions: dict[str, _Local] = {}
        self._answer_epoch = 0
        self._warm_up: asyncio.Future[None] | None = None  # done once the first call answered
        self._offset = 0.0  # Redis time - loop time, from the latest reply
        self._paused_until = -math.inf  # Redis time
        self._min_interval = limits.min_interval
        self._lowest_rtt = math.inf
        self._spaced_answers = 0
        self._in_flight = self._waiting = 0
        self._sent = self._throttled = self._retried = 0

    @property
    def limits(self) -> Limits:
        """The configuration this throttle was built with."""
        return self._limits

    async def aclose(self) -> None:
        """Close the Redis client if this throttle made it (from a URL); idempotent."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        client, self._client = self._client, None
        self._scripts.clear()
        if client is not None and self._url is not None:
            await client.aclose()
        elif client is not None:
            self._client = client

    async def __aenter__(self) -> RedisThrottle:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the sender's side ---------------------------------------------------------------

    def enter_now(self, action: str) -> None:
        """No synchronous fast path: every call asks Redis, so the client uses :meth:`slot`."""

    def leave(self, granted: float) -> None:
        """Never needed, since :meth:`enter_now` never enters a call."""
        raise RuntimeError("RedisThrottle.leave: calls are entered with slot(), not enter_now()")

    def slot(self, action: str) -> _RedisSlot:
        """Wait for a concurrency slot, then for Redis to admit the call; yields a Permit.

        Raises:
            ThrottleUnavailableError: Redis could not be asked (nothing was sent).
        """
        return _RedisSlot(self, action)

    async def _admit(self, action: str) -> tuple[Permit, _Grant]:
        """Ask Redis until it grants a slot, then sleep until the slot's time.

        A caller asks at once when nobody of this action waits in this process; otherwise
        (and after being told to wait) it queues on the action's lock, so each process has
        one asker per action polling Redis. The lock is released once a slot is booked.
        """
        loop = self._bind()
        arrival = loop.time()
        if self._warm_up is None or not self._warm_up.done():
            await self._warm_up_hold(loop)
        lock = self._askers.get(action)
        if lock is None:
            lock = self._askers[action] = asyncio.Lock()
        self._waiting += 1
        try:
            while True:
                reply, wake = None, -math.inf
                if not lock.locked():
                    reply = await self._ask(action)
                    wake = loop.time() + reply[1] / 1e6
                if reply is None or not reply[0]:
                    async with lock:
                        reply = await self._ask_until_granted(action, wake)
                if reply[1] > 0:  # booked a little ahead
                    await asyncio.sleep(reply[1] / 1e6)
                now = loop.time()
                if self._paused_until - self._offset <= now:
                    break
                # This process learnt of a pause while sleeping: wait for it, book anew.
        finally:
            self._waiting -= 1
        grant = _Grant(int(reply[2]), str(reply[5]), bool(reply[7]), now)
        return Permit(action, now, now - arrival), grant

    async def _warm_up_hold(self, loop: asyncio.AbstractEventLoop) -> None:
        """The first paced call of this process goes alone; the others wait for its answer.

        It opens the first HTTP connection, so it reaches Skycore late; calls granted behind
        it would arrive bunched with it (at most ``_WARM_UP`` is spent waiting).
        """
        if self._warm_up is None:
            self._warm_up = loop.create_future()
            if not (self._limits.rate or self._limits.per_action):
                self._warm_up.set_result(None)  # no rate: nothing to bunch against
            return
        await asyncio.wait([self._warm_up], timeout=_WARM_UP)

    def _warmed_up(self) -> None:
        if self._warm_up is not None:
            _wake(self._warm_up)

    async def _ask_until_granted(self, action: str, wake: float) -> list[Any]:
        """Holding the action's lock: sleep until ``wake``, ask, repeat until granted."""
        loop = self._bind()
        if wake > loop.time():  # told to wait before queueing: what is left of that wait
            await self._sleep(wake - loop.time())
        while True:
            reply = await self._ask(action)
            if reply[0]:
                return reply
            await self._sleep(reply[1] / 1e6)

    async def _ask(self, action: str) -> list[Any]:
        """One ADMIT call (after this process's pending reports reach Redis)."""
        if self._reports:  # our own E106/E113 reports land before we ask
            await self._flush()
        keys, args = [*self._keys(action)], self._admit_args(action)
        reply: list[Any] = await self._call("admit", keys, args)
        now = self._bind().time()
        wait = reply[1] / 1e6
        server_now = float(reply[5]) - wait if reply[0] else float(reply[5])
        self._note(action, reply[2], reply[3], reply[4], server_now, reply[6], now)
        return reply

    def _admit_args(self, action: str) -> list[float | int | str]:
        limits = self._limits
        own = action in limits.per_action
        return [
            (limits.rate or 0) * self._scale, limits.burst, self._ceiling(action), int(own),
            limits.min_interval, _CATCH_UP, limits.increase, limits.cubic, _TTL_MS, _HORIZON,
        ]  # fmt: skip

    def _ceiling(self, action: str) -> float:
        """The rate the action is paced at: its limit less the headroom (0 = none)."""
        return (self._limits.per_action.get(action) or self._limits.rate or 0) * self._scale

    def _keys(self, action: str) -> tuple[str, str]:
        return self._account_key, self._action_prefix + action

    async def _answered(self, grant: _Grant) -> None:
        """A spaced call was answered: let Redis move the next start (never raises)."""
        rtt = self._now() - grant.started
        self._lowest_rtt = min(self._lowest_rtt, rtt)
        self._spaced_answers += 1
        credit = self._lowest_rtt * _RTT_CREDIT if self._spaced_answers > _RTT_SAMPLES else 0.0
        args = [grant.granted, self._limits.min_interval, credit, _TTL_MS]
        try:  # the call was sent: its outcome must not be replaced by a Redis failure
            moved = await self._call("answered", [self._account_key], args)
        except ThrottleUnavailableError as error:
            _log.warning("%s (the next call will not be sent)", error)
            return
        if moved:
            self._kick()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, or less when this process learns the next start moved earlier."""
        loop = self._bind()
        future: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(seconds, _wake, future)
        self._sleepers.add(future)
        try:
            await future
        finally:
            handle.cancel()
            self._sleepers.discard(future)

    def _kick(self) -> None:
        for future in self._sleepers:
            _wake(future)

    # -- feedback from replies -----------------------------------------------------------

    def on_success(self, action: str) -> None:
        """Count a successful call (regrowth after a cut is a function of time, in Redis)."""
        self._local(action).sent += 1
        self._sent += 1

    def on_retry(self, action: str) -> None:
        """Count a resend of ``action``."""
        self._local(action).retried += 1
        self._retried += 1

    def on_throttled(self, action: str, error: ThrottledError) -> float:
        """Report a throttled answer to every worker; returns the pause applied, in s.

        * E106: the shared spacing becomes at least X and every worker waits X.
        * E113/E510: if the call was sent in the current congestion epoch, the shared rate is
          cut and every worker waits ``e113_pause``; a call sent before the last cut known
          here changes nothing (same event) and the return value is what is left of the pause.
        * E120: every worker waits ``quota_cooldown`` if it is set.

        The report reaches Redis from a task; this process's next slot waits for it.
        """
        local = self._local(action)
        local.throttled += 1
        self._throttled += 1
        now = self._now()
        if isinstance(error, QuotaExceededError):
            pause, reason = self._quota(action)
        elif isinstance(error, CallIntervalError):
            pause, reason = self._interval(action, error)
        else:
            pause, reason = self._throughput(action, local, now)
        if pause > 0:
            self._paused_until = max(self._paused_until, now + self._offset + pause)
        _log.debug("throttle: %s on %s: %s", error.code, action, reason)
        self._emit(ThrottleEvent(reason, error.code, pause, action, self.current_rate(action)))
        return pause

    def _quota(self, action: str) -> tuple[float, str]:
        cooldown = self._limits.quota_cooldown
        if cooldown is None:
            return 0.0, "quota exhausted; no cooldown configured"
        self._report("quota", action, cooldown, 0)
        return cooldown, f"quota exhausted; every worker paused {cooldown:.3f} s"

    def _interval(self, action: str, error: CallIntervalError) -> tuple[float, str]:
        parsed = error.interval
        seconds = self._limits.e106_default if parsed is None else parsed
        self._min_interval = max(self._min_interval, seconds)
        self._report("interval", action, seconds, 0)
        source = "from the reply" if parsed is not None else "default"
        return seconds, (
            f"call interval {seconds:.3f} s ({source}); shared spacing now at least "
            f"{self._min_interval:.3f} s, every worker paused {seconds:.3f} s"
        )

    def _throughput(self, action: str, local: _Local, now: float) -> tuple[float, str]:
        epoch = self._answer_epoch
        if epoch < local.epoch:
            left = max(self._paused_until - self._offset - now, 0.0)
            why = "throughput exceeded by a call sent before the last cut (same event)"
            return left, f"{why}; pause left {left:.3f} s"
        local.epoch = epoch + 1  # any later answer to an older call is the same event
        pause = self._limits.e113_pause
        self._report("throughput", action, pause, epoch)
        why = f"throughput exceeded; shared {action} rate cut (unless another worker did)"
        return pause, f"{why}, every worker paused {pause:.3f} s"

    def _report(self, kind: _Kind, action: str, seconds: float, epoch: int) -> None:
        self._reports.append((kind, action, seconds, epoch))
        if self._loop is not None and not self._loop.is_closed():
            self._spawn(self._flush_quietly())

    async def _flush(self) -> None:
        """Send the queued reports to Redis, in order; raise if Redis cannot take them."""
        async with self._flush_lock:
            limits = self._limits
            while self._reports:
                kind, action, seconds, epoch = self._reports[0]
                args = [
                    kind, seconds, epoch, self._ceiling(action), limits.decrease,
                    limits.floor, limits.increase, limits.cubic, _TTL_MS,
                ]  # fmt: skip
                reply = await self._call("throttled", [*self._keys(action)], args)
                self._reports.popleft()
                self._learn(action, reply)

    def _learn(self, action: str, reply: list[Any]) -> None:
        """Take in a THROTTLED reply: the epoch, the pause and (after a cut) the new rate."""
        cut, epoch, paused_until, rate, basis, _server_now = reply
        local = self._local(action)
        local.epoch = max(local.epoch, int(epoch))
        self._paused_until = max(self._paused_until, float(paused_until))
        if int(cut) and int(epoch):
            local.rate, local.known, local.read_at = float(rate), True, -math.inf
            _log.debug(
                "throttle: %s cut to %.1f/s (from %.1f/s) for every worker, epoch %s",
                action, float(rate), float(basis), epoch,
            )  # fmt: skip

    async def _flush_quietly(self) -> None:
        try:
            await self._flush()
        except ThrottleUnavailableError as error:
            _log.warning("%s; the next call will not be sent", error)

    def _emit(self, event: ThrottleEvent) -> None:
        call_hook(self.on_throttle, event)

    # -- observation ---------------------------------------------------------------------

    def current_rate(self, action: str) -> float | None:
        """The action's shared rate limit in calls/s (None = unlimited), cached for 0.5 s."""
        local = self._refresh(action)
        if not local.known:
            return self._ceiling(action) or None
        return local.rate

    def measured_rate(self, action: str) -> float:
        """Calls/s granted to ``action`` by all workers together over the last second of
        sending (paused time left out), cached for 0.5 s."""
        return self._refresh(action).measured

    @property
    def stats(self) -> ThrottleStats:
        """A snapshot: this process's counters, the shared rates (cached) and gates.

        ``paused_until`` is in this loop's time (converted from Redis's clock).
        """
        actions = list(self._actions)
        return ThrottleStats(
            sent=self._sent,
            throttled=self._throttled,
            retried=self._retried,
            rates={name: self.current_rate(name) for name in actions},
            measured={name: self.measured_rate(name) for name in actions},
            paused_until=self._paused_until - self._offset,
            min_interval=self._min_interval,
            in_flight=self._in_flight,
            waiting=self._waiting,
        )

    def _refresh(self, action: str) -> _Local:
        """The cached shared state; start a re-read from Redis when it is stale."""
        local = self._local(action)
        loop = self._loop
        if loop is None or loop.is_closed():
            return local
        if loop.time() - local.read_at > _CACHE:
            local.read_at = loop.time()  # one re-read at a time
            self._spawn(self._read(action))
        return local

    async def _read(self, action: str) -> None:
        limits = self._limits
        args = [self._ceiling(action), limits.increase, limits.cubic]
        try:
            reply = await self._call("read", [*self._keys(action)], args)
        except ThrottleUnavailableError as error:
            _log.debug("%s (rates not refreshed)", error)
            return
        rate, measured, _now, paused_until, min_interval, epoch = reply
        local = self._local(action)
        local.rate, local.measured, local.known = float(rate) or None, float(measured), True
        local.epoch = max(local.epoch, int(epoch))
        self._paused_until = max(self._paused_until, float(paused_until))
        self._min_interval = max(self._min_interval, float(min_interval))

    def _note(
        self, action: str, epoch: Any, rate: Any, measured: Any, server_now: float,
        paused_until: Any, now: float,
    ) -> None:  # fmt: skip
        """Take in an ADMIT reply's epoch, rate, measured rate, Redis time and pause."""
        local = self._local(action)
        local.epoch = max(local.epoch, int(epoch))
        local.rate, local.measured, local.known = float(rate) or None, float(measured), True
        local.read_at = now
        self._offset = server_now - now
        self._paused_until = max(self._paused_until, float(paused_until))

    def __repr__(self) -> str:
        state = f"in_flight={self._in_flight}, waiting={self._waiting}"
        return f"<RedisThrottle {self._where} rate={self._limits.rate} [{state}]>"

    # -- Redis and the loop --------------------------------------------------------------

    async def _call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run one of the scripts; any Redis failure becomes ThrottleUnavailableError."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._script(script)(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as error:
            what = "timed out" if isinstance(error, TimeoutError) else "failed"
            raise ThrottleUnavailableError(
                f"shared throttle unavailable: Redis at {self._where} {what} "
                f"({type(error).__name__}: {error}); not sending"
            ) from error

    def _script(self, name: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            source = {"admit": _ADMIT, "answered": _ANSWERED, "throttled": _THROTTLED}
            script = self._redis().register_script(source.get(name, _READ))
            self._scripts[name] = script
        return script

    def _redis(self) -> Redis:
        if self._client is None:
            assert self._url is not None
            pool = BlockingConnectionPool.from_url(
                self._url,
                max_connections=_CONNECTIONS,
                timeout=self._timeout,
                decode_responses=True,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 2),
            )
            self._client = Redis.from_pool(pool)
        return self._client

    def _bind(self) -> asyncio.AbstractEventLoop:
        """The running loop: bind on first use, start afresh if the bound one was closed."""
        running = asyncio.get_running_loop()
        if running is self._loop:
            return running
        if self._loop is not None:
            if not self._loop.is_closed():
                raise RuntimeError(
                    "this RedisThrottle is in use on another event loop; use one per loop"
                )
            # The old loop's connections, locks and waiters are dead with it.
            if self._url is not None:
                self._client = None
            self._scripts.clear()
            self._sem = asyncio.Semaphore(self._limits.concurrency)
            self._askers.clear()
            self._sleepers.clear()
            self._flush_lock = asyncio.Lock()
            self._tasks.clear()
            self._warm_up = None
            self._in_flight = self._waiting = 0
        self._loop = running
        return running

    def _now(self) -> float:
        loop = self._loop
        return loop.time() if loop is not None and not loop.is_closed() else 0.0

    def _local(self, action: str) -> _Local:
        local = self._actions.get(action)
        if local is None:
            local = self._actions[action] = _Local()
        return local

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _describe(redis: str | Redis) -> str:
    """Where Redis is, for messages: host:port/db, never a password."""
    if isinstance(redis, str):
        from urllib.parse import urlsplit

        parts = urlsplit(redis)
        where = parts.hostname or parts.path or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{where}{port}{parts.path if parts.hostname else ''}"
    kwargs = redis.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
