"""The bulk engine through the public API: batches, failures as values, backpressure, resume."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from skycore_async import (
    AuthenticationError,
    BulkMessage,
    Outcome,
    Progress,
    Recipient,
    ResultBatch,
    RetryPolicy,
    RowError,
    SkycoreClient,
    Throttle,
)
from skycore_async.testing import Emulator

API_KEY = "test-key"
MESSAGE = BulkMessage.saved_mms(mms_id=35674, from_="60856")


def numbers(count: int, start: int = 0) -> list[str]:
    """Distinct valid numbers."""
    return [f"1650{n:07d}" for n in range(start, start + count)]


def make_client(emulator: Emulator, **kwargs: Any) -> SkycoreClient:
    """A test-mode client against the emulator."""
    options: dict[str, Any] = {
        "api_key": API_KEY,
        "base_url": emulator.url,
        "retry": RetryPolicy.testing(),
        "throttle": Throttle.testing(),
    }
    options.update(kwargs)
    return SkycoreClient(**options)


async def collect(client: SkycoreClient, recipients: Any, **kwargs: Any) -> list[ResultBatch]:
    """Run a bulk send to the end and return its batches."""
    async with client.send_bulk(MESSAGE, recipients, **kwargs) as run:
        return [batch async for batch in run]


def outcomes(batches: list[ResultBatch]) -> list[Outcome]:
    """All outcomes of some batches."""
    return [outcome for batch in batches for outcome in batch.outcomes]


async def test_every_recipient_gets_one_outcome_in_batches(
    client: SkycoreClient, emulator: Emulator
) -> None:
    """Each input index gets exactly one outcome; sent ones carry the emulator's tracking id."""
    batches = await collect(client, numbers(230), batch_size=50)
    got = outcomes(batches)
    assert sorted(o.index for o in got) == list(range(230))
    assert all(o.status == "sent" for o in got)
    assert all(len(b) <= 50 for b in batches)
    assert [b.number for b in batches] == list(range(len(batches)))
    tracking = {a.to: a.tracking_id for a in emulator.accepted}
    assert all(tracking[o.to] == o.tracking_id for o in got)
    assert emulator.duplicate_recipients() == {}


async def test_recipients_carry_personalisation(client: SkycoreClient, emulator: Emulator) -> None:
    """Recipient data, custom text and client references reach the server per recipient."""
    recipients = [
        Recipient(to="+1 650 000 0001", data={"first_name": "Ann"}, client_reference="r-1"),
        Recipient(
            to="16500000002", custom_text="Hi Bob", custom_subject="For Bob", client_reference="r-2"
        ),
        "16500000003",
    ]
    got = outcomes(await collect(client, recipients))
    assert {o.client_reference for o in got} == {"r-1", "r-2", None}
    assert {a.client_reference for a in emulator.accepted} == {"r-1", "r-2", None}
    assert all(o.status == "sent" for o in got)


async def test_bad_rows_invalid_numbers_and_duplicates_are_values(
    client: SkycoreClient, emulator: Emulator
) -> None:
    """Invalid numbers fail with E110, unreadable rows with ROW, duplicates are skipped; none crash."""
    recipients: list[Any] = [
        "16501234567",
        "12",
        RowError(line=3, reason="bad"),
        "+1 650 123 4567",
        "16501234568",
    ]
    got = {o.index: o for o in outcomes(await collect(client, recipients))}
    assert [got[i].status for i in range(5)] == ["sent", "failed", "failed", "skipped", "sent"]
    assert got[1].error_code == "E110"
    assert got[2].error_code == "ROW"
    assert got[3].error_code == "DUPLICATE"
    assert sorted(a.to for a in emulator.accepted) == ["16501234567", "16501234568"]


async def test_dedupe_can_be_turned_off(client: SkycoreClient, emulator: Emulator) -> None:
    """With dedupe=False a number listed twice is sent twice."""
    await collect(client, ["16501234567", "16501234567"], dedupe=False)
    assert emulator.duplicate_recipients() == {"16501234567": 2}


