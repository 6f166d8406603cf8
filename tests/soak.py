"""Crash soak: a bulk campaign through the real CLI, SIGKILLed at random points, resumed each time.

The emulator runs in this process with faults on (connections dropped before and after a send
is accepted, truncated replies, HTML 502 pages, injected E-codes, latency jitter, blacklisted
numbers). ``python -m skycore_async bulk`` runs as a child process; it is SIGKILLed ``--kills``
times, each time after a seeded random number of the requests it made (plus a random few
milliseconds, so the kill lands anywhere in a request's life), resumed with ``--resume``, and
finally run to completion. Then every record is checked:

* every input row is in ``results.jsonl`` exactly once;
* no number was accepted by the emulator twice (``duplicates``);
* every ``sent`` row is in the emulator's record with its tracking id, every number the
  emulator accepted has a ``sent`` or ``unknown`` row, and no row is missing (``lost``);
* every ``unknown`` row is a request the emulator really received and whose answer a fault
  spoiled (its ``faults`` record), or one in flight when the process was killed
  (``INTERRUPTED``; at most ``concurrency`` per kill); every spoiled request is ``unknown``;
* failed and skipped rows were never accepted; duplicates are ``skipped``, invalid numbers
  ``failed``.

Usage::

    python tests/soak.py --recipients 20000 --kills 10 --seed 1

Exit status 0 when every check passes. ``tests/test_soak.py`` runs a small variant in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from skycore_async.testing import Emulator, EmulatorSettings

MMS_ID = "35674"
INVALID_EVERY = 211  # every 211th row has an invalid number (failed E110)
DUPLICATE_EVERY = 97  # every 97th row repeats an earlier number (skipped DUPLICATE)
BLACKLIST_EVERY = 503  # every 503rd number is blacklisted (failed E114)
RUN_TIMEOUT = 600.0


@dataclass(frozen=True)
class SoakConfig:
    """What one soak does.

    Attributes:
        recipients: input rows (a few are invalid or duplicates on purpose).
        kills: SIGKILLs before the final run.
        seed: seeds the kill points and the emulator's faults.
        concurrency: the CLI's ``--concurrency``.
        batch_size: the CLI's ``--batch-size``.
        faults: inject faults (connection drops, truncation, HTML, E-codes, jitter).
    """

    recipients: int = 4000
    kills: int = 5
    seed: int = 1
    concurrency: int = 16
    batch_size: int = 100
    faults: bool = True


@dataclass
class SoakReport:
    """What happened and what the checks found (``problems`` empty when all passed)."""

    kills: int = 0
    resumes: int = 0
    rows: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    interrupted: int = 0
    duplicates: int = 0
    lost: int = 0
    requests: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The figures, one per line."""
        s = self.statuses
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.answers.items()) if k != "Success")
        return "\n".join(
            [
                f"rows        {self.rows}",
                f"kills       {self.kills}",
                f"resumes     {self.resumes}",
                f"sent        {s['sent']}",
                f"failed      {s['failed']}",
                f"unknown     {s['unknown']} ({self.interrupted} in flight at a kill, "
                f"{s['unknown'] - self.interrupted} spoiled by an injected fault)",
                f"skipped     {s['skipped']}",
                f"duplicates  {self.duplicates}",
                f"lost        {self.lost}",
                f"requests    {self.requests} ({faults})",
                f"time        {self.seconds:.1f} s",
                f"problems    {len(self.problems)}",
                *(f"  - {p}" for p in self.problems[:20]),
            ]
        )


def fault_settings(seed: int, *, faults: bool = True) -> EmulatorSettings:
    """The emulator for a soak: every fault the bulk engine must survive, at low rates."""
    if not faults:
        return EmulatorSettings(seed=seed, latency=0.001, latency_jitter=0.003)
    return EmulatorSettings(
        seed=seed,
        latency=0.001,
        latency_jitter=0.004,
        drop_before_accept=0.002,
        drop_after_accept=0.002,
        truncated_after_accept=0.002,
        html_error_rate=0.002,
        error_rates={"E503": 0.01, "E618": 0.004, "E113": 0.002},
    )


def number(n: int) -> str:
    """The n-th distinct recipient number."""
    return f"1650{n:07d}"


