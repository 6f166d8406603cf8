"""One shared, adaptive throttle per client: concurrency cap, pacing, and a pause gate.

Every call (ad-hoc or from a bulk campaign) goes through the same :class:`Throttle`::

    async with throttle.slot("sendSavedMMS") as permit:   # concurrency, then pause, then rate
        reply = await send(...)
    throttle.on_success("sendSavedMMS")                   # or on_throttled(...) on E106/E113/E120

The gates, in the order a sender meets them:

1. an ``asyncio.Semaphore`` of ``Limits.concurrency``: requests in flight;
2. a pause gate, ``paused_until``: one deadline every sender honours, set by E106/E113/E120
   so all workers stop together instead of each retrying on its own;
3. GCRA pacers (one float each, the "theoretical arrival time"): the account rate with its
   burst, the account-wide ``min_interval`` (raised by E106, strict spacing counted from the
   previous call's answer as well as its start, see :class:`_Spacing`), and one pacer per
   action whose interval changes at run time (E113 cuts it, successes grow it back);
4. an ``aiolimiter.AsyncLimiter`` guard on the static account ceiling.

E113 is handled like a congestion signal in TCP CUBIC (RFC 8312), per action:

* one cut per congestion event: the rate becomes ``decrease`` (beta) x the rate the action
  was actually sending at, measured over the last second of sending time: paused time is
  left out (a window that includes a pause under-measures, and cuts compound: a smoke run
  collapsed to 0.3 L). When less than 0.1 s of sending has been seen the measurement is not
  trusted and the cut is beta x the current limit.
  E113 answers to calls that were sent before the cut are the same event: no second cut, no
  second pause (with 64 senders, one overshoot brings several such answers);
* one pause of ``e113_pause`` for every sender per event;
* regrowth along ``W(t) = C (t - K)^3 + W_max`` with ``K = cbrt((W_max - cut) / C)``, t the
  time since the pause ended and W_max the rate at the cut: steep at first, flat around
  W_max (where the limit probably is), then convex probing above it. It is never slower than
  ``cut + increase * t`` (CUBIC's TCP-friendly region, which matters at low rates), and it is
  capped by the ceiling (the action's own limit, else the account rate) and by twice the
  measured rate (no credit for rate the sender does not use).

Measured against the emulator (limit L = 200/s, client rate 2 L, last 20 s of 30): beta 0.7,
+1 call/s per s and a pause per E113 gave 0.70-0.83 L; beta 0.85, CUBIC and one 0.25 s pause
per event 0.92 L; the same with a 0.1 s pause (the default) 0.95-0.97 L, with E113 on 0.2 %
of calls (one event every ~4 s).

The first call under a rate goes alone: the others wait for its answer (at most
``_WARM_UP``), then pacing resumes from that answer. That call opens the first connection
and is slow (15-35 ms on a busy machine); calls paced behind it would reach the server
bunched with it, a few calls over the rate in the first second.

Why GCRA rather than aiolimiter for pacing: aiolimiter cannot change its rate at run time
(mjpieters/aiolimiter#98), and a burst-free ``AsyncLimiter(1, 1/rate)`` loses each wake-up's
lateness. Measured here on the asyncio loop (3 s, 32 workers) it delivered 96 % of 100/s,
81 % of 1000/s and 17 % of 5000/s; larger capacities deliver 100 % but burst a capacity's
worth at the start. GCRA keeps the schedule in virtual time, so a late wake-up does not lose
throughput (within ``_CATCH_UP``), and one timer serves all waiters. aiolimiter stays as a
belt-and-braces ceiling sized so it never binds while the pacers are right.

Time comes from the running loop's ``time()``, bound lazily on first use (like aiolimiter), so
tests can patch ``loop.time``. With no rate, no pause and no spacing, :meth:`Throttle.slot`
costs one semaphore acquire and a few comparisons and stores: no timer, no task, no
``sleep(0)``, and no clock read on exit.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Final, NamedTuple, Protocol, TypeAlias

import attrs
from aiolimiter import AsyncLimiter

from .config import DEFAULT_LIMITS, Limits
from .errors import CallIntervalError, QuotaExceededError, ThrottledError

__all__ = ["Permit", "Throttle", "ThrottleEvent", "ThrottleLike", "ThrottleStats"]

_log = logging.getLogger("skycore_async")

#: No timer is armed closer than this: uvloop busy-spins on sub-millisecond timers.
_MIN_SLEEP: Final = 0.001
#: Spacing: how much of the lowest round trip is taken off "answer + X" (see _Spacing) ...
_RTT_CREDIT: Final = 0.75
#: ... once this many answers to spaced calls have been seen (before that, none).
_RTT_SAMPLES: Final = 16
#: With strict spacing of at least this (s), the last _MIN_SLEEP of a wait is spun.
_SPIN_SPACING: Final = 0.02
#: A rate pacer released late may reuse up to this much of the lost time (tick-bucket
#: behaviour: at most 0.5 % over in any 1 s window, and no under-delivery from timer lateness
#: up to 5 ms, above the p99 on a busy machine). 10 ms let the emulator see 1.02 L in a
#: steady-state second (2 calls of catch-up plus 1 of arrival jitter at 200/s).
_CATCH_UP: Final = 0.005
#: Measured rate: a sliding window of _WINDOW seconds in _BUCKETS slices.
_WINDOW: Final = 1.0
_BUCKETS: Final = 10
_SLICE: Final = _WINDOW / _BUCKETS
_SLICES_PER_SECOND: Final = _BUCKETS / _WINDOW
#: An E113 cut trusts the measured rate only over at least this much sending time.
_MIN_MEASURE: Final = _SLICE
#: The first call under a rate holds the others back for its answer at most this long: about
#: what the E113 it may avoid would cost (one pause), and enough for a TLS handshake.
_WARM_UP: Final = 0.25


def call_hook(hook: Callable[[ThrottleEvent], None] | None, event: ThrottleEvent) -> None:
    """Call a throttle's ``on_throttle`` hook; a hook that raises is logged, never fatal."""
    if hook is None:
        return
    try:
        hook(event)
    except Exception:
        _log.exception("on_throttle hook raised; ignored")


