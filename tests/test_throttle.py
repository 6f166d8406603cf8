"""Tests for skycore_async.throttle, on virtual time (the running loop's time() is patched)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math

import pytest

from skycore_async.config import DECREASE, E113_PAUSE, Limits
from skycore_async.errors import (
    CallIntervalError,
    QuotaExceededError,
    ThrottledError,
    ThroughputExceededError,
    error_for_code,
)
from skycore_async.throttle import _RTT_CREDIT, _RTT_SAMPLES, Permit, Throttle, ThrottleEvent

START = 1000.0
E106_2S = CallIntervalError("E106", "You can call API every 2 seconds")
E113 = ThroughputExceededError("E113")
E120 = QuotaExceededError("E120")


class FakeClock:
    """Virtual time for the running loop: patches ``loop.time``; ``advance`` steps it."""

    def __init__(self) -> None:
        self.now = START

    def time(self) -> float:
        return self.now

    async def advance(self, seconds: float, step: float = 0.001) -> None:
        """Move time forward in small steps, letting due timers and woken tasks run."""
        base, steps = self.now, max(1, round(seconds / step))
        for index in range(1, steps + 1):
            self.now = base + seconds * index / steps
            await settle()


async def settle() -> None:
    """Let ready callbacks and woken tasks run (no time passes)."""
    for _ in range(6):
        await asyncio.sleep(0)


@pytest.fixture
async def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(asyncio.get_running_loop(), "time", fake.time)
    return fake


async def start_senders(
    throttle: Throttle, actions: list[str], grants: list[Permit]
) -> list[asyncio.Task[None]]:
    """One task per action, started in order; each takes a slot and records its permit."""

    async def send(action: str) -> None:
        async with throttle.slot(action) as permit:
            grants.append(permit)
        throttle.on_success(action)

    tasks = [asyncio.create_task(send(action)) for action in actions]
    await settle()
    return tasks


async def finish(clock: FakeClock, tasks: list[asyncio.Task[None]]) -> None:
    """Advance time until every task is done (bounded, so a bug fails instead of hanging)."""
    for _ in range(10_000):
        if all(task.done() for task in tasks):
            await asyncio.gather(*tasks)
            return
        await clock.advance(0.001)
    raise AssertionError("senders still waiting after 10 s of virtual time")


def times(grants: list[Permit], action: str | None = None) -> list[float]:
    """Grant times relative to START."""
    return [p.granted_at - START for p in grants if action is None or p.action == action]


def gaps(values: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(values)]


async def send_steadily(clock: FakeClock, throttle: Throttle, action: str, seconds: float) -> int:
    """A few workers sending back to back for ``seconds`` of virtual time; returns sends."""
    stop, count = clock.now + seconds, 0

    async def worker() -> None:
        nonlocal count
        while clock.now < stop:
            async with throttle.slot(action):
                count += 1
            throttle.on_success(action)

    tasks = [asyncio.create_task(worker()) for _ in range(4)]
    await clock.advance(seconds)
    await finish(clock, tasks)
    return count


async def test_unlimited_path_never_waits(clock: FakeClock) -> None:
    """With no rate, no spacing and no pause, slots are granted at once without a timer."""
    throttle = Throttle(Limits())
    for _ in range(100):
        async with throttle.slot("sendSavedMMS") as permit:
            assert permit == Permit("sendSavedMMS", START, 0.0)
        throttle.on_success("sendSavedMMS")
    assert throttle._timer is None
    assert throttle.stats.sent == 100


async def test_enter_now_is_the_slot_without_a_coroutine(clock: FakeClock) -> None:
    """enter_now takes a slot only when nothing would wait; leave hands it to a parked waiter."""
    throttle = Throttle(Limits(concurrency=2))
    first, second = throttle.enter_now("a"), throttle.enter_now("a")
    assert (first, second, throttle.stats.in_flight) == (START, START, 2)
    assert throttle.enter_now("a") is None  # the gate is full: take nothing
    assert throttle.stats.in_flight == 2
    waiter = asyncio.create_task(throttle.slot("a").__aenter__())
    await settle()
    assert not waiter.done()
    assert throttle.enter_now("a") is None  # somebody is parked: no queue jumping
    throttle.leave(START)
    assert await waiter == Permit("a", START, 0.0)
    assert throttle.stats.in_flight == 2
    throttle.on_throttled("a", E106_2S)  # a pause: nothing enters at once
    throttle.leave(START)
    assert throttle.enter_now("a") is None
    assert throttle.stats.in_flight == 1


async def test_enter_now_leaves_rated_calls_to_the_slot(clock: FakeClock) -> None:
    """With a rate (the aiolimiter ceiling is awaited), enter_now always declines."""
    throttle = Throttle(Limits(rate=1000, burst=10))
    assert throttle.enter_now("a") is None
    assert throttle.stats.in_flight == 0


async def test_spacing_is_one_over_rate_with_no_start_burst(clock: FakeClock) -> None:
    """rate=10: the first call goes at once, each next one 0.1 s later, never sooner."""
    grants: list[Permit] = []
    tasks = await start_senders(Throttle(Limits(rate=10)), ["a"] * 5, grants)
    await clock.advance(0.5)
    await finish(clock, tasks)
    assert times(grants)[0] == 0.0
    assert all(0.1 - 1e-9 <= gap <= 0.1 + 0.002 for gap in gaps(times(grants)))
    assert times(grants)[-1] == pytest.approx(0.4, abs=0.002)


async def test_explicit_burst_is_allowed(clock: FakeClock) -> None:
    """burst=3: three calls at once after idling, then one per 1/rate."""
    grants: list[Permit] = []
    tasks = await start_senders(Throttle(Limits(rate=10, burst=3)), ["a"] * 6, grants)
    await clock.advance(0.4)
    await finish(clock, tasks)
    assert times(grants) == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2, 0.3], abs=0.002)


async def test_concurrency_cap_is_separate_from_rate(clock: FakeClock) -> None:
    """concurrency=3 with no rate: at most 3 senders inside the block, all eventually run."""
    throttle = Throttle(Limits(concurrency=3))
    inside, peak, done = 0, 0, 0
    gate = asyncio.Event()

    async def send() -> None:
        nonlocal inside, peak, done
        async with throttle.slot("a"):
            inside += 1
            peak = max(peak, inside)
            await gate.wait()
            inside -= 1
        done += 1

    tasks = [asyncio.create_task(send()) for _ in range(10)]
    await settle()
    assert (inside, throttle.stats.in_flight) == (3, 3)
    gate.set()
    await finish(clock, tasks)
    assert (peak, done, throttle.stats.in_flight) == (3, 10, 0)


async def test_e106_pauses_every_sender_and_raises_min_interval(clock: FakeClock) -> None:
    """E106 'every 2 seconds': nobody waiting proceeds before now+2, then 2 s apart."""
    throttle = Throttle(Limits(rate=10))
    grants: list[Permit] = []
    tasks = await start_senders(throttle, ["a", "a", "b", "a"], grants)
    await clock.advance(0.05)
    assert len(grants) == 1
    assert throttle.on_throttled("a", E106_2S) == 2.0
    assert throttle.stats.paused_until == START + 2.05
    await clock.advance(1.999)
    assert len(grants) == 1  # three tasks waited through the whole pause
    await clock.advance(4.1)
    await finish(clock, tasks)
    later = times(grants)[1:]
    assert later[0] == pytest.approx(2.05, abs=0.002)
    assert all(gap >= 2.0 - 1e-9 for gap in gaps(later))
    assert throttle.stats.min_interval == 2.0


async def test_e106_without_a_number_uses_the_default(clock: FakeClock) -> None:
    """E106 whose text has no number pauses and spaces by e106_default."""
    throttle = Throttle(Limits(e106_default=0.5))
    pause = throttle.on_throttled("a", CallIntervalError("E106", "slow down"))
    assert pause == 0.5
    assert throttle.stats.min_interval == 0.5
    grants: list[Permit] = []
    tasks = await start_senders(throttle, ["a", "b"], grants)
    await clock.advance(1.1)
    await finish(clock, tasks)
    assert times(grants) == pytest.approx([0.5, 1.0], abs=0.002)


async def test_e113_cuts_the_rate_relative_to_the_measured_rate(clock: FakeClock) -> None:
    """E113 sets the action's rate to decrease x measured and pauses everyone e113_pause."""
    throttle = Throttle(Limits(rate=100, increase=0.0, cubic=0.0))
    sent = await send_steadily(clock, throttle, "a", 2.0)
    assert sent == pytest.approx(200, abs=4)  # + the workers queued when time ran out
    assert throttle.measured_rate("a") == pytest.approx(100, rel=0.05)
    assert throttle.on_throttled("a", E113) == E113_PAUSE
    assert throttle.current_rate("a") == pytest.approx(DECREASE * 100, rel=0.05)
    assert throttle.stats.paused_until == pytest.approx(clock.now + E113_PAUSE)
    grants: list[Permit] = []
    tasks = await start_senders(throttle, ["a"] * 4, grants)
    await clock.advance(E113_PAUSE + 0.1)
    await finish(clock, tasks)
    assert times(grants)[0] == pytest.approx(clock.now - START - 0.1, abs=0.002)
    rate = DECREASE * 100
    assert all(gap == pytest.approx(1 / rate, rel=0.1) for gap in gaps(times(grants)))