def write_recipients(path: Path, rows: int) -> tuple[list[str], set[str]]:
    """A CSV of ``rows`` rows; returns each row's expected kind and the blacklisted numbers."""
    kinds: list[str] = []
    blacklist: set[str] = set()
    lines = ["to,first_name"]
    normal: list[str] = []
    for i in range(rows):
        if i % INVALID_EVERY == INVALID_EVERY - 1:
            lines.append(f"12ab{i},Bad")
            kinds.append("invalid")
        elif i % DUPLICATE_EVERY == DUPLICATE_EVERY - 1:
            lines.append(f"+{normal[len(normal) // 2]},Again")  # an earlier number, respelled
            kinds.append("duplicate")
        else:
            normal.append(number(i))
            lines.append(f"{number(i)},N{i}")
            kinds.append("normal")
            if i % BLACKLIST_EVERY == BLACKLIST_EVERY - 1:
                blacklist.add(number(i))
    path.write_text("\n".join(lines) + "\n")
    return kinds, blacklist


def kill_gaps(rng: random.Random, rows: int, kills: int) -> list[int]:
    """Requests each killed run makes before its kill: seeded, summing to ~85 % of ``rows``."""
    points = sorted(rng.sample(range(1, max(kills + 1, int(rows * 0.85))), kills))
    return [b - a for a, b in zip([0, *points], points, strict=False)]


async def run_cli(
    args: list[str], env: dict[str, str], log: Path, kill: Any | None
) -> tuple[int, bool]:
    """Run the CLI until it exits or ``await kill(process)`` says to SIGKILL it.

    Returns (exit status, whether it was killed).
    """
    with open(log, "ab") as stderr:  # noqa: ASYNC230 - once per run, before it starts
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "skycore_async", *args,
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        waiting = asyncio.create_task(process.wait())
        killed = False
        if kill is not None:
            trigger = asyncio.create_task(kill(process))
            await asyncio.wait({waiting, trigger}, return_when=asyncio.FIRST_COMPLETED)
            if not waiting.done():
                process.send_signal(signal.SIGKILL)
                killed = True
            trigger.cancel()
        try:
            code = await asyncio.wait_for(waiting, RUN_TIMEOUT)
        except TimeoutError:
            process.kill()
            raise RuntimeError(f"the CLI ran longer than {RUN_TIMEOUT:.0f} s; see {log}") from None
    return code, killed


def after_requests(emulator: Emulator, gap: int, rng: random.Random) -> Any:
    """A kill trigger: returns once the emulator received ``gap`` more requests (+ jitter)."""
    start = emulator.requests_received
    delay = rng.uniform(0.0, 0.03)

    async def trigger(_process: Any) -> None:
        while emulator.requests_received - start < gap:  # noqa: ASYNC110 - a plain counter
            await asyncio.sleep(0.001)
        await asyncio.sleep(delay)

    return trigger


async def run_soak(config: SoakConfig, workdir: Path) -> SoakReport:
    """Run one soak in ``workdir`` and check it (see the module docstring)."""
    started = time.monotonic()
    rng = random.Random(config.seed)
    csv_path, out, log = workdir / "recipients.csv", workdir / "results.jsonl", workdir / "cli.log"
    kinds, blacklist = write_recipients(csv_path, config.recipients)
    settings = fault_settings(config.seed, faults=config.faults)
    settings.blacklist = blacklist
    report = SoakReport(rows=len(kinds))
    async with Emulator(settings) as emulator:
        emulator.add_template(MMS_ID)
        env = {**os.environ, "SKYCORE_API_KEY": "test-key", "SKYCORE_BASE_URL": emulator.url}
        args = ["bulk", "--mms-id", MMS_ID, "--from", "60856", "--recipients", str(csv_path),
                "--out", str(out), "--concurrency", str(config.concurrency),
                "--batch-size", str(config.batch_size)]  # fmt: skip
        for run, gap in enumerate(kill_gaps(rng, config.recipients, config.kills)):
            resume = ["--resume"] if run else []
            code, killed = await run_cli(
                args + resume, env, log, after_requests(emulator, gap, rng)
            )
            report.kills += killed
            report.resumes += bool(run)
            if not killed:
                report.problems.append(f"run {run} ended (status {code}) before its kill")
        code, _ = await run_cli([*args, "--resume"], env, log, kill=None)
        report.resumes += config.kills > 0
        if code != 0:
            report.problems.append(f"the final run exited with status {code}; see {log}")
        report.requests = emulator.requests_received
        report.answers = Counter(emulator.answers)
        check(report, config, kinds, read_results(out), emulator)
    report.seconds = time.monotonic() - started
    return report


