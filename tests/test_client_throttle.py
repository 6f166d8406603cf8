"""Throttle and retry through the public client, against the emulator on 127.0.0.1.

Behaviour only (who waits, what is resent, what the hooks see); no assertion on speed. Real
waits are kept to a few tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import attrs
import pytest

from skycore_async import (
    BulkMessage,
    ConnectionLostError,
    HttpRequest,
    HttpResponse,
    Limits,
    QuotaExceededError,
    RetryEvent,
    RetryPolicy,
    SendResult,
    ServerError,
    SkycoreClient,
    ThrottleEvent,
)
from skycore_async.config import WAIT_INITIAL, WAIT_JITTER
from skycore_async.testing import Emulator, EmulatorSettings
from skycore_async.transport import AiohttpTransport

API_KEY = "test-key"
ACTION = "sendSavedMMS"
SECRET = "sk-live-7f3a9c1e5b"


@pytest.fixture
def settings() -> EmulatorSettings:
    """The shared emulator settings (seeded) plus a distinctive key, easy to spot in logs."""
    return EmulatorSettings(seed=1234, api_keys={API_KEY, SECRET})


class RecordingTransport:
    """The aiohttp transport, recording each attempt's (start, end) and the peak in flight."""

    def __init__(self) -> None:
        self._inner = AiohttpTransport(pool_size=64)
        self.attempts: list[tuple[float, float]] = []
        self.in_flight = 0
        self.peak = 0

    async def send(
        self, request: HttpRequest, *, connect_timeout: float, read_timeout: float
    ) -> HttpResponse:
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await self._inner.send(
                request, connect_timeout=connect_timeout, read_timeout=read_timeout
            )
        finally:
            self.in_flight -= 1
            self.attempts.append((start, loop.time()))

    async def aclose(self) -> None:
        await self._inner.aclose()


@attrs.define
class Hooks:
    """Collects hook events, each with the loop time at which it was delivered."""

    throttles: list[tuple[float, ThrottleEvent]] = attrs.Factory(list)
    retries: list[RetryEvent] = attrs.Factory(list)
    also: Callable[[ThrottleEvent], None] | None = None

    def on_throttle(self, event: ThrottleEvent) -> None:
        self.throttles.append((asyncio.get_running_loop().time(), event))
        if self.also is not None:
            self.also(event)

    def on_retry(self, event: RetryEvent) -> None:
        self.retries.append(event)


def make_client(
    emulator: Emulator,
    *,
    limits: Limits | None = None,
    retry: RetryPolicy | None = None,
    hooks: Hooks | None = None,
    **kwargs: Any,
) -> SkycoreClient:
    """A client with a real (pacing) throttle and zero-wait error retries by default."""
    hooks = hooks or Hooks()
    return SkycoreClient(
        api_key=kwargs.pop("api_key", API_KEY),
        base_url=emulator.url,
        limits=limits or Limits(),
        retry=retry or RetryPolicy.testing(),
        on_throttle=hooks.on_throttle,
        on_retry=hooks.on_retry,
        **kwargs,
    )


def send(client: SkycoreClient, n: int) -> Coroutine[Any, Any, SendResult]:
    """One sendSavedMMS to the n-th test number."""
    return client.send_saved_mms(to=f"1650555{n:04d}", mms_id=35674, from_="60856")


async def send_all(client: SkycoreClient, count: int) -> list[SendResult]:
    """``count`` concurrent sends to distinct numbers."""
    return await asyncio.gather(*(send(client, n) for n in range(count)))


# ---------------------------------------------------------------------- E106


async def test_e106_pauses_every_sender_then_resends(emulator: Emulator) -> None:
    """After the first E106 no sender sends before the pause ends; every call then succeeds."""
    emulator.settings.min_interval = 0.05
    hooks, transport = Hooks(), RecordingTransport()
    client = make_client(emulator, limits=Limits(concurrency=10), hooks=hooks, transport=transport)
    async with client:
        results = await send_all(client, 10)
    first_seen, first = hooks.throttles[0]
    resumed = [start for start, _end in transport.attempts if start > first_seen]
    assert resumed
    assert min(resumed) >= first_seen + first.wait
    assert len(emulator.accepted) == 10
    assert emulator.duplicate_recipients() == {}
    assert max(result.attempts for result in results) > 1
    assert client.throttle.stats.throttled == emulator.answers["E106"] >= 1
    assert client.throttle.stats.min_interval == pytest.approx(0.05)