async def test_repeated_e113_from_one_burst_does_not_compound(clock: FakeClock) -> None:
    """Several E113 answers for calls sent at the same rate cut once, not once each."""
    throttle = Throttle(Limits(rate=100, increase=0.0))
    await send_steadily(clock, throttle, "a", 2.0)
    for _ in range(5):
        throttle.on_throttled("a", E113)
    assert throttle.current_rate("a") == pytest.approx(DECREASE * 100, rel=0.05)


async def test_e113_respects_the_floor(clock: FakeClock) -> None:
    """The cut never goes below Limits.floor, even with almost nothing measured."""
    throttle = Throttle(Limits(floor=5.0))
    async with throttle.slot("a"):
        pass
    await clock.advance(1.5, step=0.01)
    throttle.on_throttled("a", E113)
    assert throttle.current_rate("a") == 5.0


async def test_rate_regrows_to_the_ceiling_but_not_above(clock: FakeClock) -> None:
    """cubic=0: successes grow the rate linearly (increase) back to the ceiling, then stop."""
    throttle = Throttle(Limits(per_action={"a": 50}, increase=20.0, cubic=0.0))
    await send_steadily(clock, throttle, "a", 1.5)
    throttle.on_throttled("a", E113)
    cut = DECREASE * 50
    assert throttle.current_rate("a") == pytest.approx(cut, rel=0.05)
    await send_steadily(clock, throttle, "a", 0.5)
    regrown = cut + 20.0 * (0.5 - E113_PAUSE)
    assert throttle.current_rate("a") == pytest.approx(regrown, rel=0.05)
    await send_steadily(clock, throttle, "a", 1.5)
    assert throttle.current_rate("a") == 50.0
    assert throttle.measured_rate("a") == pytest.approx(50, rel=0.05)


