"""Send one saved MMS and print the tracking id.

Against the real API:   SKYCORE_API_KEY=... python examples/send_one.py 16501234123 35674 60856
Against the emulator:   python examples/send_one.py --emulator
"""

from __future__ import annotations

import asyncio
import os
import sys

from skycore_async import SkycoreClient, SkycoreError
from skycore_async.testing import Emulator


async def send(base_url: str | None, key: str, to: str, mms_id: str, sender: str) -> None:
    options = {"base_url": base_url} if base_url else {}
    async with SkycoreClient(api_key=key, **options) as client:
        try:
            result = await client.send_saved_mms(to=to, mms_id=mms_id, from_=sender)
        except SkycoreError as exc:  # typed: ValidationError, ApiError subclasses, transport...
            print(f"failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        print(f"accepted: tracking id {result.tracking_id} (to {result.to}, from {result.from_})")


async def main(argv: list[str]) -> None:
    if argv[:1] == ["--emulator"]:
        async with Emulator() as emulator:
            emulator.add_template(35674)
            await send(emulator.url, "test-key", "+1 650 123 4123", "35674", "60856")
        return
    to, mms_id, sender = argv
    await send(
        os.environ.get("SKYCORE_BASE_URL"), os.environ["SKYCORE_API_KEY"], to, mms_id, sender
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