class Permit(NamedTuple):
    """What :meth:`Throttle.slot` hands the sender (a NamedTuple: cheap on the hot path).

    Attributes:
        action: the action the permit is for.
        granted_at: loop time at which the call may go out.
        waited: seconds spent waiting for the pause gate and the pacers.
    """

    action: str
    granted_at: float
    waited: float


@attrs.frozen
class ThrottleEvent:
    """Snapshot passed to the ``on_throttle`` hook for each throttled answer.

    Attributes:
        reason: what the throttle did, in words.
        code: the E-code ("E106", "E113", "E510", "E120").
        wait: the pause applied to every sender, in s (0 if none).
        action: the action that was throttled.
        rate: the action's rate limit afterwards in calls/s, None when unlimited.
    """

    reason: str
    code: str
    wait: float
    action: str
    rate: float | None


@attrs.frozen
class ThrottleStats:
    """A point-in-time snapshot of a :class:`Throttle`.

    Attributes:
        sent: successful calls (``on_success``).
        throttled: throttled answers (``on_throttled``).
        retried: resends (``on_retry``).
        rates: action -> current rate limit in calls/s (None = no limit of its own).
        measured: action -> calls/s granted over the last second of sending (paused time is
            left out: a window spanning a pause is topped up with the sending before it).
        paused_until: loop time before which nobody sends (``-inf`` if never paused).
        min_interval: account-wide spacing in s.
        in_flight: permits held (calls being sent).
        waiting: senders queued for the pause gate or a pacer.
    """

    sent: int
    throttled: int
    retried: int
    rates: Mapping[str, float | None]
    measured: Mapping[str, float]
    paused_until: float
    min_interval: float
    in_flight: int
    waiting: int


class ThrottleLike(Protocol):
    """What :class:`~skycore_async.SkycoreClient` needs from a throttle.

    :class:`Throttle` (one process) and :class:`~skycore_async.redis_throttle.RedisThrottle`
    (shared through Redis) both provide it. For each attempt the client first tries
    ``enter_now(action)`` (ending the call with ``leave``) and, when that declines, enters
    ``slot(action)``; then it calls ``on_success`` or, for a throttled answer,
    ``on_throttled`` right after ``leave`` or the slot's exit (no ``await`` in between), and
    ``on_retry`` before each resend.
    """

    @property
    def limits(self) -> Limits:
        """The configuration the throttle enforces."""
        ...

    def slot(self, action: str) -> AbstractAsyncContextManager[Permit]:
        """Wait until ``action`` may be sent; the context is the call's time in flight."""
        ...

    def enter_now(self, action: str) -> float | None:
        """The synchronous fast path of :meth:`slot`: enter at once, or ``None``.

        When the call may go now with no waiting, take its slot and return the grant time
        (``loop.time()``); the caller must end the call with :meth:`leave`. When it would have
        to wait (or the throttle has no fast path), return ``None`` and take nothing; the
        caller then uses :meth:`slot`.
        """
        ...

    def leave(self, granted: float) -> None:
        """End a call entered by :meth:`enter_now` (what leaving :meth:`slot` does)."""
        ...

    def on_success(self, action: str) -> None:
        """Record a successful call."""
        ...

    def on_throttled(self, action: str, error: ThrottledError) -> float:
        """Adapt to a throttled answer; return the pause applied to every sender, in s."""
        ...

    def on_retry(self, action: str) -> None:
        """Count a resend of ``action``."""
        ...

    def current_rate(self, action: str) -> float | None:
        """The action's rate limit now in calls/s (None = unlimited)."""
        ...

    def measured_rate(self, action: str) -> float:
        """Calls/s granted to ``action`` recently."""
        ...

    @property
    def stats(self) -> ThrottleStats:
        """A snapshot of counters, rates and gates."""
        ...