async def test_account_rate_is_the_ceiling_for_unconfigured_actions(clock: FakeClock) -> None:
    """An action without its own limit regrows to the account rate and drops its pacer."""
    throttle = Throttle(Limits(rate=40, increase=100.0))
    await send_steadily(clock, throttle, "a", 1.5)
    throttle.on_throttled("a", E113)
    assert throttle.current_rate("a") == pytest.approx(DECREASE * 40, rel=0.05)
    await send_steadily(clock, throttle, "a", 1.0)
    assert throttle.current_rate("a") == 40.0
    assert throttle._actions["a"].pacer is None


async def answer_after(
    throttle: Throttle,
    action: str,
    rtt: float,
    error: ThrottledError | None = None,
    grants: list[Permit] | None = None,
) -> None:
    """One call: take a slot, hold it ``rtt`` s (the round trip), then report the answer."""
    async with throttle.slot(action) as permit:
        if grants is not None:
            grants.append(permit)
        await asyncio.sleep(rtt)
    if error is None:
        throttle.on_success(action)
    else:
        throttle.on_throttled(action, error)


async def test_second_e113_soon_after_a_first_cuts_relative_to_what_was_sent(
    clock: FakeClock,
) -> None:
    """The rate an E113 cut is based on excludes the pause before it: cuts do not compound."""
    throttle = Throttle(Limits(rate=400, increase=0.0, e113_pause=0.25))
    await send_steadily(clock, throttle, "a", 0.06)
    throttle.on_throttled("a", E113)
    first = throttle.current_rate("a")
    assert first is not None
    await send_steadily(clock, throttle, "a", 0.55)
    throttle.on_throttled("a", E113)
    assert throttle.current_rate("a") == pytest.approx(DECREASE * first, rel=0.1)