async def test_e106_hooks_get_frozen_snapshots(emulator: Emulator) -> None:
    """on_throttle gets code E106 with the parsed wait; on_retry gets kind "throttle"."""
    emulator.settings.min_interval = 0.05
    hooks = Hooks()
    async with make_client(emulator, limits=Limits(concurrency=2), hooks=hooks) as client:
        await send_all(client, 2)
    _at, event = hooks.throttles[0]
    assert (event.code, event.action) == ("E106", ACTION)
    assert event.wait == pytest.approx(0.05)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.wait = 0.0  # type: ignore[misc]
    assert hooks.retries
    assert {(r.kind, r.code) for r in hooks.retries} == {("throttle", "E106")}
    assert client.throttle.stats.retried == len(hooks.retries)


async def test_throttle_retries_do_not_use_the_error_budget(emulator: Emulator) -> None:
    """With attempts=1 (no error retries) a call answered E106 is still resent and succeeds."""
    emulator.settings.min_interval = 0.05
    retry = RetryPolicy.testing(attempts=1)
    async with make_client(emulator, limits=Limits(concurrency=3), retry=retry) as client:
        results = await send_all(client, 3)
    assert max(result.attempts for result in results) >= 2
    assert len(emulator.accepted) == 3


# ---------------------------------------------------------------------- E113


async def test_e113_cuts_the_rate_and_every_call_is_accepted_once(emulator: Emulator) -> None:
    """E113 cuts the action's rate below the configured one; all calls land, none twice."""
    emulator.settings.throughput = {ACTION: 40}
    hooks = Hooks()
    limits = Limits(rate=200, concurrency=8, e113_pause=0.02)
    retry = RetryPolicy.testing(throttle_attempts=100)
    async with make_client(emulator, limits=limits, retry=retry, hooks=hooks) as client:
        await send_all(client, 30)
        rate = client.throttle.current_rate(ACTION)
    assert rate is not None
    assert rate < 200
    assert hooks.throttles
    assert {event.code for _at, event in hooks.throttles} == {"E113"}
    assert all((event.rate or 200) < 200 for _at, event in hooks.throttles)
    assert {r.kind for r in hooks.retries} == {"throttle"}
    assert len(emulator.accepted) == 30
    assert emulator.duplicate_recipients() == {}
    assert client.throttle.stats.throttled == emulator.answers["E113"]


async def test_bulk_run_shares_the_throttle(emulator: Emulator) -> None:
    """A bulk run goes through the same throttle: E113s are absorbed, no recipient twice."""
    emulator.settings.throughput = {ACTION: 40}
    limits = Limits(rate=200, concurrency=8, e113_pause=0.02)
    retry = RetryPolicy.testing(throttle_attempts=100)
    message = BulkMessage.saved_mms(mms_id=35674, from_="60856")
    numbers = [f"1650777{n:04d}" for n in range(30)]
    async with make_client(emulator, limits=limits, retry=retry) as client:
        async with client.send_bulk(message, numbers) as run:
            statuses = [o.status async for batch in run for o in batch.outcomes]
        stats = client.throttle.stats
    assert statuses == ["sent"] * 30
    assert stats.throttled == emulator.answers["E113"] > 0
    assert stats.sent == 30
    assert emulator.duplicate_recipients() == {}


# ---------------------------------------------------------------------- E120


async def test_e120_is_fatal_and_not_retried_by_default(emulator: Emulator) -> None:
    """Once the quota is spent, QuotaExceededError (fatal) is raised without a resend."""
    emulator.settings.quota = 1
    hooks = Hooks()
    async with make_client(emulator, hooks=hooks) as client:
        await send(client, 0)
        with pytest.raises(QuotaExceededError) as caught:
            await send(client, 1)
    assert caught.value.fatal
    assert caught.value.attempts == 1
    assert hooks.retries == []
    assert [event.wait for _at, event in hooks.throttles] == [0.0]
    assert emulator.answers["E120"] == 1


