"""Every tunable default, and the frozen value objects that carry them.

A client takes three of these objects: :class:`Timeouts`, :class:`Limits` (for the throttle)
and :class:`RetryPolicy` (for the retry ladder in :mod:`skycore_async.retry`). Override a
single field with ``attrs.evolve``::

    policy = attrs.evolve(DEFAULT_RETRY_POLICY, attempts=1)
    limits = Limits(rate=50, per_action={"sendSavedMMS": 20})

Tests use :data:`TESTING_RETRY_POLICY` (or ``RetryPolicy.testing()``), which never sleeps.
"""

from __future__ import annotations

import math
import random
import types
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_RETRY_POLICY",
    "DEFAULT_TIMEOUTS",
    "TESTING_RETRY_POLICY",
    "Limits",
    "RetryPolicy",
    "Timeouts",
    "backoff_delay",
]

# Timeouts, in seconds.
CONNECT_TIMEOUT: Final = 10.0
READ_TIMEOUT: Final = 30.0

# Limits: the throttle (see skycore_async.throttle).
CONCURRENCY: Final = 32
BURST: Final = 1
FLOOR_RATE: Final = 1.0  # calls/s: the adaptive rate never goes below this
E106_DEFAULT_PAUSE: Final = 1.0  # s: used when E106's text carries no number
# s: everybody waits this long once per E113 congestion event. Brief: the cut is what keeps
# the rate under the limit; a 0.25 s pause every ~4 s cost 4 % of the throughput.
E113_PAUSE: Final = 0.1
DECREASE: Final = 0.85  # E113 sets the action's rate to DECREASE x the rate it was sending at
CUBIC: Final = 0.4  # C of the CUBIC regrowth after an E113 cut, in calls/s per s^3
INCREASE: Final = 1.0  # calls/s per second: the slowest regrowth (matters at low rates only)

# RetryPolicy.
ATTEMPTS: Final = 3
THROTTLE_ATTEMPTS: Final = 20
TOTAL_TIMEOUT: Final = 120.0
WAIT_INITIAL: Final = 0.5
WAIT_MAX: Final = 8.0
WAIT_JITTER: Final = 0.5
WAIT_EXP_BASE: Final = 2.0


