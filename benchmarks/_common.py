"""Shared helpers for the benchmarks: CPU pinning, result files, figure rows for the combined
table, time windows, and an emulator in its own process.

Figure rows: each script calls :func:`report_figures` with its headline figures (letter,
label, result, target, verdict). When ``run_all.py`` runs the script it sets
``SKYCORE_BENCH_FIGURES`` to a file path, and the rows are appended there as JSON lines; the
combined table is built from them, not by scraping output.

The emulator process (``python benchmarks/_common.py emulator SETTINGS_JSON``) pins itself to
CPU 1, preloads template 35674, prints ``ready URL`` and serves until it reads ``report`` on
stdin; it then prints one JSON line (answers, requests, accepted times, duplicates) and
exits. Accepted times are ``time.monotonic()`` values: on Linux that clock is system-wide, so
they compare directly with the client process's own ``time.monotonic()``.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

FIGURES_ENV = "SKYCORE_BENCH_FIGURES"
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TEMPLATE_ID = "35674"
CLIENT_CPU = 0
SERVER_CPU = 1


def pin_to_cpu(cpu: int) -> bool:
    """Pin this process to ``cpu`` when the OS allows it and the CPU exists; True if pinned."""
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) <= cpu:
        return False
    os.sched_setaffinity(0, {cpu})
    return True


def write_recipients_csv(path: Path, count: int, *, merge_tag: bool = False) -> None:
    """A CSV of ``count`` distinct numbers (``1650`` + 7 digits), written streaming.

    ``merge_tag`` adds a ``first_name`` column, as in a real campaign file.
    """
    header = "to,first_name\n" if merge_tag else "to\n"
    row = "1650{0:07d},Name{0}\n" if merge_tag else "1650{0:07d}\n"
    with open(path, "w", encoding="ascii") as handle:
        handle.write(header)
        step = 10_000
        for start in range(0, count, step):
            handle.write("".join(row.format(i) for i in range(start, min(count, start + step))))


def write_result(name: str, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``benchmarks/results/<name>.json``; returns the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    return path


def figure(
    key: str, label: str, result: str, target: str = "", passed: bool | None = None
) -> dict[str, Any]:
    """One row of the combined table: ``key`` is the figure letter (a-f) or ``p`` for peers.

    ``passed`` is None for a figure without a target (shown as ``-``).
    """
    verdict = "-" if passed is None else ("PASS" if passed else "MISS")
    return {"key": key, "label": label, "result": result, "target": target, "verdict": verdict}


def report_figures(rows: Iterable[dict[str, Any]]) -> None:
    """Hand figure rows to ``run_all.py`` (a no-op when the script runs on its own)."""
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "ab") as handle:
            for row in rows:
                handle.write(orjson.dumps(row) + b"\n")


def per_second(times: Iterable[float], start: float, seconds: int) -> list[int]:
    """Events per 1 s bin over ``[start, start + seconds)``; events outside are ignored."""
    bins = [0] * seconds
    for moment in times:
        index = int(moment - start) if moment >= start else -1
        if 0 <= index < seconds:
            bins[index] += 1
    return bins


def max_in_window(times: Sequence[float], width: float = 1.0) -> int:
    """The most events in any window ``[t, t + width)``, over sorted ``times`` (sliding)."""
    best = 0
    for first, moment in enumerate(times):
        best = max(best, bisect.bisect_left(times, moment + width, lo=first) - first)
    return best


def between(times: Iterable[float], start: float, end: float) -> list[float]:
    """The times in ``[start, end)``, sorted."""
    return sorted(moment for moment in times if start <= moment < end)


class EmulatorProcess:
    """An emulator in a child process (pinned to CPU 1); use as a context manager.

    Args:
        settings: keyword arguments for ``EmulatorSettings`` (JSON-serialisable).

    Attributes:
        url: the base URL to give clients, once entered.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings = settings
        self._process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> EmulatorProcess:
        command = [sys.executable, __file__, "emulator", orjson.dumps(self._settings).decode()]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._process.stdout is not None
        line = self._process.stdout.readline().decode().split()
        if line[:1] != ["ready"]:
            self._stop()
            raise RuntimeError(f"the emulator process did not start: {line!r}")
        self.url = line[1]
        return self

    def report(self) -> dict[str, Any]:
        """Ask the emulator for its record; it exits afterwards."""
        process = self._process
        assert process is not None
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(b"report\n")
        process.stdin.flush()
        record: dict[str, Any] = orjson.loads(process.stdout.readline())
        process.wait(timeout=10)
        return record

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


async def _serve_emulator(settings_json: str) -> None:
    """The child side of :class:`EmulatorProcess`."""
    from skycore_async.testing import Emulator, EmulatorSettings

    emulator = Emulator(EmulatorSettings(**orjson.loads(settings_json)))
    emulator.add_template(TEMPLATE_ID)
    url = await emulator.start("127.0.0.1", 0)
    print("ready", url, flush=True)
    try:
        while (line := await asyncio.to_thread(sys.stdin.readline)) and line.strip() != "report":
            pass
        record = {
            "requests": emulator.requests_received,
            "answers": dict(emulator.answers),
            "accepted": [send.time for send in emulator.accepted],
            "duplicates": emulator.duplicate_recipients(),
        }
        sys.stdout.buffer.write(orjson.dumps(record) + b"\n")
        sys.stdout.flush()
    finally:
        await emulator.stop()


if __name__ == "__main__":
    if sys.argv[1:2] != ["emulator"] or len(sys.argv) != 3:
        raise SystemExit("usage: python benchmarks/_common.py emulator SETTINGS_JSON")
    pin_to_cpu(SERVER_CPU)
    asyncio.run(_serve_emulator(sys.argv[2]))