async def test_e113_right_after_a_pause_cuts_at_most_once_from_the_limit(
    clock: FakeClock,
) -> None:
    """Too short a window to measure: the cut is decrease x the current limit, no deeper."""
    throttle = Throttle(Limits(rate=100, increase=0.0, cubic=0.0))
    await send_steadily(clock, throttle, "a", 2.0)
    throttle.on_throttled("a", E113)
    cut = throttle.current_rate("a")
    assert cut == pytest.approx(DECREASE * 100, rel=0.05)
    await clock.advance(E113_PAUSE)
    await send_steadily(clock, throttle, "a", 0.03)  # 3 calls since the pause ended
    throttle.on_throttled("a", E113)
    assert throttle.current_rate("a") == pytest.approx(DECREASE * cut, rel=0.02)


async def test_measured_rate_leaves_out_paused_time(clock: FakeClock) -> None:
    """The measured rate is over the last second of sending: a pause does not dilute it."""
    throttle = Throttle(Limits(rate=100, quota_cooldown=0.5))
    await send_steadily(clock, throttle, "a", 2.0)
    throttle.on_throttled("a", E120)
    await clock.advance(0.5)
    assert throttle.measured_rate("a") == pytest.approx(100, rel=0.05)  # the second before
    await send_steadily(clock, throttle, "a", 0.3)
    assert throttle.measured_rate("a") == pytest.approx(100, rel=0.05)  # 0.3 s + 0.7 s before


async def test_e113_for_a_call_sent_before_another_pause_uses_the_rate_before_it(
    clock: FakeClock,
) -> None:
    """No sending since a pause ended: the cut is relative to the sending before the pause."""
    throttle = Throttle(Limits(rate=100, quota_cooldown=0.3, cubic=0.0))
    await send_steadily(clock, throttle, "a", 1.0)
    slow = asyncio.create_task(answer_after(throttle, "a", 0.5, E113))
    await clock.advance(0.02)
    assert throttle.stats.in_flight == 1
    throttle.on_throttled("a", E120)  # a pause that has nothing to do with throughput
    await clock.advance(0.6)
    await finish(clock, [slow])  # the E113 lands 0.2 s after the pause, nobody sent since
    assert throttle.current_rate("a") == pytest.approx(DECREASE * 100, rel=0.05)