async def test_per_recipient_server_failures_are_values(
    client: SkycoreClient, emulator: Emulator
) -> None:
    """A blacklisted number is a failed outcome with E114; the run goes on."""
    emulator.settings.blacklist.add("16500000001")
    got = {o.to: o for o in outcomes(await collect(client, numbers(3)))}
    assert got["16500000001"].status == "failed"
    assert got["16500000001"].error_code == "E114"
    assert [got[n].status for n in ("16500000000", "16500000002")] == ["sent", "sent"]


async def test_ambiguous_failures_are_unknown(client: SkycoreClient, emulator: Emulator) -> None:
    """A dropped answer after accept is `unknown`, sent once, never retried."""
    emulator.settings.drop_after_accept = 1.0
    got = outcomes(await collect(client, numbers(5)))
    assert {o.status for o in got} == {"unknown"}
    assert {o.error_code for o in got} == {"CONNECTION_LOST"}
    assert len(emulator.accepted) == 5
    assert emulator.duplicate_recipients() == {}


async def test_fatal_error_stops_the_run_and_leaves_refused_recipients_for_resume(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A wrong key stops the run and raises; refused recipients are not final: resume sends them."""
    journal = tmp_path / "j"

    async def consume(client: SkycoreClient, *, resume: bool) -> list[Outcome]:
        seen: list[Outcome] = []
        async with client.send_bulk(MESSAGE, numbers(1000), journal=journal, resume=resume) as run:
            async for batch in run:
                seen.extend(batch.outcomes)
        return seen

    async with make_client(emulator, api_key="bad-key") as client:
        with pytest.raises(AuthenticationError):
            await consume(client, resume=False)
    assert emulator.accepted == []
    async with make_client(emulator) as client:
        seen = await consume(client, resume=True)
    assert sorted(o.index for o in seen) == list(range(1000))
    assert {o.status for o in seen} == {"sent"}
    assert len(emulator.accepted) == 1000
    assert emulator.duplicate_recipients() == {}


async def test_backpressure_bounds_how_far_input_is_read(emulator: Emulator) -> None:
    """With a slow server the producer reads at most queue + workers ahead of completions."""
    emulator.settings.latency = 0.02
    read = 0

    def source() -> Iterator[str]:
        nonlocal read
        for number in numbers(5000):
            read += 1
            yield number

    client = make_client(emulator)
    async with client, client.send_bulk(MESSAGE, source(), concurrency=4, batch_size=10) as run:
        async for _batch in run:
            done = run.progress.done
            assert read <= done + 2 * 4 + 4 + 10 + 1
            if done >= 100:
                break
    assert read < 200


async def test_progress_snapshots(client: SkycoreClient) -> None:
    """The hook receives frozen snapshots; the last one accounts for every recipient."""
    snapshots: list[Progress] = []
    await collect(client, numbers(120), on_progress=snapshots.append, progress_interval=0.01)
    assert snapshots
    last = snapshots[-1]
    assert (last.done, last.sent, last.total, last.in_flight) == (120, 120, 120, 0)
    assert last.fraction == 1.0


def journal_lines(path: Path) -> list[dict[str, Any]]:
    """The parsed lines of a journal."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_resume_after_leaving_early_sends_everyone_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Stop after the first batch, resume: every recipient is sent exactly once overall."""
    emulator.settings.latency_jitter = 0.01  # completions arrive out of order
    journal = tmp_path / "run.journal"
    first: list[Outcome] = []
    async with make_client(emulator) as client:
        async with client.send_bulk(MESSAGE, numbers(400), journal=journal, batch_size=20) as run:
            async for batch in run:
                first.extend(batch.outcomes)
                break
        assert 0 < len(emulator.accepted) < 400
        second = outcomes(
            await collect(client, numbers(400), journal=journal, resume=True, batch_size=20)
        )
    assert emulator.duplicate_recipients() == {}
    assert len(emulator.accepted) == 400
    delivered = Counter(o.index for o in first + second)
    assert set(delivered) == set(range(400))
    # Outcomes delivered before the stop are not delivered again.
    assert all(delivered[o.index] == 1 for o in first)


async def test_claimed_but_unfinished_recipients_are_unknown_on_resume(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A claim with no completion (a crash mid-request) is reported unknown, not resent."""
    journal = tmp_path / "crash.journal"
    header = {"t": "h", "v": 1, "action": "sendSavedMMS", "mms_id": "35674", "from": "60856"}
    lines = [
        header,
        {"t": "c", "i": 0, "to": "16500000000"},
        {"t": "c", "i": 1, "to": "16500000001"},
    ]
    lines.append(
        {
            "t": "d",
            "index": 1,
            "to": "16500000001",
            "status": "sent",
            "tracking_id": "T1",
            "attempts": 1,
        }
    )
    journal.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines) + b'{"t":"c","i":2')
    async with make_client(emulator) as client:
        got = {
            o.index: o
            for o in outcomes(await collect(client, numbers(3), journal=journal, resume=True))
        }
    assert got[0].status == "unknown"
    assert got[0].error_code == "INTERRUPTED"
    assert got[1].tracking_id == "T1"  # completed but never acknowledged: replayed
    assert got[2].status == "sent"  # the torn claim never reached the kernel whole
    assert [a.to for a in emulator.accepted] == ["16500000002"]


async def test_resend_unknown_opt_in(emulator: Emulator, tmp_path: Path) -> None:
    """resend_unknown=True sends in-doubt recipients again (at-least-once)."""
    journal = tmp_path / "crash.journal"
    header = {"t": "h", "v": 1, "action": "sendSavedMMS", "mms_id": "35674", "from": "60856"}
    lines = [header, {"t": "c", "i": 0, "to": "16500000000"}]
    journal.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    async with make_client(emulator) as client:
        got = outcomes(
            await collect(client, numbers(1), journal=journal, resume=True, resend_unknown=True)
        )
    assert [o.status for o in got] == ["sent"]


async def test_journal_refuses_a_different_message(emulator: Emulator, tmp_path: Path) -> None:
    """Resuming with another template id is refused; a fresh run refuses to overwrite."""
    journal = tmp_path / "j"
    async with make_client(emulator) as client:
        await collect(client, numbers(2), journal=journal)
        other = BulkMessage.saved_mms(mms_id=1, from_="60856")
        with pytest.raises(ValueError, match="mms_id"):
            async with client.send_bulk(other, numbers(2), journal=journal, resume=True):
                pass
        with pytest.raises(FileExistsError):
            async with client.send_bulk(MESSAGE, numbers(2), journal=journal):
                pass


async def test_journal_writes_claim_before_done(client: SkycoreClient, tmp_path: Path) -> None:
    """Every done-line follows its claim; acks count delivered outcomes."""
    journal = tmp_path / "j"
    await collect(client, numbers(30), journal=journal, batch_size=7)
    claimed: set[int] = set()
    done = 0
    for line in journal_lines(journal):
        if line["t"] == "c":
            claimed.add(line["i"])
        elif line["t"] == "d":
            assert line["o"][0] in claimed  # the outcome's fields, index first
            done += 1
        elif line["t"] == "a":
            assert line["n"] <= done
    assert done == 30
    assert journal_lines(journal)[-1] == {"t": "a", "n": 30}


async def test_stop_ends_iteration_and_is_resumable(emulator: Emulator, tmp_path: Path) -> None:
    """run.stop() finishes in-flight sends; a resume completes the rest exactly once."""
    journal = tmp_path / "j"
    async with make_client(emulator) as client:
        async with client.send_bulk(MESSAGE, numbers(300), journal=journal, batch_size=10) as run:
            async for _batch in run:
                run.stop()
        assert run.finished
        await collect(client, numbers(300), journal=journal, resume=True)
    assert len(emulator.accepted) == 300
    assert emulator.duplicate_recipients() == {}


async def test_async_iterable_input(client: SkycoreClient, emulator: Emulator) -> None:
    """Recipients may come from an async generator."""

    async def source() -> Any:
        for number in numbers(25):
            await asyncio.sleep(0)
            yield number

    got = outcomes(await collect(client, source()))
    assert len(got) == 25
    assert len(emulator.accepted) == 25


def test_bulk_message_rejects_unknown_fields() -> None:
    """Shared fields are checked against sendSavedMMS's keywords."""
    with pytest.raises(TypeError, match="colour"):
        BulkMessage.saved_mms(mms_id=1, from_="1", colour="red")
    with pytest.raises(TypeError, match="per recipient"):
        BulkMessage.saved_mms(mms_id=1, from_="1", to="1")
