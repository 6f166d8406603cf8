"""Tests for skycore_async.config: defaults, validation, backoff math."""

from __future__ import annotations

import math

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from skycore_async import config
from skycore_async.config import (
    DEFAULT_LIMITS,
    DEFAULT_RETRY_POLICY,
    DEFAULT_TIMEOUTS,
    TESTING_RETRY_POLICY,
    Limits,
    RetryPolicy,
    Timeouts,
    backoff_delay,
)


def test_defaults_come_from_the_named_constants() -> None:
    """The module-level constants are what the value objects default to."""
    assert Timeouts(connect=config.CONNECT_TIMEOUT, read=config.READ_TIMEOUT) == DEFAULT_TIMEOUTS
    assert DEFAULT_LIMITS.rate is None
    assert DEFAULT_LIMITS.burst == 1
    assert DEFAULT_LIMITS.concurrency == config.CONCURRENCY
    assert DEFAULT_LIMITS.decrease == config.DECREASE
    assert (DEFAULT_LIMITS.cubic, DEFAULT_LIMITS.increase) == (config.CUBIC, config.INCREASE)
    assert DEFAULT_LIMITS.e113_pause == config.E113_PAUSE
    assert DEFAULT_LIMITS.quota_cooldown is None
    assert DEFAULT_RETRY_POLICY.attempts == config.ATTEMPTS
    assert DEFAULT_RETRY_POLICY.throttle_attempts == config.THROTTLE_ATTEMPTS
    assert DEFAULT_RETRY_POLICY.retry_ambiguous is False


def test_values_are_frozen_and_evolve() -> None:
    """Config objects are immutable; attrs.evolve makes a changed copy."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        DEFAULT_LIMITS.rate = 5  # type: ignore[misc]
    assert attrs.evolve(DEFAULT_RETRY_POLICY, attempts=1).attempts == 1


def test_per_action_is_a_read_only_copy() -> None:
    """per_action is copied, converted to floats, read-only, and Limits stays hashable."""
    source = {"sendSavedMMS": 200}
    limits = Limits(per_action=source)
    source["sendSavedMMS"] = 1
    assert limits.per_action == {"sendSavedMMS": 200.0}
    with pytest.raises(TypeError):
        limits.per_action["x"] = 1.0  # type: ignore[index]
    assert hash(limits) == hash(Limits(per_action={"sendSavedMMS": 200}))
    assert limits == Limits(per_action={"sendSavedMMS": 200.0})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0},
        {"rate": -1.0},
        {"rate": math.nan},
        {"rate": math.inf},
        {"burst": 0},
        {"burst": True},
        {"burst": 1.5},
        {"concurrency": 0},
        {"per_action": {"sendSavedMMS": 0}},
        {"per_action": {"": 1.0}},
        {"per_action": {"a": math.inf}},
        {"min_interval": -0.1},
        {"floor": 0},
        {"e106_default": -1},
        {"e113_pause": math.nan},
        {"decrease": 0},
        {"decrease": 1.0},
        {"increase": -1},
        {"cubic": -0.4},
        {"cubic": math.inf},
        {"quota_cooldown": -5},
    ],
)
def test_limits_reject_nonsense(kwargs: dict[str, object]) -> None:
    """Limits raises ValueError on values that make no sense."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Limits(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (Timeouts, {"connect": 0}),
        (Timeouts, {"read": -1}),
        (Timeouts, {"read": math.nan}),
        (RetryPolicy, {"attempts": 0}),
        (RetryPolicy, {"throttle_attempts": -1}),
        (RetryPolicy, {"total_timeout": 0}),
        (RetryPolicy, {"wait_initial": -1}),
        (RetryPolicy, {"wait_max": math.inf}),
        (RetryPolicy, {"wait_exp_base": 0.5}),
    ],
)
def test_timeouts_and_policy_reject_nonsense(cls: type, kwargs: dict[str, object]) -> None:
    """Timeouts and RetryPolicy raise ValueError on nonsense."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        cls(**kwargs)


def test_infinite_timeouts_are_allowed() -> None:
    """math.inf means 'no limit' for timeouts and the total deadline."""
    assert Timeouts(read=math.inf).read == math.inf
    assert RetryPolicy(total_timeout=math.inf).total_timeout == math.inf


def test_testing_policy_never_waits() -> None:
    """The testing policy has zero waits, keeps budgets, and accepts overrides."""
    assert RetryPolicy.testing() == TESTING_RETRY_POLICY
    assert RetryPolicy.testing(attempts=5).attempts == 5
    assert all(backoff_delay(n, TESTING_RETRY_POLICY, lambda: 1.0) == 0 for n in range(1, 50))


def test_backoff_grows_exponentially_then_caps() -> None:
    """Without jitter: initial, initial*base, ... capped at wait_max."""
    policy = RetryPolicy(wait_initial=0.5, wait_max=8.0, wait_jitter=0.0)
    delays = [backoff_delay(n, policy) for n in range(1, 8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_jitter_bounds() -> None:
    """Jitter adds wait_jitter * rand(), rand clamped to [0, 1]."""
    policy = RetryPolicy(wait_initial=1.0, wait_max=8.0, wait_jitter=0.5)
    assert backoff_delay(1, policy, lambda: 0.0) == 1.0
    assert backoff_delay(1, policy, lambda: 1.0) == 1.5
    assert backoff_delay(1, policy, lambda: 7.0) == 1.5
    assert backoff_delay(1, policy, lambda: -3.0) == 1.0


def test_backoff_survives_huge_attempts() -> None:
    """A huge attempt number caps at wait_max instead of overflowing."""
    policy = RetryPolicy(wait_jitter=0.0)
    assert backoff_delay(10**6, policy) == policy.wait_max
    assert backoff_delay(10**6, RetryPolicy.testing()) == 0.0
    assert backoff_delay(0, policy) == policy.wait_initial


@given(
    initial=st.floats(0, 100),
    cap=st.floats(0, 1000),
    jitter=st.floats(0, 10),
    base=st.floats(1, 50),
    rand=st.floats(0, 1),
    attempt=st.integers(1, 5000),
)
def test_backoff_is_monotone_and_capped(
    initial: float, cap: float, jitter: float, base: float, rand: float, attempt: int
) -> None:
    """For a fixed random draw, backoff never shrinks with attempts and stays <= cap + jitter."""
    policy = RetryPolicy(wait_initial=initial, wait_max=cap, wait_jitter=jitter, wait_exp_base=base)
    now, after = (
        backoff_delay(attempt, policy, lambda: rand),
        backoff_delay(attempt + 1, policy, lambda: rand),
    )
    assert 0.0 <= now <= after <= cap + jitter
    assert math.isfinite(after)
