"""End to end: bulk send to the emulator, postbacks (duplicated, reordered) to the receiver, report."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from skycore_async import BulkMessage, Recipient, RetryPolicy, SkycoreClient, Throttle
from skycore_async.cli import main
from skycore_async.notifications import Notification
from skycore_async.receiver import RECEIVER_KEY, make_postback_app
from skycore_async.reconcile import Report, reconcile_files
from skycore_async.testing import Emulator, EmulatorSettings, PostbackDialect

EXPECTED_STATE = {"N102": "delivered", "N202": "delivered_as_sms", "E102": "failed"}


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[tuple[str, web.Application]]:
    """A postback receiver on 127.0.0.1 writing tmp_path/notifications.jsonl."""
    app = make_postback_app(out=tmp_path / "notifications.jsonl")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/postbacks", app
    await runner.cleanup()


def recipients(count: int) -> list[Recipient | str]:
    """Distinct numbers; every third one carries a client reference."""
    numbers = [f"1650{n:07d}" for n in range(count)]
    return [
        Recipient(to=t, client_reference=f"ref-{i}") if i % 3 == 0 else t
        for i, t in enumerate(numbers)
    ]


async def bulk_send(emu: Emulator, results: Path, count: int) -> None:
    """Send to every recipient and write results.jsonl the way the bulk CLI does."""
    message = BulkMessage.saved_mms(mms_id=35674, from_="60856")
    async with SkycoreClient(
        api_key="test-key",
        base_url=emu.url,
        retry=RetryPolicy.testing(),
        throttle=Throttle.testing(),
    ) as client:
        with open(results, "wb") as out:  # noqa: ASYNC230
            async with client.send_bulk(message, recipients(count)) as run:
                async for batch in run:
                    out.write(b"".join(orjson.dumps(o.to_record()) + b"\n" for o in batch.outcomes))


async def run_campaign(
    url: str, tmp_path: Path, dialect: PostbackDialect, count: int, **options: Any
) -> Emulator:
    """Run the whole loop against a seeded emulator; return it for its records."""
    settings = EmulatorSettings(
        seed=20240607,
        postback_url=url,
        postback_delay=0.02,
        postback_duplicates=0.3,
        postback_reorder=True,
        delivery_failure_rate=0.1,
        sms_fallback_rate=0.1,
        postback_dialect=dialect,
        **options,
    )
    async with Emulator(settings) as emu:
        emu.add_template(35674)
        await bulk_send(emu, tmp_path / "results.jsonl", count)
        async with asyncio.timeout(10):
            await emu.wait_for_postbacks()
    return emu


def expected_states(sent: list[Notification]) -> dict[str, str]:
    """Final state per tracking id, from what the emulator says it posted."""
    finals = {n.tracking_id: n.code for n in sent if n.code != "N101"}
    return {
        tracking_id: EXPECTED_STATE[code] for tracking_id, code in finals.items() if tracking_id
    }


def check_report(report: Report, emu: Emulator, count: int) -> None:
    """Every recipient has the emulator's final state, counted once."""
    expected = expected_states(emu.postbacks_sent)
    assert emu.postback_failures == 0
    assert len(report.rows) == count == len(expected)
    assert {row.tracking_id: row.state for row in report.rows} == expected
    assert all(row.send_status == "sent" and row.notifications == 2 for row in report.rows)
    (campaign,) = report.campaigns
    assert campaign.accepted == count
    assert dict(Counter(expected.values())) == {s: n for s, n in campaign.states.items() if n}
    assert campaign.failure_reasons == {
        "E102 Message Sent/Rejected: Recipient blocked by mobile operator": campaign.states[
            "failed"
        ]
    }
    assert (report.notifications, report.unmatched, report.problems) == (2 * count, 0, ())


@pytest.mark.parametrize(
    ("dialect", "count"), [("skycore", 200), ("hyphenated", 60), ("legacy", 60)]
)
async def test_every_recipient_gets_the_right_final_state(
    receiver: tuple[str, web.Application], tmp_path: Path, dialect: PostbackDialect, count: int
) -> None:
    """The report matches the emulator's own record of what it posted, with no double counts."""
    url, app = receiver
    emu = await run_campaign(url, tmp_path, dialect, count)
    distinct = {n.dedupe_key() for n in emu.postbacks_sent}
    assert len(distinct) == 2 * count < len(emu.postbacks_sent)  # there were duplicates
    stats = app[RECEIVER_KEY].stats
    assert (stats.accepted, stats.duplicates) == (
        len(distinct),
        len(emu.postbacks_sent) - len(distinct),
    )
    lines = (tmp_path / "notifications.jsonl").read_bytes().splitlines()
    assert len(lines) == len(distinct)
    report = reconcile_files([tmp_path / "results.jsonl"], [tmp_path / "notifications.jsonl"])
    check_report(report, emu, count)
    assert report.duplicates == 0  # the receiver dropped them all already
    finals = Counter(n.code for n in emu.postbacks_sent if n.code != "N101")
    assert finals.keys() == {"N102", "N202", "E102"}  # every path was exercised


async def test_report_command_on_the_campaign(
    receiver: tuple[str, web.Application], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`skycore-async report` prints the counts and writes the per-recipient table."""
    url, _app = receiver
    emu = await run_campaign(url, tmp_path, "skycore", 60)
    expected = Counter(expected_states(emu.postbacks_sent).values())
    table = tmp_path / "table.jsonl"
    argv = ["report", "--results", str(tmp_path / "results.jsonl")]
    argv += ["--postbacks", str(tmp_path / "notifications.jsonl"), "--jsonl", str(table)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{tmp_path / 'results.jsonl'}: 60 recipients" in printed
    counts = dict(line.split(maxsplit=1)[::-1] for line in printed.splitlines()[1:8])
    assert counts == {
        "accepted": "60",
        "delivered": str(expected["delivered"]),
        "delivered as SMS link": str(expected["delivered_as_sms"]),
        "failed": str(expected["failed"]),
        "E102 Message Sent/Rejected: Recipient blocked by mobile operator": str(expected["failed"]),
        "sending (no receipt yet)": "0",
        "no report yet": "0",
    }
    rows = [orjson.loads(line) for line in table.read_bytes().splitlines()]
    assert Counter(row["state"] for row in rows) == expected


async def test_unknown_sends_are_resolved_by_client_reference(
    receiver: tuple[str, web.Application], tmp_path: Path
) -> None:
    """Sends whose answer was lost are `unknown`; postbacks with their client reference settle them."""
    url, _app = receiver
    emu = await run_campaign(url, tmp_path, "skycore", 60, drop_after_accept=0.1)
    report = reconcile_files([tmp_path / "results.jsonl"], [tmp_path / "notifications.jsonl"])
    unknown = [row for row in report.rows if row.send_status == "unknown"]
    assert unknown  # the seed drops some answers
    by_reference = {s.client_reference: s.tracking_id for s in emu.accepted}
    expected = expected_states(emu.postbacks_sent)
    for row in unknown:
        if row.client_reference is None:
            assert row.state == "send_unknown"
        else:
            assert row.state == expected[by_reference[row.client_reference]]
    assert report.unmatched == sum(1 for row in unknown if row.client_reference is None)
