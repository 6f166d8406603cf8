"""A campaign shared through Redis: real redis-server, the emulator in this process, and workers
as real ``python -m skycore_async campaign work`` subprocesses (SIGKILLed, SIGTERMed)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from skycore_async import BulkMessage, Recipient, RowError
from skycore_async.campaign import (
    CampaignError,
    campaign_results,
    campaign_status,
    connect_redis,
    load_campaign,
)
from skycore_async.testing import Emulator, EmulatorSettings

MMS_ID = "35674"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Any]:
    client = connect_redis(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def name() -> str:
    """A fresh campaign name per test (the Redis server is shared by the session)."""
    return f"t-{uuid.uuid4().hex[:8]}"


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"1650{n:07d}" for n in range(start, start + count)]


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("to,first_name\n" + "\n".join(rows) + "\n")
    return path


def env_for(emulator: Emulator, redis_url: str, key: str = "test-key") -> dict[str, str]:
    return {
        **os.environ,
        "SKYCORE_API_KEY": key,
        "SKYCORE_BASE_URL": emulator.url,
        "SKYCORE_REDIS_URL": redis_url,
    }


async def start(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "skycore_async", "campaign", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finish(process: asyncio.subprocess.Process, limit: float = 30) -> tuple[int, str]:
    out, err = await asyncio.wait_for(process.communicate(), limit)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def run(*args: str, env: dict[str, str]) -> tuple[int, str]:
    return await finish(await start(*args, env=env))


async def load(name: str, csv_path: Path, env: dict[str, str], *extra: str) -> str:
    """``campaign load`` of ``csv_path`` (template MMS_ID, sender 60856); must succeed."""
    code, output = await run(
        "load", "--campaign", name, "--recipients", str(csv_path), "--mms-id", MMS_ID,
        "--from", "60856", *extra, env=env,
    )  # fmt: skip
    assert code == 0, output
    return output


def work_args(name: str, *extra: str) -> list[str]:
    return ["work", "--campaign", name, "--poll", "0.1", *extra]


async def wait_until(condition: Any, limit: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def results_of(redis: Any, name: str) -> list[dict[str, Any]]:
    return [orjson.loads(record) async for record in campaign_results(redis, name)]


def check_exactly_once(results: list[dict[str, Any]], emulator: Emulator, total: int) -> None:
    """Every row once; accepted once unless unknown; no unknown the emulator never received."""
    assert sorted(r["index"] for r in results) == list(range(total))
    accepted = emulator.accepted_count_by_recipient()
    assert emulator.duplicate_recipients() == {}
    by_status = Counter(r["status"] for r in results)
    for record in results:
        if record["status"] == "sent":
            assert accepted[record["to"]] == 1, record
        elif record["status"] == "unknown":
            assert accepted[record["to"]] == 1, f"unknown but never received: {record}"
        else:
            assert accepted[record["to"]] == 0 or record["status"] == "skipped", record
    reported = {r["to"] for r in results if r["status"] in ("sent", "unknown")}
    assert set(accepted) == reported, "the emulator accepted a send no result reports"
    assert by_status["sent"] + by_status["unknown"] == len(accepted)


# ---------------------------------------------------------------------- the whole flow


async def test_two_workers_complete_a_campaign_exactly_once(
    tmp_path: Path, redis_url: str, redis: Any, name: str
) -> None:
    """load + 2 worker processes: every recipient accepted once; results once per row; status."""
    good = numbers(200)
    rows = [f"{n},Ann" if i % 2 else f"{n}," for i, n in enumerate(good)]
    rows += [f"{good[3]},dup", f"{good[7]},", "12,short", ",no number", f"+1 (650) {good[9][4:]},"]
    csv_path = write_csv(tmp_path / "list.csv", rows)
    total = len(rows)
    async with Emulator(EmulatorSettings(seed=5, latency=0.005)) as emulator:
        emulator.add_template(MMS_ID)
        env = env_for(emulator, redis_url)
        output = await load(name, csv_path, env, "--chunk", "64")
        assert f"{total} rows" in output, output
        assert "enqueued 200" in output, output
        workers = [await start(*work_args(name, "--concurrency", "4"), env=env) for _ in range(2)]
        for worker in workers:
            code, output = await finish(worker)
            assert code == 0, output
            assert "drained" in output
        out = tmp_path / "results.jsonl"
        (code, output), (status_code, status_text) = await asyncio.gather(
            run("results", "--campaign", name, "--out", str(out), env=env),
            run("status", "--campaign", name, env=env),
        )
        assert code == 0, output
    results = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    check_exactly_once(results, emulator, total)
    statuses = Counter(r["status"] for r in results)
    assert statuses == {"sent": 200, "skipped": 3, "failed": 2}
    assert all(r["tracking_id"] for r in results if r["status"] == "sent")
    failed_codes = sorted(r["error_code"] for r in results if r["status"] == "failed")
    assert len(failed_codes) == 2
    assert failed_codes[1] == "ROW"
    tracking = {a.tracking_id for a in emulator.accepted}
    assert {r["tracking_id"] for r in results if r["status"] == "sent"} == tracking
    assert set(results[0]) == {
        "index", "to", "status", "tracking_id", "error_code", "error_info", "attempts",
        "client_reference",
    }  # fmt: skip
    assert status_code == 0
    assert f"done {total}/{total}" in status_text, status_text
    assert "sent 200, failed 2, unknown 0, skipped 3" in status_text
    assert "workers seen: 2" in status_text
    assert "pending 0" in status_text
    status = await campaign_status(redis, name)
    assert sum(w.counts["sent"] for w in status.workers) == 200
    assert {w.state for w in status.workers} == {"drained"}


async def test_sigkilled_worker_is_taken_over_and_nobody_is_sent_twice(
    tmp_path: Path, redis_url: str, redis: Any, name: str
) -> None:
    """SIGKILL one of two workers with requests in flight: the other takes over after the
    lease; the victim's in-flight recipients become unknown (each one the emulator accepted),
    everyone else is sent exactly once, and no row is missing from the results."""
    total = 240
    csv_path = write_csv(tmp_path / "list.csv", [f"{n}," for n in numbers(total)])
    settings = EmulatorSettings(seed=9, latency=0.05, latency_jitter=0.03)
    async with Emulator(settings) as emulator:
        emulator.add_template(MMS_ID)
        env = env_for(emulator, redis_url)
        await load(name, csv_path, env)
        lease = ("--lease", "1.0")
        victim = await start(*work_args(name, "--concurrency", "8", *lease), env=env)
        await wait_until(lambda: len(emulator.accepted) >= 30)
        survivor = await start(*work_args(name, "--concurrency", "8", *lease), env=env)
        await wait_until(lambda: len(emulator.accepted) >= 60)
        # Answers now take 2 s (the emulator accepts, then waits): within 0.8 s every one of
        # the victim's 8 slots holds a request the emulator has accepted, none is half-sent.
        settings.latency, settings.latency_jitter = 2.0, 0.0
        await asyncio.sleep(0.8)
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        settings.latency = 0.02
        code, output = await finish(survivor)
        assert code == 0, output
    assert victim.returncode == -signal.SIGKILL
    results = await results_of(redis, name)
    check_exactly_once(results, emulator, total)
    unknown = [r for r in results if r["status"] == "unknown"]
    assert 1 <= len(unknown) <= 8, "the victim's in-flight requests must be reported unknown"
    assert {r["error_code"] for r in unknown} == {"INTERRUPTED"}
    status = await campaign_status(redis, name)
    assert status.pending == 0
    assert status.held == 0
    assert status.queued == 0
    assert sum(w.counts["taken_over"] for w in status.workers) >= len(unknown)
    assert status.unknown == len(unknown)


async def test_sigterm_finishes_in_flight_and_hands_back_the_rest(
    tmp_path: Path, redis_url: str, redis: Any, name: str
) -> None:
    """SIGTERM: exit 130 with a message, no unknown; a new worker continues at once (no lease
    wait: the lease here is 60 s) and every recipient is sent exactly once."""
    total = 120
    csv_path = write_csv(tmp_path / "list.csv", [f"{n}," for n in numbers(total)])
    async with Emulator(EmulatorSettings(seed=3, latency=0.05)) as emulator:
        emulator.add_template(MMS_ID)
        env = env_for(emulator, redis_url)
        await load(name, csv_path, env)
        first = await start(*work_args(name, "--concurrency", "4", "--lease", "60"), env=env)
        await wait_until(lambda: len(emulator.accepted) >= 20)
        first.send_signal(signal.SIGTERM)
        code, output = await finish(first)
        assert code == 130, output
        assert "interrupted" in output
        stopped_at = len(emulator.accepted)
        assert stopped_at < total
        loop = asyncio.get_running_loop()
        began = loop.time()
        code, output = await run(*work_args(name, "--concurrency", "8", "--lease", "60"), env=env)
        assert code == 0, output
        assert loop.time() - began < 30, "handed-back entries waited for the lease"
    results = await results_of(redis, name)
    check_exactly_once(results, emulator, total)
    assert Counter(r["status"] for r in results) == {"sent": total}


async def test_campaign_fatal_error_stops_the_worker_and_sends_nothing_twice(
    tmp_path: Path, redis_url: str, redis: Any, name: str
) -> None:
    """A bad key (E104) stops the worker with exit 2; nothing is recorded failed; the fatal
    is visible in status; a worker with the right key then sends everyone once."""
    total = 30
    csv_path = write_csv(tmp_path / "list.csv", [f"{n}," for n in numbers(total)])
    async with Emulator(EmulatorSettings(seed=4)) as emulator:
        emulator.add_template(MMS_ID)
        env = env_for(emulator, redis_url)
        await load(name, csv_path, env)
        bad = env_for(emulator, redis_url, key="wrong-key")
        code, output = await run(*work_args(name, "--concurrency", "4", "--lease", "60"), env=bad)
        assert code == 2, output
        assert "E104" in output
        assert "wrong-key" not in output
        status = await campaign_status(redis, name)
        assert status.done == 0
        assert status.fatal
        assert "E104" in status.fatal
        code, output = await run(*work_args(name, "--concurrency", "4", "--lease", "60"), env=env)
        assert code == 0, output
    results = await results_of(redis, name)
    check_exactly_once(results, emulator, total)
    assert Counter(r["status"] for r in results) == {"sent": total}


# ---------------------------------------------------------------------- load


def flaky(items: list[str | Recipient | RowError], fail_at: int) -> Iterator[Any]:
    """The input, raising at row ``fail_at`` (a loader crashing mid-file)."""
    for index, item in enumerate(items):
        if index == fail_at:
            raise RuntimeError("loader crashed")
        yield item


async def test_load_resumes_after_a_crash_and_never_enqueues_twice(redis: Any, name: str) -> None:
    """A load that dies mid-file continues at the committed offset (dedupe state rebuilt);
    a load of a complete campaign does nothing; other settings are refused."""
    message = BulkMessage.saved_mms(mms_id=MMS_ID, from_="60856")
    items: list[str | Recipient | RowError] = list(numbers(200))
    items[150] = items[10]  # a duplicate after the crash point of an earlier number
    items[160] = Recipient(to="16509999999", data={"first_name": "Ann"}, client_reference="r1")
    items[170] = RowError(line=172, reason="unreadable")
    with pytest.raises(RuntimeError):
        await load_campaign(redis, name, message, flaky(items, 120), chunk=50)
    stream = f"skycore:campaign:{{{name}}}:stream"
    assert await redis.xlen(stream) == 100  # two whole chunks committed, nothing of the third
    report = await load_campaign(redis, name, message, iter(items), chunk=50)
    assert report.resumed_at == 100
    assert report.total == 200
    assert not report.already_loaded
    assert report.enqueued == 98
    assert report.recorded == 2
    assert await redis.xlen(stream) == 198
    again = await load_campaign(redis, name, message, iter(items), chunk=50)
    assert again.already_loaded
    assert again.enqueued == 0
    assert await redis.xlen(stream) == 198
    entries = await redis.xrange(stream, count=1000)
    indices = [int(fields["i"]) for _, fields in entries]
    assert len(indices) == len(set(indices)) == 198
    personalised = next(fields for _, fields in entries if fields["i"] == "160")
    assert orjson.loads(personalised["r"]) == {
        "data": {"first_name": "Ann"},
        "client_reference": "r1",
    }
    results = await results_of(redis, name)
    assert [(r["index"], r["status"], r["error_code"]) for r in results] == [
        (150, "skipped", "DUPLICATE"), (170, "failed", "ROW"),
    ]  # fmt: skip
    other = BulkMessage.saved_mms(mms_id="999", from_="60856")
    with pytest.raises(CampaignError, match=r"mms_id|message"):
        await load_campaign(redis, name, other, iter(items))
    status = await campaign_status(redis, name)
    assert status.loaded
    assert status.total == 200
    assert status.queued == 198
    assert status.skipped == 1


async def test_workers_with_the_shared_throttle_share_one_rate(
    tmp_path: Path, redis_url: str, name: str
) -> None:
    """3 workers with --shared-throttle --rate 100 together take >= 5 s for 600 sends.

    Unshared, each worker would send at 100/s and the three would be done within about 2 s of
    the first accepted send; a lower bound on that span is what load on the machine cannot fake.
    """
    csv_path = write_csv(tmp_path / "list.csv", numbers(600))
    async with Emulator(EmulatorSettings(seed=9)) as emulator:
        emulator.add_template(MMS_ID)
        env = env_for(emulator, redis_url)
        await load(name, csv_path, env)
        extra = ("--shared-throttle", "--rate", "100", "--concurrency", "8")
        workers = [await start(*work_args(name, *extra), env=env) for _ in range(3)]
        outputs = [await finish(worker, limit=60) for worker in workers]
    for code, output in outputs:
        assert code == 0, output
    assert len(emulator.accepted) == 600
    assert emulator.duplicate_recipients() == {}
    times = sorted(send.time for send in emulator.accepted)
    span = times[-1] - times[0]
    assert span >= 5.0, f"600 sends at a shared 100/s took only {span:.2f} s"