async def test_e113_answers_from_one_burst_cut_once_and_pause_once(clock: FakeClock) -> None:
    """E113 answers to calls sent before a cut (even late ones) neither cut nor pause again."""
    seen: list[tuple[float, ThrottleEvent]] = []
    throttle = Throttle(
        Limits(rate=100, concurrency=8), on_throttle=lambda e: seen.append((clock.now, e))
    )
    await send_steadily(clock, throttle, "a", 2.0)
    # Four calls go out 10 ms apart; their E113 answers land at +35, +40, +50 and +430 ms.
    burst = [
        asyncio.create_task(answer_after(throttle, "a", rtt, E113))
        for rtt in (0.035, 0.03, 0.03, 0.4)
    ]
    await settle()
    await clock.advance(0.06)
    assert len(seen) == 3
    pause_end = seen[0][0] + E113_PAUSE
    cut = throttle.current_rate("a")
    assert cut == pytest.approx(DECREASE * 100, rel=0.05)
    assert throttle.stats.paused_until == pause_end  # not extended by the later answers
    assert [event.wait for at, event in seen] == pytest.approx([pause_end - at for at, _ in seen])
    await clock.advance(0.5)  # the 430 ms answer lands after the pause ended
    await finish(clock, burst)
    assert len(seen) == 4
    assert seen[-1][1].wait == 0.0
    assert throttle.stats.paused_until == pause_end
    assert (throttle.current_rate("a") or 0) >= (cut or 0)


async def test_rate_regrows_along_the_cubic_curve(clock: FakeClock) -> None:
    """After a cut from W_max, the rate follows C(t - K)^3 + W_max: back to W_max at K."""
    throttle = Throttle(Limits(rate=100))  # default increase, cubic and decrease
    await send_steadily(clock, throttle, "a", 2.0)
    throttle.on_throttled("a", E113)
    limits = throttle.limits
    w_max = 100.0  # what was being sent (measured; the ceiling too)
    k = (w_max * (1 - limits.decrease) / limits.cubic) ** (1 / 3)
    await clock.advance(limits.e113_pause)
    await send_steadily(clock, throttle, "a", 1.0)
    expected = limits.cubic * (1.0 - k) ** 3 + w_max
    assert throttle.current_rate("a") == pytest.approx(expected, rel=0.02)
    assert expected > DECREASE * w_max + 5 * limits.increase  # much faster than linear
    await send_steadily(clock, throttle, "a", k - 1.0 - 0.3)
    assert (throttle.current_rate("a") or 0) > 0.99 * w_max
    assert throttle._actions["a"].pacer is not None  # not quite at the ceiling yet
    await send_steadily(clock, throttle, "a", 0.4)
    assert throttle.current_rate("a") == 100.0
    assert throttle._actions["a"].pacer is None


async def test_cubic_regrowth_probes_beyond_w_max_up_to_the_ceiling(clock: FakeClock) -> None:
    """Past K the curve turns convex; it stops at the configured ceiling."""
    throttle = Throttle(Limits(per_action={"a": 120}, cubic=2.0))
    throttle._set_rate(throttle._actions["a"], 100.0, clock.now)  # as if cut to 100 earlier
    await send_steadily(clock, throttle, "a", 1.0)
    throttle.on_throttled("a", E113)  # W_max 100, cut to 85, K = cbrt(7.5) ~ 1.96 s
    await clock.advance(throttle.limits.e113_pause)
    await send_steadily(clock, throttle, "a", 3.0)  # t = 3: 2 * 1.04^3 + 100 ~ 102
    k = 7.5 ** (1 / 3)
    assert throttle.current_rate("a") == pytest.approx(2 * (3 - k) ** 3 + 100, rel=0.02)
    await send_steadily(clock, throttle, "a", 1.0)  # t = 4: 2 * 2.04^3 + 100 ~ 117
    assert 110 < (throttle.current_rate("a") or 0) < 120
    await send_steadily(clock, throttle, "a", 0.5)
    assert throttle.current_rate("a") == 120.0


