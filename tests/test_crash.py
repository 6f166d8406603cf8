"""kill -9 a real `skycore-async bulk` process at several points; resume; nobody twice, nobody lost."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from skycore_async.testing import Emulator, EmulatorSettings

RECIPIENTS = 3000


def write_csv(path: Path) -> None:
    """A CSV with RECIPIENTS distinct numbers and a merge-tag column."""
    rows = ["to,first_name"] + [f"1650{n:07d},N{n}" for n in range(RECIPIENTS)]
    path.write_text("\n".join(rows) + "\n")


async def run_cli(args: list[str], env: dict[str, str], kill_after: float | None) -> int:
    """Run the CLI; SIGKILL it after ``kill_after`` seconds (None: let it finish)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "skycore_async", *args,
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    if kill_after is None:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, stderr.decode()
        return 0
    await asyncio.sleep(kill_after)
    if process.returncode is None:
        process.send_signal(signal.SIGKILL)
    await process.wait()
    return process.returncode or 0


def read_results(path: Path) -> list[dict[str, Any]]:
    """Complete lines of the results file."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.mark.parametrize("seed", [7])
async def test_sigkill_at_several_points_then_resume(tmp_path: Path, seed: int) -> None:
    """After 4 SIGKILLs and resumes: every row once in results; accepted once unless unknown."""
    rng = random.Random(seed)
    settings = EmulatorSettings(
        seed=seed, latency=0.003, latency_jitter=0.004, drop_after_accept=0.005
    )
    csv_path, out = tmp_path / "recipients.csv", tmp_path / "results.jsonl"
    write_csv(csv_path)
    async with Emulator(settings) as emulator:
        emulator.add_template(35674)
        env = {**os.environ, "SKYCORE_API_KEY": "test-key", "SKYCORE_BASE_URL": emulator.url}
        args = ["bulk", "--mms-id", "35674", "--from", "60856", "--recipients", str(csv_path),
                "--out", str(out), "--concurrency", "8", "--batch-size", "50"]  # fmt: skip
        kills = 0
        for attempt in range(5):
            resume = ["--resume"] if attempt else []
            code = await run_cli(args + resume, env, kill_after=rng.uniform(0.8, 1.6))
            kills += code == -signal.SIGKILL
        await run_cli([*args, "--resume"], env, kill_after=None)
        accepted = Counter(a.to for a in emulator.accepted)
        tracking = {a.tracking_id for a in emulator.accepted}
    assert kills >= 3, "the process finished before it could be killed; make the run longer"
    results = read_results(out)
    assert sorted(r["index"] for r in results) == list(range(RECIPIENTS)), (
        "a row is missing or doubled"
    )
    for record in results:
        times = accepted[record["to"]]
        if record["status"] == "sent":
            assert times == 1, record
            assert record["tracking_id"] in tracking, record
        elif record["status"] == "unknown":
            assert times <= 1, record
        else:
            assert times == 0, record
    assert not [n for n, times in accepted.items() if times > 1]


async def test_campaign_fatal_stop_prints_a_resume_that_sends_everyone(tmp_path: Path) -> None:
    """A wrong key: exit 2 with the resume command; resumed with the right key, all are sent once."""
    csv_path, out = tmp_path / "recipients.csv", tmp_path / "results.jsonl"
    write_csv(csv_path)
    async with Emulator(EmulatorSettings(seed=3)) as emulator:
        emulator.add_template(35674)
        env = {**os.environ, "SKYCORE_API_KEY": "wrong-key", "SKYCORE_BASE_URL": emulator.url}
        args = ["bulk", "--mms-id", "35674", "--from", "60856", "--recipients", str(csv_path),
                "--out", str(out), "--concurrency", "8"]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "skycore_async", *args,
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
        message = stderr.decode()
        assert process.returncode == 2, message
        assert "fix the cause, then resume with" in message
        assert "--resume" in message.rsplit("resume with", 1)[1]
        assert "wrong-key" not in message
        assert emulator.accepted == []
        await run_cli([*args, "--resume"], {**env, "SKYCORE_API_KEY": "test-key"}, kill_after=None)
        accepted = Counter(a.to for a in emulator.accepted)
    results = read_results(out)
    assert sorted(r["index"] for r in results) == list(range(RECIPIENTS))
    assert {r["status"] for r in results} == {"sent"}
    assert len(accepted) == RECIPIENTS
    assert max(accepted.values()) == 1