def read_results(path: Path) -> list[dict[str, Any]]:
    """Every line of the results file (each must be complete JSON)."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def check(
    report: SoakReport,
    config: SoakConfig,
    kinds: Sequence[str],
    results: list[dict[str, Any]],
    emulator: Emulator,
) -> None:
    """Fill in the report's counts and problems from the results and the emulator's record."""
    problems = report.problems
    by_index: dict[int, dict[str, Any]] = {}
    for record in results:
        if record["index"] in by_index:
            report.duplicates += 1
            problems.append(f"row {record['index']} is in results.jsonl twice")
        by_index[record["index"]] = record
    missing = [i for i in range(len(kinds)) if i not in by_index]
    report.lost += len(missing)
    if missing:
        problems.append(f"{len(missing)} rows missing from results.jsonl, e.g. {missing[:5]}")
    extra = sorted(set(by_index) - set(range(len(kinds))))
    if extra:
        problems.append(f"results.jsonl has rows that are not in the input: {extra[:5]}")
    report.statuses = Counter(r["status"] for r in by_index.values())
    report.interrupted = sum(r.get("error_code") == "INTERRUPTED" for r in by_index.values())
    check_kinds(problems, kinds, by_index)
    check_against_emulator(report, by_index, emulator)
    in_doubt_limit = report.kills * config.concurrency
    if report.interrupted > in_doubt_limit:
        problems.append(
            f"{report.interrupted} rows in flight at a kill; at most {in_doubt_limit} can be"
        )


def check_kinds(
    problems: list[str], kinds: Sequence[str], by_index: dict[int, dict[str, Any]]
) -> None:
    """Invalid numbers fail, repeated numbers are skipped, nothing else is skipped."""
    for index, record in by_index.items():
        if index >= len(kinds):
            continue
        kind, status = kinds[index], record["status"]
        if kind == "invalid" and (status, record.get("error_code")) != ("failed", "E110"):
            problems.append(f"row {index} has an invalid number but is {status}: {record}")
        elif kind == "duplicate" and (status, record.get("error_code")) != ("skipped", "DUPLICATE"):
            problems.append(f"row {index} repeats a number but is {status}: {record}")
        elif kind == "normal" and status == "skipped":
            problems.append(f"row {index} was skipped: {record}")


def check_against_emulator(
    report: SoakReport, by_index: dict[int, dict[str, Any]], emulator: Emulator
) -> None:
    """Each number's rows against what the emulator accepted and which answers it spoiled."""
    problems = report.problems
    accepted = Counter(send.to for send in emulator.accepted)
    tracking = {send.tracking_id: send.to for send in emulator.accepted}
    spoiled = {to for _, to in emulator.faults if to is not None}
    report.duplicates += sum(1 for times in accepted.values() if times > 1)
    for to, times in accepted.items():
        if times > 1:
            problems.append(f"{to} was accepted {times} times")
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in by_index.values():
        if record["status"] != "skipped":
            rows[record["to"]].append(record)
    for to in accepted:
        if not any(r["status"] in ("sent", "unknown") for r in rows.get(to, [])):
            report.lost += 1
            problems.append(f"{to} was accepted but no row says sent or unknown: {rows.get(to)}")
    for to, records in rows.items():
        for record in records:
            check_row(report, record, accepted[to], to in spoiled, tracking)
    for to in spoiled - {to for to, records in rows.items() if records[0]["status"] == "unknown"}:
        problems.append(f"a fault spoiled the answer to {to}, yet its row is not unknown")


def check_row(
    report: SoakReport,
    record: dict[str, Any],
    times: int,
    spoiled: bool,
    tracking: dict[str, str],
) -> None:
    """One non-skipped row against the emulator's record of its number."""
    status, problems = record["status"], report.problems
    if status == "sent":
        if times != 1 or tracking.get(record.get("tracking_id") or "") != record["to"]:
            report.lost += 1
            problems.append(f"sent, but the emulator's record disagrees ({times}x): {record}")
    elif status == "unknown":
        if record.get("error_code") != "INTERRUPTED" and not spoiled:
            problems.append(f"unknown, but no fault spoiled a request for it: {record}")
    elif times:
        problems.append(f"{status}, but the emulator accepted it {times}x: {record}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run one soak, print its figures, exit 1 if a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--no-faults", action="store_true", help="kills only, no injected faults")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    config = SoakConfig(
        recipients=args.recipients, kills=args.kills, seed=seed,
        concurrency=args.concurrency, batch_size=args.batch_size, faults=not args.no_faults,
    )  # fmt: skip
    print(f"soak: {config}", flush=True)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        report = asyncio.run(run_soak(config, args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="skycore-soak-") as workdir:
            report = asyncio.run(run_soak(config, Path(workdir)))
    print(report.summary())
    print("PASS" if not report.problems else "FAIL")
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
