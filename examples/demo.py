"""The demo campaign: a bulk send to the embedded emulator, with progress and a results file.

Run with ``make demo`` (or ``python examples/demo.py --out demo-out``). No account and no
network: the emulator listens on 127.0.0.1 only.

What it shows, all through the public API:
1. save an MMS template (``save_mms``), as you would before a campaign;
2. stream a generated list of recipients (with a few bad rows and duplicates, as real lists
   have) through ``send_bulk`` at a paced rate, with a progress bar and a write-ahead journal;
3. write one JSON line per recipient to ``results.jsonl`` and print a summary;
4. receive the emulator's delivery postbacks (with duplicates and reordering, as Skycore's
   retries produce) in the postback receiver, then print the delivery report that joins them
   to the results.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path

import orjson
from aiohttp.test_utils import TestServer

from skycore_async import BulkMessage, Limits, Recipient, SkycoreClient, Slide
from skycore_async.bulkcli import ProgressPrinter
from skycore_async.receiver import make_postback_app
from skycore_async.reconcile import reconcile_files, render_text
from skycore_async.testing import Emulator, EmulatorSettings


def recipients(count: int) -> list[Recipient | str]:
    """A generated list: mostly good numbers in assorted formats, a few bad ones and repeats."""
    people: list[Recipient | str] = []
    for n in range(count):
        number = f"+1 (650) {n // 10000:03d}-{n % 10000:04d}"
        people.append(
            Recipient(to=number, data={"first_name": f"Friend{n}"}) if n % 5 == 0 else number
        )
    people += ["12345", "not a number", f"+1 (650) 000-{1:04d}"]  # invalid, invalid, duplicate
    return people


async def main(out: Path, count: int, rate: float) -> int:
    out.mkdir(parents=True, exist_ok=True)
    results, journal = out / "results.jsonl", out / "results.jsonl.journal"
    notifications = out / "notifications.jsonl"
    for stale in (results, journal, notifications):
        stale.unlink(missing_ok=True)
    receiver = TestServer(make_postback_app(out=notifications), host="127.0.0.1")
    await receiver.start_server()
    settings = EmulatorSettings(
        seed=1, latency=0.002, latency_jitter=0.004, error_rates={"E503": 0.01},
        postback_url=str(receiver.make_url("/postbacks")), postback_delay=0.5,
        postback_duplicates=0.2, postback_reorder=True,
        delivery_failure_rate=0.03, sms_fallback_rate=0.1,
    )  # fmt: skip
    async with Emulator(settings) as emulator:
        print(f"emulator: {emulator.url}", file=sys.stderr)
        statuses, first_ids = await campaign(emulator, results, journal, count, rate)
        accepted = len(emulator.accepted)
        print("waiting for the delivery postbacks...", file=sys.stderr)
        await emulator.wait_for_postbacks()
    await receiver.close()
    print(f"first tracking ids: {', '.join(first_ids)}")
    print(f"outcomes: {dict(statuses)}; the emulator accepted {accepted} sends")
    print(f"results file: {results} ({sum(statuses.values())} lines); journal: {journal}")
    print(f"\ndelivery report (postbacks stored in {notifications}):")
    print(render_text(reconcile_files([results], [notifications])))
    return 0


async def campaign(
    emulator: Emulator, results: Path, journal: Path, count: int, rate: float
) -> tuple[Counter[str], list[str]]:
    """Save a template, then send it to every recipient; write results.jsonl as it goes."""
    limits = Limits(rate=rate, concurrency=32)
    async with SkycoreClient(api_key="test-key", base_url=emulator.url, limits=limits) as client:
        template = await client.save_mms(
            name="demo", subject="Spring sale",
            slides=[Slide(text="Hello {$first_name|there}, 20% off this week!",
                          image="https://example.com/sale.png")],
        )  # fmt: skip
        print(f"saved template {template.mms_id}; sending to {count + 3} recipients "
              f"at {rate:.0f}/s", file=sys.stderr)  # fmt: skip
        message = BulkMessage.saved_mms(mms_id=template.mms_id, from_="60856")
        printer = ProgressPrinter(sys.stderr)
        statuses: Counter[str] = Counter()
        first_ids: list[str] = []
        with open(results, "wb") as handle:
            run = client.send_bulk(message, recipients(count), journal=journal,
                                   on_progress=printer.show, progress_interval=0.2)  # fmt: skip
            async with run:
                async for batch in run:
                    handle.write(
                        b"".join(orjson.dumps(o.to_record()) + b"\n" for o in batch.outcomes)
                    )
                    statuses.update(o.status for o in batch.outcomes)
                    first_ids += [o.tracking_id for o in batch.outcomes if o.tracking_id][
                        : 5 - len(first_ids)
                    ]
        printer.finish(run.progress)
    return statuses, first_ids


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=500.0, help="calls per second")
    options = parser.parse_args()
    raise SystemExit(asyncio.run(main(options.out, options.count, options.rate)))