@attrs.define
class _Pacer:
    """GCRA in virtual-scheduling form: O(1), one float of state, interval changeable."""

    interval: float
    tolerance: float = 0.0  # (burst - 1) * interval: how far ahead of schedule a call may go
    catch_up: float = 0.0  # how much lateness a release may reclaim (0 = strict spacing)
    tat: float = -math.inf  # theoretical arrival time of the next conforming call

    def consume(self, slot: float, now: float) -> None:
        """Account for a call scheduled at ``slot`` and released at ``now`` (>= slot)."""
        sent = slot if slot > now - self.catch_up else now - self.catch_up
        self.tat = (self.tat if self.tat > sent else sent) + self.interval

    def retune(self, interval: float, tolerance: float, now: float) -> None:
        """Change the interval, rescaling the backlog already booked."""
        if self.tat > now and self.interval > 0:
            self.tat = now + (self.tat - now) * interval / self.interval
        self.interval, self.tolerance = interval, tolerance


@attrs.define
class _Spacing(_Pacer):
    """Account spacing (``min_interval``, E106), kept where the server measures it.

    The server checks X between the *arrivals* of consecutive calls, which land 1-5 ms after
    they start (p99 5-9 ms, up to 25 ms on a busy machine): spacing the starts by X lets a
    late arrival followed by a prompt one come less than X apart, and E106 recurs (6 times in
    20 s on a quiet machine, 92 under load). A call's arrival is bounded by its answer: it
    arrived at ``answer - (its return trip)``, and no return trip is shorter than part of the
    lowest round trip seen. So the next call starts at the latest of

    * ``start + X`` (the previous start), and
    * ``answer + X - 0.75 x lowest round trip``: with the whole lowest round trip taken off,
      the bound is exact only if the fastest call seen had both its outbound and its return
      part at their minimum; under load they are not, and E106 recurred once or twice in
      each 20 s run (none with 0.75, which costs ~0.5 % of the rate). The credit is 0 until
      16 spaced calls have been answered: the first round trips (fresh connections, the E106
      wave) overestimate the lowest one, and a repeat came right after the wave.

    With the last millisecond of each wait spun (see ``_schedule``), the emulator run
    (X = 0.05 s, 20 s) gets 0.97-0.98 / X quietly and 0.9675 / X with a CPU hog beside the
    emulator, with no repeated E106.

    Until the previous call's answer comes the next one waits, but no longer than one more X
    (to ``start + 2 X``): past that, waiting costs more than the E106 it might avoid (a
    rejected call and a pause of X).
    """

    started: float = -math.inf  # when the latest call was granted
    lowest_rtt: float = math.inf
    answers: int = 0  # answers to calls granted under this spacing

    def consume(self, slot: float, now: float) -> None:
        self.started = now
        self.tat = now + 2 * self.interval  # lowered when the answer comes

    def answered(self, granted: float, now: float) -> bool:
        """Account for the answer to a call granted at ``granted``; True if tat moved earlier."""
        rtt = now - granted
        if rtt < self.lowest_rtt:
            self.lowest_rtt = rtt
        latest = granted >= self.started
        if latest and self.started > -math.inf:
            self.answers += 1
        credit = self.lowest_rtt * _RTT_CREDIT if self.answers >= _RTT_SAMPLES else 0.0
        bound = now + self.interval - credit
        if latest:  # the latest call: its answer lifts the hold
            earlier = self.tat
            self.tat = max(self.started + self.interval, bound)
            return self.tat < earlier
        if bound > self.tat:  # an older call that may have arrived late
            self.tat = bound
        return False


@attrs.define
class _Meter:
    """Calls per second over a sliding window, counted in fixed slices (O(1) memory).

    The hot path is one comparison and one increment; slices roll over only when a call (or a
    reading) crosses the current slice's end.
    """

    done: deque[int] = attrs.Factory(lambda: deque(maxlen=_BUCKETS - 1))  # older slices
    current: int = 0  # calls in the current slice
    ends_at: float = -math.inf  # end of the current slice; -inf before the first call
    started: float = math.inf  # first recorded call, or the end of the last pause
    before_calls: float = 0.0  # sending before the last pause: calls ...
    before_span: float = 0.0  # ... over this many seconds (at most a window)
    paused_at: float = -math.inf  # when the last pause began

    def add(self, now: float) -> None:
        if now >= self.ends_at:
            self._roll(now)
        self.current += 1

    def rate(self, now: float) -> float:
        """Calls/s over the window (a short one counted as one slice, to damp the start)."""
        calls, span = self.sample(now)
        return calls / max(span, _SLICE) if calls else 0.0

    def sample(self, now: float) -> tuple[float, float]:
        """(calls, seconds) over the last second of *sending*: paused time left out.

        Since the last :meth:`restart` (a pause's end) for as long as that is, topped up to
        one second with the sending before the pause (pro rata).
        """
        since = now - self.started
        if self.ends_at == -math.inf:
            calls, span = 0.0, max(since, 0.0) if since < math.inf else 0.0
        else:
            if now >= self.ends_at:
                self._roll(now)
            calls, span = float(sum(self.done) + self.current), now - (self.ends_at - _WINDOW)
            if since >= span:
                return calls, span  # a whole window of sending since the last pause
            span = max(since, 0.0)
        if self.before_calls and span < _WINDOW:
            extra = min(self.before_span, _WINDOW - span)
            calls += self.before_calls * (extra / self.before_span if self.before_span else 1.0)
            span += extra
        return calls, span

    def restart(self, at: float, now: float) -> None:
        """A pause from ``now`` to ``at``: keep what was sent before it, count anew from ``at``."""
        self.before_calls, self.before_span = self.sample(now)
        self.paused_at = now
        self.done.clear()
        self.current = 0
        self.ends_at = -math.inf
        self.started = at

    def _roll(self, now: float) -> None:
        end = (int(now * _SLICES_PER_SECOND) + 1) * _SLICE
        if self.ends_at == -math.inf:
            self.started = min(self.started, now)
        else:
            passed = round((end - self.ends_at) * _SLICES_PER_SECOND)  # slices, >= 1
            self.done.append(self.current)
            self.done.extend([0] * min(passed - 1, _BUCKETS))
        self.current = 0
        self.ends_at = end


