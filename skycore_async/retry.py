"""Whether to resend a failed call: a pure decision over the exception and two budgets.

The client's call loop, with ``throttle`` a :class:`~skycore_async.throttle.Throttle`::

    attempt, throttled, started = 1, 0, loop.time()
    while True:
        async with throttle.slot(action):
            try:
                reply = await send(body)          # the same bytes on every attempt
            except SkycoreError as exc:
                error = exc
            else:
                throttle.on_success(action)
                return reply
        pause = 0.0
        if isinstance(error, ThrottledError):
            throttled += 1
            pause = throttle.on_throttled(action, error)
        decision = decide(error, attempt=attempt, throttle_attempt=throttled,
                          elapsed=loop.time() - started, policy=policy, pause=pause)
        if not decision.retry:
            raise error
        throttle.on_retry(action)
        if decision.kind == "error":
            attempt += 1
            await asyncio.sleep(decision.wait)

Throttled answers (E106/E113/E510) were rejected, not acted on, so they are resent under
their own budget and the throttle does the waiting (``wait`` is 0). Ambiguous failures (the
request may have been acted on) are not resent unless the policy opts in, because Skycore has
no idempotency key.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Literal

import attrs

from .config import RetryPolicy, backoff_delay
from .errors import ErrorClass, QuotaExceededError, SkycoreError, ThrottledError

__all__ = ["Decision", "RetryEvent", "RetryKind", "decide"]

_log = logging.getLogger("skycore_async")

#: Which budget a decision is about; "none" for failures that are never retried.
RetryKind = Literal["throttle", "error", "none"]


@attrs.frozen
class Decision:
    """The outcome of :func:`decide`.

    Attributes:
        retry: resend the call.
        reason: why, in words (for logs and hooks).
        kind: "throttle" (throttle budget, the throttle waits), "error" (error budget, sleep
            ``wait`` first) or "none" (never retried).
        wait: seconds the caller must sleep before resending; 0 for throttle retries.
    """

    retry: bool
    reason: str
    kind: RetryKind
    wait: float = 0.0


@attrs.frozen
class RetryEvent:
    """A snapshot passed to retry hooks, one per resend.

    Attributes:
        action: the API action, e.g. ``"sendSavedMMS"``.
        reason: the decision's reason.
        code: the E-code (``"E113"``), or None for transport failures.
        wait: seconds waited before the resend (the throttle pause for throttle retries).
        attempt: error-budget attempt number of the call that failed (1-based).
        kind: "throttle" or "error".
        rate: the action's current rate limit in calls/s, None when unlimited.
    """

    action: str
    reason: str
    code: str | None
    wait: float
    attempt: int
    kind: RetryKind
    rate: float | None

    @classmethod
    def from_decision(
        cls,
        decision: Decision,
        error: BaseException,
        *,
        action: str,
        attempt: int,
        rate: float | None,
        pause: float = 0.0,
    ) -> RetryEvent:
        """Build the event for a retry; ``pause`` is what the throttle applied, if any."""
        code = getattr(error, "code", None)
        wait = decision.wait if decision.kind == "error" else pause
        return cls(action, decision.reason, code if isinstance(code, str) else None, wait,
                   attempt, decision.kind, rate)  # fmt: skip


def decide(
    error: BaseException,
    *,
    attempt: int,
    throttle_attempt: int,
    elapsed: float,
    policy: RetryPolicy,
    pause: float = 0.0,
    quota_retry: bool = False,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """Decide whether a failed call should be sent again.

    Args:
        error: what the attempt raised.
        attempt: error-budget attempt number of the failed try (1 for the first; the caller
            adds 1 after each "error" retry, not after throttle retries).
        throttle_attempt: throttled answers this call has had, including this one.
        elapsed: seconds since the call started (first attempt), waits included.
        policy: the budgets and backoff.
        pause: the pause the throttle applied for this error (``Throttle.on_throttled``);
            counted against ``total_timeout``.
        quota_retry: E120 may be retried: ``Limits.quota_cooldown`` is set and this call has
            not been retried after an E120 yet.
        rand: random source for the jitter.

    Returns:
        A :class:`Decision`; each branch logs its reason at debug level (never the body).
    """
    if not isinstance(error, SkycoreError):
        return _no(error, "not a Skycore error", "none")
    if isinstance(error, QuotaExceededError):
        if not quota_retry:
            return _no(error, "quota exhausted (E120): fatal", "none")
        return _throttle_retry(error, elapsed + pause, policy, "quota cooldown over: one retry")
    if isinstance(error, ThrottledError):
        if throttle_attempt > policy.throttle_attempts:
            return _no(error, "throttle budget exhausted", "throttle")
        return _throttle_retry(error, elapsed + pause, policy, "throttled: resend")
    if error.ambiguous and not policy.retry_ambiguous:
        return _no(error, "ambiguous: may have been delivered", "none")
    if error.error_class is ErrorClass.TRANSIENT:
        return _error_retry(error, attempt, elapsed, policy, rand)
    return _no(error, f"permanent: {error.error_class.value} error", "none")


def _throttle_retry(
    error: SkycoreError, ready_at: float, policy: RetryPolicy, why: str
) -> Decision:
    """Resend under the throttle budget unless the pause runs past the deadline."""
    if ready_at > policy.total_timeout:
        return _no(error, "total_timeout would pass during the throttle pause", "throttle")
    return _yes(error, why, "throttle", 0.0)


def _error_retry(
    error: SkycoreError,
    attempt: int,
    elapsed: float,
    policy: RetryPolicy,
    rand: Callable[[], float],
) -> Decision:
    """Resend a transient failure under the error budget, after a backoff."""
    if attempt >= policy.attempts:
        return _no(error, "error budget exhausted", "error")
    wait = backoff_delay(attempt, policy, rand)
    if elapsed + wait > policy.total_timeout:
        return _no(error, "total_timeout would pass during the backoff", "error")
    why = "ambiguous, retry_ambiguous set" if error.ambiguous else "transient"
    return _yes(error, why, "error", wait)


def _describe(error: BaseException) -> str:
    code = getattr(error, "code", None)
    return f"{type(error).__name__} {code}" if isinstance(code, str) else type(error).__name__


def _no(error: BaseException, reason: str, kind: RetryKind) -> Decision:
    _log.debug("no retry after %s: %s", _describe(error), reason)
    return Decision(retry=False, reason=reason, kind=kind)


def _yes(error: BaseException, reason: str, kind: RetryKind, wait: float) -> Decision:
    _log.debug("retry after %s: %s (wait %.3f s)", _describe(error), reason, wait)
    return Decision(retry=True, reason=reason, kind=kind, wait=wait)
