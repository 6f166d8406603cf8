"""skycore-async: asyncio client, bulk engine and emulator for the Skycore MMS API."""