async def test_spacing_counts_from_the_answer_minus_the_lowest_round_trip(
    clock: FakeClock,
) -> None:
    """min_interval X: the next call starts no sooner than answer + X - credit.

    The server measures X between arrivals; a call whose round trip was long may have arrived
    late, so spacing the starts alone would let the next call arrive less than X after it.
    The credit is 0 for the first answers, then 0.75 x the lowest round trip.
    """
    throttle = Throttle(Limits(min_interval=0.05))
    grants: list[Permit] = []
    rtts = [0.002] * (_RTT_SAMPLES + 1) + [0.03, 0.002]  # the lowest round trip is 2 ms
    rtts[1] = 0.03  # a slow one before the credit applies
    tasks = [asyncio.create_task(answer_after(throttle, "a", rtt, grants=grants)) for rtt in rtts]
    await settle()
    await clock.advance(0.06 * len(rtts))
    await finish(clock, tasks)
    starts = times(grants)
    expected = [0.0]
    for rtt in rtts[:-1]:
        samples = len(expected)  # answers to spaced calls so far, this one included
        credit = _RTT_CREDIT * 0.002 if samples >= _RTT_SAMPLES else 0.0
        expected.append(expected[-1] + max(0.05, rtt + 0.05 - credit))
    assert starts == pytest.approx(expected, abs=0.002)
    assert starts[2] - starts[1] == pytest.approx(0.03 + 0.05, abs=0.002)  # no credit yet
    credited = starts[-1] - starts[-2]  # 78.5 ms, seen on the 1 ms steps of the fake clock
    assert 0.03 + 0.05 - 0.0015 - 1e-9 <= credited < 0.03 + 0.05 - 1e-9


async def test_spacing_waits_for_an_unanswered_call_one_interval_at_most(
    clock: FakeClock,
) -> None:
    """While the last call is unanswered the next one waits, but no longer than 2 X."""
    throttle = Throttle(Limits(min_interval=0.05))
    grants: list[Permit] = []
    tasks = [asyncio.create_task(answer_after(throttle, "a", 0.5, grants=grants))]
    tasks += [asyncio.create_task(answer_after(throttle, "a", 0.001, grants=grants))]
    await settle()
    await clock.advance(1.0)
    await finish(clock, tasks)
    assert times(grants) == pytest.approx([0.0, 0.1], abs=0.002)


async def test_first_call_under_a_rate_warms_up_alone(clock: FakeClock) -> None:
    """The first call under a rate goes alone; pacing resumes from its answer.

    The first call opens a connection and arrives late; calls paced behind it would reach the
    server bunched with it, over the rate in the first second.
    """
    throttle = Throttle(Limits(rate=100))
    grants: list[Permit] = []
    tasks = [asyncio.create_task(answer_after(throttle, "a", 0.03, grants=grants))]
    tasks += [asyncio.create_task(answer_after(throttle, "a", 0.001, grants=grants))]
    tasks += [asyncio.create_task(answer_after(throttle, "a", 0.001, grants=grants))]
    await settle()
    await clock.advance(0.2)
    await finish(clock, tasks)
    assert times(grants) == pytest.approx([0.0, 0.03, 0.04], abs=0.002)


async def test_e120_without_cooldown_changes_nothing(clock: FakeClock) -> None:
    """E120 with no quota_cooldown applies no pause; the next call goes at once."""
    throttle = Throttle(Limits())
    assert throttle.on_throttled("a", E120) == 0.0
    assert throttle.stats.paused_until == -math.inf
    async with throttle.slot("a") as permit:
        assert permit.waited == 0.0


async def test_e120_with_cooldown_pauses_everyone(clock: FakeClock) -> None:
    """E120 with quota_cooldown pauses every sender for the cooldown."""
    throttle = Throttle(Limits(quota_cooldown=30.0))
    assert throttle.on_throttled("a", E120) == 30.0
    grants: list[Permit] = []
    tasks = await start_senders(throttle, ["a", "b"], grants)
    await clock.advance(29.9, step=0.1)
    assert grants == []
    await clock.advance(0.2, step=0.001)
    await finish(clock, tasks)
    assert times(grants) == pytest.approx([30.0, 30.0], abs=0.002)


