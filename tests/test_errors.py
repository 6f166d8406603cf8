"""The E-code table and E106 parsing."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skycore_async.errors import (
    MAX_INTERVAL_SECONDS,
    ApiError,
    CallIntervalError,
    ErrorClass,
    ValidationError,
    describe_code,
    error_for_code,
    parse_interval_seconds,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("You can call API every 2 seconds", 2.0),
        ("API 1.3: call every 2 seconds", 2.0),
        ("Time interval between each API call should be at least 0.5 seconds", 0.5),
        ("You can call API every 500 ms", 0.5),
        ("You can call API every 1 minute", 60.0),
        ("every 0,25 sec", 0.25),
        ("You can call API every X seconds", None),
        ("", None),
        ("every 999999999 seconds", MAX_INTERVAL_SECONDS),
    ],
)
def test_e106_interval_parsing(text: str, seconds: float | None) -> None:
    """X is read defensively: anchored on 'every'/'at least', units, clamping, None if absent."""
    assert parse_interval_seconds(text) == seconds


@given(st.text(max_size=300))
def test_interval_parser_never_raises(text: str) -> None:
    """Any text gives None or a clamped positive number."""
    value = parse_interval_seconds(text)
    assert value is None or 0 < value <= MAX_INTERVAL_SECONDS


def test_codes_are_normalised_and_described() -> None:
    """Codes match case- and space-insensitively; E106 carries its interval."""
    error = error_for_code(" e106 ", "You can call API every 3 seconds")
    assert isinstance(error, CallIntervalError)
    assert error.code == "E106"
    assert error.retry_after == 3.0
    assert describe_code("E113").startswith("Set throughput exceeded")
    assert describe_code("E4242") == ""


def test_errors_pickle_with_their_fields() -> None:
    """Errors survive pickling (e.g. across process pools) with code, info and to."""
    error = pickle.loads(pickle.dumps(error_for_code("E110", "bad", to="1")))
    assert (type(error).__name__, error.code, error.info, error.to) == (
        "RecipientError",
        "E110",
        "bad",
        "1",
    )
    invalid = pickle.loads(pickle.dumps(ValidationError("to", "E110", "bad number")))
    assert (invalid.field, invalid.code) == ("to", "E110")


def test_unknown_code_is_plain_api_error() -> None:
    """An unknown code is neither fatal nor retryable."""
    error = error_for_code("E4242")
    assert type(error) is ApiError
    assert not error.fatal
    assert error.error_class is ErrorClass.UNKNOWN
