"""How to test your own code against the emulator (run with pytest; needs pytest-asyncio).

Copy this pattern into your project's tests: no Skycore account, no network, only 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from skycore_async import RetryPolicy, SkycoreClient, Throttle
from skycore_async.errors import RecipientError
from skycore_async.testing import Emulator, EmulatorSettings


async def notify_customer(client: SkycoreClient, phone: str) -> str:
    """The code under test: your application's function that sends an MMS."""
    result = await client.send_saved_mms(
        to=phone, mms_id=35674, from_="60856", client_reference="order-42"
    )
    return result.tracking_id


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorSettings(seed=1)) as emu:
        emu.add_template(35674)
        yield emu


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[SkycoreClient]:
    # Zero-wait retries and an unpaced throttle keep tests fast.
    options = {"retry": RetryPolicy.testing(), "throttle": Throttle.testing()}
    async with SkycoreClient(api_key="test-key", base_url=emulator.url, **options) as skycore:
        yield skycore


async def test_sends_once_with_reference(client: SkycoreClient, emulator: Emulator) -> None:
    tracking_id = await notify_customer(client, "+1 (650) 123-4123")
    (send,) = emulator.accepted
    assert (send.to, send.client_reference, send.tracking_id) == (
        "16501234123",
        "order-42",
        tracking_id,
    )


async def test_blacklisted_number(client: SkycoreClient, emulator: Emulator) -> None:
    emulator.settings.blacklist.add("16501234123")
    with pytest.raises(RecipientError):
        await notify_customer(client, "16501234123")