async def test_per_action_limits_are_independent(clock: FakeClock) -> None:
    """Two actions with their own limits pace separately; a cut on one leaves the other."""
    throttle = Throttle(Limits(per_action={"a": 10, "b": 5}))
    grants: list[Permit] = []
    tasks = await start_senders(throttle, ["a", "b"] * 4, grants)
    await clock.advance(0.7)
    await finish(clock, tasks)
    assert times(grants, "a") == pytest.approx([0.0, 0.1, 0.2, 0.3], abs=0.002)
    assert times(grants, "b") == pytest.approx([0.0, 0.2, 0.4, 0.6], abs=0.002)
    throttle.on_throttled("a", E113)
    assert throttle.current_rate("b") == 5.0
    assert (throttle.current_rate("a") or 10) < 10


async def test_account_rate_is_shared_in_arrival_order(clock: FakeClock) -> None:
    """The account rate covers all actions together, served in arrival order."""
    throttle = Throttle(Limits(rate=10))
    grants: list[Permit] = []
    tasks = await start_senders(throttle, ["a", "b", "a", "b", "c"], grants)
    await clock.advance(0.5)
    await finish(clock, tasks)
    assert [p.action for p in grants] == ["a", "b", "a", "b", "c"]
    assert times(grants) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4], abs=0.002)


async def test_slow_action_does_not_block_others(clock: FakeClock) -> None:
    """A waiter for a slow action does not hold up another action's calls."""
    throttle = Throttle(Limits(per_action={"slow": 0.5}))
    grants: list[Permit] = []
    tasks = await start_senders(throttle, ["slow", "slow", "fast", "fast"], grants)
    await clock.advance(0.01)
    assert [p.action for p in grants] == ["slow", "fast", "fast"]
    await finish(clock, tasks)
    assert times(grants, "slow")[1] == pytest.approx(2.0, abs=0.002)


async def test_pause_after_release_sends_the_waiter_back_to_the_front(clock: FakeClock) -> None:
    """A waiter released just before a pause began waits for the pause, still first in line."""
    throttle = Throttle(Limits(rate=10))
    grants: list[Permit] = []
    tasks = await start_senders(throttle, ["a", "a", "a"], grants)
    loop = asyncio.get_running_loop()
    # Due right after the release at START + 0.1, before the released task resumes.
    loop.call_at(START + 0.1 + 1e-6, throttle.on_throttled, "a", E106_2S)
    clock.now = START + 0.1 + 1e-5
    await settle()
    assert len(grants) == 1
    assert throttle.stats.waiting == 2
    await finish(clock, tasks)
    assert times(grants) == pytest.approx([0.0, 2.1, 4.1], abs=0.003)  # 1 ms steps from +10 µs


async def test_cancelled_waiter_leaves_the_queue(clock: FakeClock) -> None:
    """Cancelling a queued sender frees its concurrency slot and its place in line."""
    throttle = Throttle(Limits(rate=10, concurrency=2))
    grants: list[Permit] = []
    first, second = await start_senders(throttle, ["a", "a"], grants)
    await settle()
    assert throttle.stats.waiting == 1
    second.cancel()
    await settle()
    assert (throttle.stats.waiting, throttle.stats.in_flight) == (0, 0)
    (third,) = await start_senders(throttle, ["a"], grants)
    await clock.advance(0.15)
    await finish(clock, [first, third])
    assert times(grants) == pytest.approx([0.0, 0.1], abs=0.002)


async def test_stats_and_hook_report(clock: FakeClock) -> None:
    """stats counts sends, throttles and retries; on_throttle gets a frozen event."""
    events: list[ThrottleEvent] = []
    throttle = Throttle(Limits(rate=50), on_throttle=events.append)
    async with throttle.slot("sendSavedMMS"):
        assert throttle.stats.in_flight == 1
    throttle.on_success("sendSavedMMS")
    throttle.on_throttled("sendSavedMMS", E113)
    throttle.on_retry("sendSavedMMS")
    stats = throttle.stats
    assert (stats.sent, stats.throttled, stats.retried, stats.in_flight) == (1, 1, 1, 0)
    assert stats.measured["sendSavedMMS"] == pytest.approx(10.0)  # 1 call in the first 0.1 s
    # Far too short a time to measure: the cut is relative to the limit.
    assert stats.rates == {"sendSavedMMS": pytest.approx(DECREASE * 50)}
    (event,) = events
    assert (event.code, event.wait, event.action) == ("E113", E113_PAUSE, "sendSavedMMS")
    assert event.rate == pytest.approx(DECREASE * 50)
    assert f"everyone paused {E113_PAUSE:.3f} s" in event.reason
    assert "too short to measure" in event.reason