async def test_e120_cooldown_pauses_everyone_then_retries_once(emulator: Emulator) -> None:
    """With quota_cooldown, every sender waits it out, then each call is retried once."""
    emulator.settings.quota = 1
    hooks, transport = Hooks(), RecordingTransport()
    limits = Limits(concurrency=4, quota_cooldown=0.05)
    client = make_client(emulator, limits=limits, hooks=hooks, transport=transport)
    async with client:
        outcomes = await asyncio.gather(
            *(send(client, n) for n in range(4)), return_exceptions=True
        )
    errors = [o for o in outcomes if isinstance(o, QuotaExceededError)]
    assert len(errors) == 3
    assert all(error.attempts == 2 for error in errors)
    first_seen, first = hooks.throttles[0]
    assert first.code == "E120"
    assert first.wait == pytest.approx(0.05)
    resumed = [start for start, _end in transport.attempts if start > first_seen]
    assert len(resumed) == 3
    assert min(resumed) >= first_seen + first.wait
    assert [(r.kind, r.code) for r in hooks.retries] == [("throttle", "E120")] * 3


async def test_e120_cooldown_retry_succeeds_when_the_quota_returns(emulator: Emulator) -> None:
    """If the quota window reopens during the cool-down, the one retry succeeds."""
    emulator.settings.quota = 1

    def reopen(_event: ThrottleEvent) -> None:
        emulator.settings.quota = None

    hooks = Hooks(also=reopen)
    limits = Limits(quota_cooldown=0.05)
    async with make_client(emulator, limits=limits, hooks=hooks) as client:
        await send(client, 0)
        result = await send(client, 1)
    assert result.attempts == 2
    assert len(emulator.accepted) == 2


# ---------------------------------------------------------------------- errors


async def test_transient_e503_is_retried_attempts_times(emulator: Emulator) -> None:
    """E503 on every answer: `attempts` tries, each resend reported with kind "error"."""
    emulator.settings.error_rates = {"E503": 1.0}
    hooks = Hooks()
    async with make_client(emulator, retry=RetryPolicy.testing(attempts=4), hooks=hooks) as client:
        with pytest.raises(ServerError) as caught:
            await send(client, 0)
    assert caught.value.attempts == 4
    assert emulator.answers["E503"] == 4
    assert [(r.kind, r.code, r.attempt) for r in hooks.retries] == [
        ("error", "E503", 1),
        ("error", "E503", 2),
        ("error", "E503", 3),
    ]
    assert hooks.throttles == []


async def test_ambiguous_drop_is_never_retried_by_default(emulator: Emulator) -> None:
    """A drop after accept is ConnectionLostError with one attempt and no retry event."""
    emulator.settings.drop_after_accept = 1.0
    hooks = Hooks()
    async with make_client(emulator, retry=RetryPolicy.testing(attempts=5), hooks=hooks) as client:
        with pytest.raises(ConnectionLostError) as caught:
            await send(client, 0)
        retried = client.throttle.stats.retried
    assert caught.value.ambiguous
    assert caught.value.attempts == 1
    assert hooks.retries == []
    assert retried == 0
    assert emulator.duplicate_recipients() == {}
    assert len(emulator.accepted) == 1


# ---------------------------------------------------------------------- settings


async def test_constructor_defaults(emulator: Emulator) -> None:
    """With no settings: Limits() and the default policy (a real backoff before the resend)."""
    emulator.settings.error_rates = {"E503": 1.0}
    first: asyncio.Future[RetryEvent] = asyncio.get_running_loop().create_future()
    client = SkycoreClient(api_key=API_KEY, base_url=emulator.url, on_retry=first.set_result)
    async with client:
        task = asyncio.create_task(send(client, 0))
        event = await first
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert client.limits == Limits()
    assert client.throttle.current_rate(ACTION) is None
    assert (event.kind, event.code, event.attempt) == ("error", "E503", 1)
    assert WAIT_INITIAL <= event.wait <= WAIT_INITIAL + WAIT_JITTER