def _finite(lo: float, *, strict: bool = False) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """Validator: a finite real number >= lo (> lo when strict)."""

    def check(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        bad = isinstance(value, bool) or not isinstance(value, int | float)
        if bad or not math.isfinite(value) or value < lo or (strict and value == lo):
            op = ">" if strict else ">="
            raise ValueError(f"{attr.name} must be a finite number {op} {lo}, got {value!r}")

    return check


def _at_least(lo: int) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """Validator: an int >= lo."""

    def check(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{attr.name} must be an integer >= {lo}, got {value!r}")

    return check


def _positive_or_inf(_inst: Any, attr: attrs.Attribute[Any], value: float) -> None:
    """Validator: a number > 0; ``math.inf`` allowed (no limit)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attr.name} must be a number > 0 (math.inf for none), got {value!r}")


def _rate_mapping(value: Mapping[str, float]) -> Mapping[str, float]:
    """Converter: a read-only copy of an action -> calls/s mapping, checked."""
    frozen: dict[str, float] = {}
    for action, rate in dict(value).items():
        if not isinstance(action, str) or not action:
            raise ValueError(f"per_action keys must be action names, got {action!r}")
        ok = isinstance(rate, int | float) and not isinstance(rate, bool)
        if not ok or not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"per_action[{action!r}] must be a finite rate > 0, got {rate!r}")
        frozen[action] = float(rate)
    return types.MappingProxyType(frozen)


@attrs.frozen
class Timeouts:
    """How long one HTTP exchange may take, in seconds.

    Args:
        connect: to get a connection (from the pool or a new one) and start writing. When it
            expires nothing was sent (``ConnectTimeoutError``, safe to retry).
        read: the rest of the exchange. ``connect + read`` is one deadline on the whole
            exchange (one timer per request), not an idle timer per read, so a reply that
            trickles in slowly cannot hold a send forever. When it expires after the request
            started, the outcome is unknown (``ResponseTimeoutError``): the call may have been
            acted on.
    """

    connect: float = attrs.field(default=CONNECT_TIMEOUT, validator=_positive_or_inf)
    read: float = attrs.field(default=READ_TIMEOUT, validator=_positive_or_inf)


@attrs.frozen
class Limits:
    """What the shared :class:`~skycore_async.throttle.Throttle` allows, per client.

    Args:
        rate: calls/s ceiling for the whole account; None = unlimited.
        burst: calls that may go at once after an idle spell. 1 = smooth spacing of 1/rate.
        concurrency: requests in flight at once; separate from the rate.
        per_action: action -> its own ceiling in calls/s (e.g. ``{"sendSavedMMS": 200}``).
        min_interval: account-wide spacing between any two calls, in s; E106 raises it.
        floor: the adaptive rate never goes below this many calls/s.
        e106_default: pause (and spacing) used when E106's text has no number.
        e113_pause: every sender waits this long after an E113/E510, once per congestion
            event (the E113 answers to calls sent before the cut do not pause again).
        decrease: on E113 the action's rate becomes ``decrease`` x the rate it was sending at
            (measured since the last pause; CUBIC's beta).
        increase: the slowest regrowth, in calls/s per second: the rate is at least
            ``cut + increase * t`` (CUBIC's "TCP-friendly" region; it only matters at low
            rates, where the cubic term is slow).
        quota_cooldown: on E120: None = raise ``QuotaExceededError`` at once; a number =
            pause every sender that long, then retry the call once.
        cubic: after a cut the rate grows back along CUBIC's curve
            ``W(t) = cubic * (t - K)**3 + W_max``, ``K = cbrt(W_max * (1 - decrease) / cubic)``,
            t in s since the pause ended and W_max the rate the E113 came at: fast at first,
            flat near W_max, then probing beyond it. 0 = linear regrowth only.
    """

    rate: float | None = attrs.field(default=None, validator=_finite(0.0, strict=True))
    burst: int = attrs.field(default=BURST, validator=_at_least(1))
    concurrency: int = attrs.field(default=CONCURRENCY, validator=_at_least(1))
    per_action: Mapping[str, float] = attrs.field(factory=dict, converter=_rate_mapping, hash=False)
    min_interval: float = attrs.field(default=0.0, validator=_finite(0.0))
    floor: float = attrs.field(default=FLOOR_RATE, validator=_finite(0.0, strict=True))
    e106_default: float = attrs.field(default=E106_DEFAULT_PAUSE, validator=_finite(0.0))
    e113_pause: float = attrs.field(default=E113_PAUSE, validator=_finite(0.0))
    decrease: float = attrs.field(default=DECREASE, validator=_finite(0.0, strict=True))
    increase: float = attrs.field(default=INCREASE, validator=_finite(0.0))
    quota_cooldown: float | None = attrs.field(default=None, validator=_finite(0.0))
    cubic: float = attrs.field(default=CUBIC, validator=_finite(0.0))

    @decrease.validator
    def _check_decrease(self, _attr: attrs.Attribute[float], value: float) -> None:
        if not value < 1:
            raise ValueError(f"decrease must be in (0, 1), got {value!r}")


@attrs.frozen
class RetryPolicy:
    """When and how long to wait before resending a failed call.

    Two budgets: ``attempts`` counts tries that ended in a transient error (connection
    failures, Skycore internal errors); ``throttle_attempts`` counts resends after a throttle
    answer (E106/E113/E510), which was rejected and is therefore safe to resend. A throttled
    answer never uses up the error budget. ``total_timeout`` bounds everything.

    Args:
        attempts: total tries for transient errors (1 = never retry them).
        throttle_attempts: resends allowed after throttled answers (0 = none).
        total_timeout: seconds across all attempts and waits; ``math.inf`` = no deadline.
        wait_initial: backoff before the first error retry, in s.
        wait_max: cap on the exponential part of the backoff.
        wait_jitter: up to this many random seconds added to each backoff.
        wait_exp_base: growth factor of the backoff per attempt.
        retry_ambiguous: also retry calls that may have been acted on (read timeouts, broken
            replies). Skycore has no idempotency key, so this can send a message twice.
    """

    attempts: int = attrs.field(default=ATTEMPTS, validator=_at_least(1))
    throttle_attempts: int = attrs.field(default=THROTTLE_ATTEMPTS, validator=_at_least(0))
    total_timeout: float = attrs.field(default=TOTAL_TIMEOUT, validator=_positive_or_inf)
    wait_initial: float = attrs.field(default=WAIT_INITIAL, validator=_finite(0.0))
    wait_max: float = attrs.field(default=WAIT_MAX, validator=_finite(0.0))
    wait_jitter: float = attrs.field(default=WAIT_JITTER, validator=_finite(0.0))
    wait_exp_base: float = attrs.field(default=WAIT_EXP_BASE, validator=_finite(1.0))
    retry_ambiguous: bool = False

    @classmethod
    def testing(cls, **overrides: Any) -> RetryPolicy:
        """A policy with every wait set to zero, for tests; other fields as given.

        Example: ``RetryPolicy.testing(attempts=2)``.
        """
        fields: dict[str, Any] = {"wait_initial": 0.0, "wait_max": 0.0, "wait_jitter": 0.0}
        return cls(**(fields | overrides))


def backoff_delay(
    attempt: int, policy: RetryPolicy, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after the ``attempt``-th failed try (1-based), before the next one.

    ``min(wait_initial * wait_exp_base ** (attempt - 1), wait_max) + wait_jitter * rand()``,
    as stamina does. Never overflows, and is 0 when the policy's waits are all 0.

    Example: with the defaults, attempt 1 waits 0.5-1.0 s, attempt 2 1.0-1.5 s, attempt 5+
    8.0-8.5 s.
    """
    exponent = max(attempt, 1) - 1
    try:
        growth = policy.wait_exp_base**exponent
    except OverflowError:
        growth = math.inf
    base = min(policy.wait_initial * growth, policy.wait_max) if policy.wait_initial else 0.0
    jitter = policy.wait_jitter * min(max(rand(), 0.0), 1.0) if policy.wait_jitter else 0.0
    return base + jitter


DEFAULT_TIMEOUTS: Final = Timeouts()
DEFAULT_LIMITS: Final = Limits()
DEFAULT_RETRY_POLICY: Final = RetryPolicy()
TESTING_RETRY_POLICY: Final = RetryPolicy.testing()