#: A waiter: (future resolved with its slot time when released, arrival time, ticket).
#: The ticket orders waiters that arrive at the same loop time.
_Entry: TypeAlias = tuple[asyncio.Future[float], float, int]


@attrs.define
class _Action:
    """Per-action state: its own pacer (if any), its FIFO of waiters, its counters."""

    name: str
    ceiling: float | None  # the most it may regain: its own limit, else the account rate
    own: bool  # has a configured per_action limit, so its pacer never goes away
    rate: float | None = None  # current limit; None = none of its own
    pacer: _Pacer | None = None
    queue: deque[_Entry] = attrs.Factory(deque)
    meter: _Meter = attrs.Factory(_Meter)
    recovering: bool = False  # cut by E113 and not yet back at the ceiling
    cut_at: float | None = None  # when the last E113 cut happened
    cut_rate: float = 0.0  # the rate it was cut to
    w_max: float = 0.0  # the rate it was sending at when cut (CUBIC's W_max)
    k: float = 0.0  # CUBIC's K: seconds after regrowth_at at which the curve is back at W_max
    regrowth_at: float = 0.0  # when regrowth starts (the end of the pause)
    sent: int = 0
    throttled: int = 0
    retried: int = 0


class _Gate:
    """The concurrency cap: a FIFO semaphore whose uncontended acquire is a plain decrement.

    ``asyncio.Semaphore.acquire`` is a coroutine call even when a slot is free, once per send
    on the bulk hot path. Here a free slot is taken inline (``free -= 1``); only a full gate
    parks the caller. ``give`` hands a slot straight to the longest-parked caller, so
    ``free > 0`` implies nobody is parked and the inline path cannot jump the queue.
    """

    __slots__ = ("_parked", "free")

    def __init__(self, size: int) -> None:
        self.free = size
        self._parked: deque[asyncio.Future[None]] = deque()

    async def take(self) -> None:
        """Park until ``give`` hands this caller a slot."""
        parked = asyncio.get_running_loop().create_future()
        self._parked.append(parked)
        try:
            await parked
        except BaseException:
            if parked.done() and not parked.cancelled():
                self.give()  # handed a slot while being cancelled: pass it on
            elif parked in self._parked:
                self._parked.remove(parked)
            raise

    def give(self) -> None:
        """Release a slot: to the longest-parked caller, else back to the pool."""
        while self._parked:
            parked = self._parked.popleft()
            if not parked.done():
                parked.set_result(None)
                return
        self.free += 1


# Permits are built with tuple.__new__: the NamedTuple constructor is a Python-level call,
# and one permit is made per send.
_permit = tuple.__new__


class _Slot:
    """The async context manager returned by :meth:`Throttle.slot`."""

    __slots__ = ("_action", "_granted", "_throttle")

    def __init__(self, throttle: Throttle, action: str) -> None:
        self._throttle = throttle
        self._action = action
        self._granted = -math.inf

    async def __aenter__(self) -> Permit:
        throttle = self._throttle
        gate = throttle._gate
        if gate.free > 0:
            gate.free -= 1
        else:
            await gate.take()
        try:
            now = throttle._admit_now(self._action)
            if now is not None:
                permit = _permit(Permit, (self._action, now, 0.0))
            else:
                permit = await throttle._admit_later(self._action)
            if throttle._ceiling is not None:
                await throttle._ceiling.acquire()
        except BaseException:
            gate.give()
            raise
        throttle._in_flight += 1
        self._granted = permit.granted_at
        return permit

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._throttle.leave(self._granted)