async def test_client_wide_settings_and_per_call_override(emulator: Emulator) -> None:
    """Client-wide Limits/RetryPolicy apply to every call; with_options overrides one view."""
    emulator.settings.error_rates = {"E503": 1.0}
    limits = Limits(rate=500, concurrency=4)
    async with make_client(
        emulator, limits=limits, retry=RetryPolicy.testing(attempts=2)
    ) as client:
        assert client.limits is limits
        assert client.throttle.current_rate(ACTION) == 500
        with pytest.raises(ServerError) as client_wide:
            await send(client, 0)
        patient = client.with_options(retry=RetryPolicy.testing(attempts=5))
        assert patient.throttle is client.throttle
        with pytest.raises(ServerError) as per_call:
            await send(patient, 1)
        with pytest.raises(ServerError) as unchanged:
            await send(client, 2)
    assert (client_wide.value.attempts, per_call.value.attempts) == (2, 5)
    assert unchanged.value.attempts == 2
    assert emulator.answers["E503"] == 2 + 5 + 2


async def test_per_call_retry_ambiguous_opt_in(emulator: Emulator) -> None:
    """retry_ambiguous=True on a per-call view resends a dropped call; the client does not."""
    emulator.settings.drop_after_accept = 1.0
    async with make_client(emulator) as client:
        opted_in = client.with_options(retry=RetryPolicy.testing(attempts=2, retry_ambiguous=True))
        with pytest.raises(ConnectionLostError) as caught:
            await send(opted_in, 0)
        with pytest.raises(ConnectionLostError) as default:
            await send(client, 1)
    assert (caught.value.attempts, default.value.attempts) == (2, 1)


# ---------------------------------------------------------------------- concurrency


async def test_concurrency_cap_is_separate_from_the_rate(emulator: Emulator) -> None:
    """Limits(concurrency=3) with no rate: never more than 3 requests in flight, and 3 reached."""
    emulator.settings.latency = 0.03
    transport = RecordingTransport()
    client = make_client(emulator, limits=Limits(concurrency=3), transport=transport)
    in_flight: list[int] = []

    async def sample() -> None:
        while True:
            in_flight.append(client.throttle.stats.in_flight)
            await asyncio.sleep(0.005)

    async with client:
        sampler = asyncio.create_task(sample())
        await send_all(client, 12)
        sampler.cancel()
    assert client.throttle.current_rate(ACTION) is None
    assert transport.peak == 3
    assert max(in_flight) == 3
    assert len(emulator.accepted) == 12


# ---------------------------------------------------------------------- logging


async def test_throttle_debug_logs_never_show_the_key(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Every throttle and retry decision logs at DEBUG, and no line carries the API key."""
    caplog.set_level(logging.DEBUG, logger="skycore_async")
    emulator.settings.min_interval = 0.02
    emulator.settings.throughput = {ACTION: 50}
    limits = Limits(concurrency=4, quota_cooldown=0.01, e113_pause=0.01)
    for method in ("xml", "get"):
        async with make_client(emulator, limits=limits, api_key=SECRET, method=method) as client:
            await send_all(client, 4)
            emulator.settings.quota, emulator.settings.min_interval = 0, None
            with pytest.raises(QuotaExceededError):
                await send(client, 9)
            emulator.settings.quota, emulator.settings.error_rates = None, {"E503": 1.0}
            with pytest.raises(ServerError):
                await send(client, 8)
            emulator.settings.error_rates, emulator.settings.min_interval = {}, 0.02
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("throttle: E106") for m in messages)
    assert any(m.startswith("throttle: E120") for m in messages)
    assert any("E503" in m and "retry" in m for m in messages)
    leaks = [r for r in caplog.records if SECRET in r.getMessage() or SECRET in str(r.args)]
    assert leaks == []
    assert all(SECRET not in (record.exc_text or "") for record in caplog.records)
