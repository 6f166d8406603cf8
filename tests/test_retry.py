"""Tests for skycore_async.retry: the decision ladder, budgets and deadline."""

from __future__ import annotations

import logging

import pytest

from skycore_async.config import RetryPolicy
from skycore_async.errors import (
    ApiError,
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    OutcomeUnknownError,
    ProtocolError,
    ResponseTimeoutError,
    SkycoreError,
    TransportError,
    ValidationError,
    error_for_code,
)
from skycore_async.retry import Decision, RetryEvent, decide

POLICY = RetryPolicy(wait_initial=0.5, wait_max=8.0, wait_jitter=0.5)


def run(error: BaseException, **overrides: object) -> Decision:
    """decide() with a first attempt, no throttling so far, and a fixed jitter draw."""
    kwargs: dict[str, object] = {
        "attempt": 1,
        "throttle_attempt": 0,
        "elapsed": 0.0,
        "policy": POLICY,
        "rand": lambda: 0.5,
    }
    return decide(error, **(kwargs | overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize("code", ["E106", "E113", "E510"])
def test_throttled_answers_retry_under_throttle_budget(code: str) -> None:
    """E106/E113/E510 are resent; the throttle does the waiting, so wait is 0."""
    decision = run(error_for_code(code, "You can call API every 2 seconds"), throttle_attempt=1)
    assert decision == Decision(retry=True, reason="throttled: resend", kind="throttle", wait=0.0)


def test_throttle_retries_do_not_use_the_error_budget() -> None:
    """A throttled answer is resent even when the error budget is spent."""
    decision = run(error_for_code("E113"), attempt=POLICY.attempts, throttle_attempt=1)
    assert decision.retry
    assert decision.kind == "throttle"


def test_throttle_budget_counts_resends() -> None:
    """throttle_attempts resends are allowed; the next throttled answer is final."""
    policy = RetryPolicy(throttle_attempts=2)
    assert run(error_for_code("E113"), throttle_attempt=2, policy=policy).retry
    last = run(error_for_code("E113"), throttle_attempt=3, policy=policy)
    assert (last.retry, last.kind, last.reason) == (False, "throttle", "throttle budget exhausted")


def test_throttle_pause_past_the_deadline_stops() -> None:
    """A throttle pause that would run past total_timeout ends the retries."""
    policy = RetryPolicy(total_timeout=10.0)
    error = error_for_code("E106", "every 5 seconds")
    assert run(error, throttle_attempt=1, elapsed=4.0, pause=5.0, policy=policy).retry
    assert not run(error, throttle_attempt=1, elapsed=6.0, pause=5.0, policy=policy).retry


def test_quota_is_fatal_by_default() -> None:
    """E120 is not retried unless a quota cooldown allows one retry."""
    error = error_for_code("E120")
    assert run(error, throttle_attempt=1) == Decision(
        retry=False, reason="quota exhausted (E120): fatal", kind="none"
    )
    once = run(error, throttle_attempt=1, quota_retry=True, pause=30.0)
    assert (once.retry, once.kind, once.wait) == (True, "throttle", 0.0)


@pytest.mark.parametrize(
    "error",
    [
        ConnectError("refused"),
        ConnectTimeoutError("slow pool"),
        error_for_code("E503"),
        error_for_code("E618"),
        error_for_code("E626"),
    ],
)
def test_transient_errors_retry_with_backoff(error: SkycoreError) -> None:
    """Connection failures and Skycore internal errors are retried after backoff."""
    decision = run(error)
    assert (decision.retry, decision.kind, decision.reason) == (True, "error", "transient")
    assert decision.wait == pytest.approx(0.5 + 0.25)


def test_error_budget_is_total_attempts() -> None:
    """attempts=3 allows a 2nd and 3rd try, not a 4th; the wait grows."""
    error = ConnectError("refused")
    assert run(error, attempt=2).wait == pytest.approx(1.0 + 0.25)
    final = run(error, attempt=3)
    assert (final.retry, final.kind, final.reason) == (False, "error", "error budget exhausted")


def test_backoff_past_the_deadline_stops() -> None:
    """No retry when the backoff would end after total_timeout."""
    policy = RetryPolicy(total_timeout=10.0, wait_jitter=0.0)
    assert run(ConnectError("x"), elapsed=9.5, policy=policy).retry
    late = run(ConnectError("x"), elapsed=9.6, policy=policy)
    assert not late.retry
    assert "total_timeout" in late.reason


@pytest.mark.parametrize(
    "error",
    [
        ResponseTimeoutError("no answer"),
        ConnectionLostError("reset"),
        OutcomeUnknownError("?"),
        ProtocolError("HTML page", status=502),
    ],
)
def test_ambiguous_failures_need_opt_in(error: SkycoreError) -> None:
    """Maybe-delivered failures are not resent unless retry_ambiguous is set."""
    assert run(error) == Decision(
        retry=False, reason="ambiguous: may have been delivered", kind="none"
    )
    opted = run(error, policy=RetryPolicy(retry_ambiguous=True, wait_jitter=0.0))
    assert (opted.retry, opted.kind, opted.wait) == (True, "error", 0.5)


@pytest.mark.parametrize(
    "error",
    [
        error_for_code("E104"),  # authentication
        error_for_code("E713"),  # billing
        error_for_code("E112"),  # IP not whitelisted
        error_for_code("E110"),  # recipient
        error_for_code("E241"),  # invalid request
        error_for_code("E9999"),  # unknown code
        ApiError("E555"),
        ValidationError("to", "E110", "not a phone number"),
    ],
)
def test_permanent_errors_are_not_retried(error: SkycoreError) -> None:
    """Request, recipient, account and unknown errors are final."""
    decision = run(error)
    assert (decision.retry, decision.kind) == (False, "none")
    assert decision.reason.startswith("permanent")


@pytest.mark.parametrize("error", [ValueError("bug"), KeyboardInterrupt(), TimeoutError()])
def test_foreign_exceptions_are_not_retried(error: BaseException) -> None:
    """Exceptions that are not SkycoreError are never retried."""
    assert run(error) == Decision(retry=False, reason="not a Skycore error", kind="none")


def test_plain_transport_error_is_transient() -> None:
    """A TransportError that is neither connect nor outcome-unknown counts as transient."""
    assert run(TransportError("x")).kind == "error"


def test_each_decision_logs_one_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    """Every branch logs its reason at debug level, naming the class and code only."""
    caplog.set_level(logging.DEBUG, logger="skycore_async")
    run(error_for_code("E113", "<REQUEST><API_KEY>secret</API_KEY></REQUEST>"), throttle_attempt=1)
    run(ConnectError("x"))
    messages = [record.getMessage() for record in caplog.records]
    assert (
        messages[0] == "retry after ThroughputExceededError E113: throttled: resend (wait 0.000 s)"
    )
    assert messages[1].startswith("retry after ConnectError: transient")
    assert not any("secret" in message for message in messages)


def test_retry_event_from_decision() -> None:
    """RetryEvent snapshots the decision; throttle retries report the throttle pause."""
    error = error_for_code("E113")
    decision = run(error, throttle_attempt=1)
    event = RetryEvent.from_decision(
        decision, error, action="sendSavedMMS", attempt=1, rate=70.0, pause=0.25
    )
    assert event == RetryEvent(
        "sendSavedMMS", "throttled: resend", "E113", 0.25, 1, "throttle", 70.0
    )
    transport = RetryEvent.from_decision(
        run(ConnectError("x")), ConnectError("x"), action="saveMMS", attempt=1, rate=None
    )
    assert (transport.code, transport.wait, transport.kind) == (None, 0.75, "error")