async def test_a_failing_hook_is_logged_not_raised(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in on_throttle is logged and does not break the caller."""

    def broken(event: ThrottleEvent) -> None:
        raise RuntimeError("hook bug")

    throttle = Throttle(Limits(), on_throttle=broken)
    assert throttle.on_throttled("a", E120) == 0.0
    assert "on_throttle hook raised" in caplog.text


async def test_decisions_are_logged_at_debug(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """on_throttled logs what it did at debug level."""
    caplog.set_level(logging.DEBUG, logger="skycore_async")
    Throttle(Limits()).on_throttled("a", E106_2S)
    assert "throttle: E106 on a: call interval 2.000 s (from the reply)" in caplog.text


async def test_testing_mode_never_waits(clock: FakeClock) -> None:
    """Throttle.testing() ignores rates and throttle answers but still counts and reports."""
    events: list[ThrottleEvent] = []
    throttle = Throttle.testing(Limits(rate=1, min_interval=5), on_throttle=events.append)
    for error in (E106_2S, E113, E120):
        assert throttle.on_throttled("a", error) == 0.0
    for _ in range(10):
        async with throttle.slot("a") as permit:
            assert permit.waited == 0.0
    assert [event.wait for event in events] == [0.0, 0.0, 0.0]
    assert throttle.stats.throttled == 3


def test_built_outside_a_running_loop() -> None:
    """A throttle made with no running loop binds to the loop that first uses it."""
    throttle = Throttle(Limits(rate=1000, burst=2))

    async def use() -> float:
        async with throttle.slot("a") as permit:
            return permit.waited

    assert asyncio.run(use()) == 0.0


def test_rebinds_after_its_loop_closed() -> None:
    """A throttle whose first loop closed works in the next one, waits included."""
    throttle = Throttle(Limits(rate=1000))

    async def use_twice() -> float:
        async with throttle.slot("a"):
            pass
        async with throttle.slot("a") as permit:
            return permit.waited

    assert asyncio.run(use_twice()) > 0.0
    assert asyncio.run(use_twice()) >= 0.0


async def test_refuses_a_second_live_loop(clock: FakeClock) -> None:
    """Waiting on a throttle bound to another, still open loop fails clearly."""
    throttle = Throttle(Limits(rate=1))
    other = asyncio.new_event_loop()
    try:
        throttle._loop = other
        throttle._paused_until = math.inf
        with pytest.raises(RuntimeError, match="another event loop"):
            async with throttle.slot("a"):
                pass
    finally:
        other.close()


async def test_repr_shows_live_state(clock: FakeClock) -> None:
    """repr shows rates, in-flight count, pause and spacing."""
    throttle = Throttle(Limits(rate=20, per_action={"a": 5}))
    throttle.on_throttled("a", E106_2S)
    text = repr(throttle)
    assert text.startswith("<Throttle rate=20 {a: 5.0} [in_flight=0, waiting=0")
    assert "paused for 2.000 s" in text
    assert "min_interval=2.000 s" in text


def test_the_error_table_gives_the_classes_the_throttle_handles() -> None:
    """E106, E113, E510 and E120 replies decode to the ThrottledError classes used here."""
    for code, cls in [
        ("E106", CallIntervalError),
        ("E113", ThroughputExceededError),
        ("E510", ThroughputExceededError),
        ("E120", QuotaExceededError),
    ]:
        assert type(error_for_code(code)) is cls
        assert issubclass(cls, ThrottledError)
