"""Shared fixtures: a live emulator on 127.0.0.1 and a client pointed at it, in test mode."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from skycore_async import RetryPolicy, SkycoreClient, Throttle
from skycore_async.testing import Emulator, EmulatorSettings

API_KEY = "test-key"


@pytest.fixture
def settings() -> EmulatorSettings:
    """Emulator settings a test may adjust before the emulator starts (seeded)."""
    return EmulatorSettings(seed=1234)


@pytest.fixture
async def emulator(settings: EmulatorSettings) -> AsyncIterator[Emulator]:
    """A running emulator on 127.0.0.1 with an ephemeral port and one template (id 35674)."""
    async with Emulator(settings) as emu:
        emu.add_template(35674, subject="Demo")
        yield emu


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[SkycoreClient]:
    """A client against the emulator with zero-wait retries and an unpaced throttle."""
    async with SkycoreClient(
        api_key=API_KEY,
        base_url=emulator.url,
        retry=RetryPolicy.testing(),
        throttle=Throttle.testing(),
    ) as skycore:
        yield skycore


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server on 127.0.0.1 for the whole session; skips, saying why, if none can start."""
    from redis_server import redis_server

    try:
        context = redis_server(tmp_path_factory.mktemp("redis"))
        url = context.__enter__()
    except RuntimeError as error:
        pytest.skip(f"no Redis for the scale-out tests: {error}")
    try:
        yield url
    finally:
        context.__exit__(None, None, None)