@attrs.define(eq=False, repr=False)
class Throttle:
    """The shared throttle: one per client, used by every call and every bulk worker.

    It binds to the event loop that first uses it; use one throttle per loop.

    Args:
        limits: rates, burst, concurrency and the adaptive parameters.
        on_throttle: called with a :class:`ThrottleEvent` from :meth:`on_throttled`.

    Example::

        throttle = Throttle(Limits(rate=20, per_action={"getSendingStatistics": 0.2}))
        async with throttle.slot("sendSavedMMS") as permit:
            ...
    """

    _limits: Limits = attrs.field(default=DEFAULT_LIMITS, alias="limits")
    on_throttle: Callable[[ThrottleEvent], None] | None = attrs.field(default=None, kw_only=True)
    _gate: _Gate = attrs.field(init=False)
    _ceiling: AsyncLimiter | None = attrs.field(init=False, default=None)
    _account: _Pacer | None = attrs.field(init=False, default=None)
    _actions: dict[str, _Action] = attrs.field(init=False, factory=dict)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(init=False, default=None)
    _timer: asyncio.Handle | None = attrs.field(init=False, default=None)
    _timer_at: float = attrs.field(init=False, default=math.inf)
    _paused_until: float = attrs.field(init=False, default=-math.inf)
    _hold_until: float = attrs.field(init=False, default=-math.inf)  # warm-up hold
    _hold_for: float = attrs.field(init=False, default=math.inf)  # the warm-up call's grant
    _warm_up: bool = attrs.field(init=False, default=False)  # the next paced grant warms up
    _watch: bool = attrs.field(init=False, default=False)  # slot exits report answer times
    _answer_sent: float = attrs.field(init=False, default=-math.inf)  # grant of last exit
    _spacing: _Spacing | None = attrs.field(init=False, default=None)
    _min_interval: float = attrs.field(init=False, default=0.0)
    _waits: bool = attrs.field(init=False, default=True)
    _paced: bool = attrs.field(init=False, default=False)  # an account pacer exists
    _waiting: int = attrs.field(init=False, default=0)
    _in_flight: int = attrs.field(init=False, default=0)
    _sent: int = attrs.field(init=False, default=0)
    _throttled: int = attrs.field(init=False, default=0)
    _retried: int = attrs.field(init=False, default=0)
    _tickets: Callable[[], int] = attrs.field(
        init=False, factory=lambda: itertools.count().__next__
    )

    def __attrs_post_init__(self) -> None:
        limits = self._limits
        self._gate = _Gate(limits.concurrency)
        if limits.rate is not None:
            interval = 1.0 / limits.rate
            self._account = _Pacer(interval, (limits.burst - 1) * interval, _CATCH_UP)
            # Never binds while the pacer is right: the pacer lets through at most
            # burst + _CATCH_UP * rate calls above the rate line in any window.
            capacity = limits.burst + math.ceil(limits.rate * _CATCH_UP) + 2
            self._ceiling = AsyncLimiter(capacity, capacity / limits.rate)
            self._paced = True
        self._set_min_interval(limits.min_interval)
        for action in limits.per_action:
            self._action(action)
        self._warm_up = self._rated()

    @classmethod
    def testing(
        cls,
        limits: Limits = DEFAULT_LIMITS,
        *,
        on_throttle: Callable[[ThrottleEvent], None] | None = None,
    ) -> Throttle:
        """A throttle that never waits (no rates, no pauses), for tests.

        It still caps concurrency, counts, and calls ``on_throttle`` (with ``wait=0``).
        """
        unpaced = attrs.evolve(limits, rate=None, per_action={}, min_interval=0.0)
        throttle = cls(unpaced, on_throttle=on_throttle)
        throttle._waits = False
        return throttle

    @property
    def limits(self) -> Limits:
        """The configuration this throttle was built with."""
        return self._limits

    # -- the sender's side ---------------------------------------------------------------

    def slot(self, action: str) -> _Slot:
        """Wait for a concurrency slot, the pause gate, then the pacers; yields a Permit.

        Use as ``async with throttle.slot(action) as permit:``; the slot is released on exit.
        Waiters of one action are served in arrival order; across actions, the one that
        became ready first (then the one that arrived first) goes first.
        """
        return _Slot(self, action)

    def enter_now(self, action: str) -> float | None:
        """:meth:`slot` without a coroutine, when nothing has to wait; see :class:`ThrottleLike`.

        Used by the client once per call. Not taken when a rate is set: the aiolimiter
        ceiling is entered by awaiting it, so paced calls use :meth:`slot`.
        """
        gate = self._gate
        if gate.free <= 0 or self._ceiling is not None:
            return None
        granted = self._admit_now(action)
        if granted is None:
            return None
        gate.free -= 1
        self._in_flight += 1
        return granted

    def leave(self, granted: float) -> None:
        """End a call entered by :meth:`enter_now` or :meth:`slot`; frees its slot."""
        self._in_flight -= 1
        # The client calls on_throttled right after this, with no await in between, so
        # on_throttled knows when the throttled call was sent (see _on_throughput).
        self._answer_sent = granted
        if self._watch:  # spacing, or the warm-up hold: they need the answer time
            self._answered(granted)
        self._gate.give()

    def _admit_now(self, action: str) -> float | None:
        """The hot path: the grant time if nobody of this action waits and all gates are open.

        None when the call has to wait (:meth:`_admit_later`).
        """
        loop = self._loop  # not get_running_loop(): that costs a getpid() system call
        if loop is None or loop.is_closed():
            loop = self._check_loop()
        state = self._actions.get(action) or self._action(action)
        now = loop.time()
        if state.queue or now < self._paused_until:
            return None
        if self._paced or state.pacer is not None:
            if self._earliest(state) > now:
                return None
            self._consume(state, now, now)
        else:
            state.meter.add(now)
        return now

    async def _admit_later(self, action: str) -> Permit:
        """Queue behind the gates; the timer callback releases waiters in order."""
        loop = self._check_loop()
        state = self._actions[action]
        arrival, ticket = loop.time(), self._tickets()
        front = False
        while True:
            entry: _Entry = (loop.create_future(), arrival, ticket)
            if front:
                state.queue.appendleft(entry)
            else:
                state.queue.append(entry)
            self._waiting += 1
            self._schedule(loop.time())
            try:
                await entry[0]
            except BaseException:
                self._forget(state, entry)
                raise
            now = loop.time()
            if self._paused_until <= now:
                return Permit(action, now, now - arrival)
            # A pause began between our release and our resumption: go back to the front.
            front = True

    def _forget(self, state: _Action, entry: _Entry) -> None:
        if entry in state.queue:
            state.queue.remove(entry)
            self._waiting -= 1

    # -- gates and scheduling ----------------------------------------------------------

    def _earliest(self, state: _Action) -> float:
        """The earliest time a call of this action conforms to every gate."""
        earliest = self._paused_until
        if self._hold_until > earliest:
            earliest = self._hold_until
        for pacer in (self._account, self._spacing, state.pacer):
            if pacer is not None and pacer.tat - pacer.tolerance > earliest:
                earliest = pacer.tat - pacer.tolerance
        return earliest

    def _consume(self, state: _Action, slot: float, now: float) -> None:
        for pacer in (self._account, self._spacing, state.pacer):
            if pacer is not None:
                pacer.consume(slot, now)
        state.meter.add(now)
        if self._warm_up:  # the first paced call: the others wait for its answer
            self._warm_up = False
            self._hold_until, self._hold_for = now + _WARM_UP, now
            self._watch = True

    def _answered(self, granted: float) -> None:
        """A slot was released (its answer came): lift the warm-up hold, update spacing."""
        now = self._now()
        moved = False
        if self._spacing is not None:
            moved = self._spacing.answered(granted, now)
        if granted >= self._hold_for:  # the warm-up call: pace the others from its answer
            self._hold_until, self._hold_for = -math.inf, math.inf
            for pacer in self._pacers():
                pacer.tat = max(pacer.tat, now)  # no catch-up credit for the warm-up wait
            moved = True
        self._watch = self._spacing is not None
        if moved and self._waiting:
            self._schedule(now)

    def _pacers(self) -> list[_Pacer]:
        pacers = [p for p in (self._account, self._spacing) if p is not None]
        return pacers + [s.pacer for s in self._actions.values() if s.pacer is not None]

    def _schedule(self, now: float) -> None:
        """Arm the single timer for the next waiter that can go (never closer than 1 ms)."""
        wake = min((ready for _state, ready, _ticket in self._heads()), default=math.inf)
        if wake == math.inf:
            return
        # Under strict spacing the timer wakes 1 ms early and the last millisecond is spun
        # through the loop (call_soon; other tasks still run): epoll rounds every timeout up
        # to the next ms, which made spaced calls 1.1 ms late (median) and cost ~2 % of the
        # E106 rate; spun, 0.04 ms. At most 1 ms per call at <= 50 calls/s: <= 5 % of a core.
        spin = self._spacing is not None and self._spacing.interval >= _SPIN_SPACING
        if spin:
            when = now if wake - now <= _MIN_SLEEP else wake - _MIN_SLEEP
        else:
            when = max(wake, now + _MIN_SLEEP)
        if self._timer is not None:
            if self._timer_at <= when:
                return  # the armed timer fires early enough; it re-arms itself
            self._timer.cancel()
        assert self._loop is not None
        if when <= now:
            self._timer = self._loop.call_soon(self._release)
        else:
            self._timer = self._loop.call_at(when, self._release)
        self._timer_at = when

    def _heads(self) -> list[tuple[_Action, float, int]]:
        """(state, ready time, ticket) for the live head of every non-empty queue."""
        heads: list[tuple[_Action, float, int]] = []
        for state in self._actions.values():
            queue = state.queue
            while queue and queue[0][0].done():  # cancelled before it was released
                queue.popleft()
                self._waiting -= 1
            if queue:
                _future, arrival, ticket = queue[0]
                heads.append((state, max(self._earliest(state), arrival), ticket))
        return heads

    def _release(self) -> None:
        """Timer callback: release every waiter whose slot has come, earliest slot first."""
        self._timer, self._timer_at = None, math.inf
        assert self._loop is not None
        now = self._loop.time()
        while True:
            ready = [(slot, ticket, state) for state, slot, ticket in self._heads()]
            ready = [item for item in ready if item[0] <= now]
            if not ready:
                break
            slot, _ticket, state = min(ready, key=lambda item: item[:2])
            future = state.queue.popleft()[0]
            self._waiting -= 1
            self._consume(state, slot, now)
            future.set_result(slot)  # the waiter runs on the next loop iteration, in order
        self._schedule(now)

    def _check_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop: bind on first use, rebind if the bound one was closed."""
        running = asyncio.get_running_loop()
        if running is self._loop:
            return running
        if self._loop is not None:
            if not self._loop.is_closed():
                raise RuntimeError(
                    "this Throttle is in use on another event loop; use one per loop"
                )
            self._forget_loop()
        self._loop = running
        return running

    def _forget_loop(self) -> None:
        """Drop what belonged to a closed loop: its timer, its waiters, the guard's state."""
        self._timer, self._timer_at = None, math.inf
        for state in self._actions.values():  # waiters of a closed loop can never resume
            state.queue.clear()
        self._waiting = 0
        self._hold_until, self._hold_for = -math.inf, math.inf
        self._warm_up = self._rated()  # a new loop: new connections
        self._watch = self._spacing is not None
        if self._ceiling is not None:
            self._ceiling = AsyncLimiter(self._ceiling.max_rate, self._ceiling.time_period)

    def _rated(self) -> bool:
        """A rate is configured (spacing alone has its own wait for answers)."""
        return self._limits.rate is not None or bool(self._limits.per_action)

    def _now(self) -> float:
        return (self._loop or self._check_loop()).time()

    def _action(self, action: str) -> _Action:
        limits = self._limits
        own = action in limits.per_action
        ceiling = limits.per_action[action] if own else limits.rate
        state = _Action(action, ceiling, own)
        self._actions[action] = state
        if own:
            self._set_rate(state, limits.per_action[action], 0.0)
        return state

    def _set_rate(self, state: _Action, rate: float, now: float) -> None:
        interval = 1.0 / rate
        tolerance = (self._limits.burst - 1) * interval
        state.rate = rate
        if state.pacer is None:
            state.pacer = _Pacer(interval, tolerance, _CATCH_UP)
        else:
            state.pacer.retune(interval, tolerance, now)

    def _set_min_interval(self, seconds: float) -> None:
        self._min_interval = max(self._min_interval, seconds)
        if self._min_interval <= 0:
            return
        if self._spacing is None:
            self._spacing = _Spacing(self._min_interval)
            self._paced = self._watch = True
        else:
            self._spacing.interval = self._min_interval

    def _pause(self, seconds: float, now: float) -> None:
        # Waiters need no nudge: the armed timer fires no later than before and re-arms.
        if now + seconds <= self._paused_until:
            return
        self._paused_until = now + seconds
        for state in self._actions.values():  # paused time is not sending time
            state.meter.restart(self._paused_until, now)

    # -- feedback from replies -----------------------------------------------------------

    def on_success(self, action: str) -> None:
        """Record a successful call; after an E113 cut, grow the action's rate back (CUBIC)."""
        state = self._actions.get(action) or self._action(action)
        state.sent += 1
        self._sent += 1
        if state.recovering:
            self._grow(state, self._now())

    def _grow(self, state: _Action, now: float) -> None:
        """Set the rate to the regrowth curve at ``now``, capped by the ceiling and demand.

        ``W(t) = max(cubic * (t - K)**3 + W_max, cut + increase * t)``, t = now - end of the
        pause; capped by the ceiling and by 2x the measured rate (botocore's rule: no credit
        for rate the sender does not use). The curve is a function of time, so a capped or
        missed step is made up at the next success.
        """
        t = now - state.regrowth_at
        if t <= 0 or state.rate is None:
            return
        limits = self._limits
        target = state.cut_rate + limits.increase * t
        if limits.cubic > 0:
            target = max(target, limits.cubic * (t - state.k) ** 3 + state.w_max)
        ceiling = math.inf if state.ceiling is None else state.ceiling
        target = min(target, max(state.rate, 2.0 * state.meter.rate(now)))
        if target >= ceiling:
            self._recovered(state, ceiling, now)
        elif target > state.rate:
            self._set_rate(state, target, now)
        else:
            return
        if self._waiting:
            self._schedule(now)

    def _recovered(self, state: _Action, ceiling: float, now: float) -> None:
        state.recovering = False
        if state.own:
            self._set_rate(state, ceiling, now)
        else:  # back under the account pacer alone
            state.rate, state.pacer = None, None
        _log.debug("throttle: %s back at its ceiling %s/s", state.name, ceiling)

    def on_throttled(self, action: str, error: ThrottledError) -> float:
        """Adapt to a throttled answer; returns the pause applied to every sender, in s.

        * E106 (``CallIntervalError``): account spacing becomes at least X (``e106_default``
          when the text has no number) and everybody waits X.
        * E113/E510 (other ``ThrottledError``): the action's rate becomes
          ``max(floor, decrease * the rate it was sending at)`` (never higher than before),
          everybody waits ``e113_pause``, and the rate then grows back along a CUBIC curve.
          An answer to a call sent before the last cut changes nothing (same event); the
          return value is then what is left of that cut's pause.
        * E120 (``QuotaExceededError``): everybody waits ``quota_cooldown`` if it is set.
        """
        state = self._actions.get(action) or self._action(action)
        state.throttled += 1
        self._throttled += 1
        now = self._now()
        if isinstance(error, QuotaExceededError):
            pause, reason = self._on_quota(now)
        elif isinstance(error, CallIntervalError):
            pause, reason = self._on_interval(error, now)
        else:
            pause, reason = self._on_throughput(state, now)
        _log.debug("throttle: %s on %s: %s", error.code, action, reason)
        self._emit(ThrottleEvent(reason, error.code, pause, action, self.current_rate(action)))
        return pause

    def _on_quota(self, now: float) -> tuple[float, str]:
        cooldown = self._limits.quota_cooldown
        if cooldown is None or not self._waits:
            return 0.0, "quota exhausted; no cooldown configured"
        self._pause(cooldown, now)
        return cooldown, f"quota exhausted; everyone paused {cooldown:.3f} s"

    def _on_interval(self, error: CallIntervalError, now: float) -> tuple[float, str]:
        parsed = error.interval
        seconds = self._limits.e106_default if parsed is None else parsed
        if not self._waits:
            return 0.0, "call interval (testing: not applied)"
        self._set_min_interval(seconds)
        self._pause(seconds, now)
        source = "from the reply" if parsed is not None else "default"
        return seconds, (
            f"call interval {seconds:.3f} s ({source}); spacing now "
            f"{self._min_interval:.3f} s, everyone paused {seconds:.3f} s"
        )

    def _on_throughput(self, state: _Action, now: float) -> tuple[float, str]:
        if not self._waits:
            return 0.0, "throughput exceeded (testing: not applied)"
        if state.cut_at is not None and self._answer_sent <= state.cut_at:
            # Sent before the last cut (the client calls this right after the slot's exit):
            # the same congestion event, already answered by that cut and its pause.
            left = max(self._paused_until - now, 0.0)
            return left, (
                f"throughput exceeded by a call sent before the last cut; {state.name} stays "
                f"at {self.current_rate(state.name)} calls/s, pause left {left:.3f} s"
            )
        limits = self._limits
        current = state.rate if state.rate is not None else state.ceiling
        limit = math.inf if current is None else current
        meter = state.meter
        if self._answer_sent < meter.paused_at:  # sent before a pause (E106, E120, another
            calls, span = meter.before_calls, meter.before_span  # action's E113): what then
        else:
            calls, span = meter.sample(now)
        if span >= _MIN_MEASURE or limit == math.inf:
            measured = calls / max(span, _SLICE)
            sending, basis = min(limit, measured), f"{measured:.1f}/s measured over {span:.2f} s"
        else:  # too short a window to trust: cut relative to the limit itself
            sending, basis = limit, f"{limit:.1f}/s limit ({span:.3f} s too short to measure)"
        rate = min(max(limits.floor, limits.decrease * sending), limit)
        self._set_rate(state, rate, now)
        state.recovering = True
        state.cut_at, state.cut_rate, state.w_max = now, rate, max(sending, rate)
        state.k = ((state.w_max - rate) / limits.cubic) ** (1 / 3) if limits.cubic > 0 else 0.0
        state.regrowth_at = now + limits.e113_pause
        self._pause(limits.e113_pause, now)
        return limits.e113_pause, (
            f"throughput exceeded at {basis}; {state.name} now {rate:.1f}/s, "
            f"everyone paused {limits.e113_pause:.3f} s"
        )

    def _emit(self, event: ThrottleEvent) -> None:
        call_hook(self.on_throttle, event)

    def on_retry(self, action: str) -> None:
        """Count a resend of ``action`` (after a throttled answer or a transient error)."""
        state = self._actions.get(action) or self._action(action)
        state.retried += 1
        self._retried += 1

    # -- observation ---------------------------------------------------------------------

    def current_rate(self, action: str) -> float | None:
        """The action's rate limit now, in calls/s: its own, else the account's (None = none)."""
        state = self._actions.get(action)
        if state is not None and state.rate is not None:
            return state.rate
        return self._limits.per_action.get(action, self._limits.rate)

    def measured_rate(self, action: str) -> float:
        """Calls/s granted to ``action`` over the last second of sending (pauses left out)."""
        state = self._actions.get(action)
        return 0.0 if state is None or self._loop is None else state.meter.rate(self._now())

    @property
    def stats(self) -> ThrottleStats:
        """A frozen snapshot of the counters, rates and gates."""
        actions = list(self._actions)
        return ThrottleStats(
            sent=self._sent,
            throttled=self._throttled,
            retried=self._retried,
            rates={name: self.current_rate(name) for name in actions},
            measured={name: self.measured_rate(name) for name in actions},
            paused_until=self._paused_until,
            min_interval=self._min_interval,
            in_flight=self._in_flight,
            waiting=self._waiting,
        )

    def __repr__(self) -> str:
        rates = ", ".join(f"{name}: {self.current_rate(name)}" for name in self._actions)
        state = f"in_flight={self._in_flight}, waiting={self._waiting}"
        if self._loop is not None and self._paused_until > self._loop.time():
            state += f", paused for {self._paused_until - self._loop.time():.3f} s"
        if self._min_interval:
            state += f", min_interval={self._min_interval:.3f} s"
        return f"<Throttle rate={self._limits.rate} {{{rates}}} [{state}]>"
