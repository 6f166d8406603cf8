"""Run every benchmark script in sequence and print one combined table.

    python benchmarks/run_all.py           # full figures (a few minutes on 2 cores)
    python benchmarks/run_all.py --smoke   # seconds per script; CI runs this so nothing rots

Scripts run one after the other (never side by side: they would steal each other's CPU), each
in its own interpreter, with ``--smoke`` passed through. Each script's own output is shown as
it runs; the combined table at the end repeats every figure line that carries a verdict
(PASS / MISS / meets / MISSES) or a headline number. A script that is not there yet is listed
as skipped, so the harness works while benchmarks are still being added; any other
``benchmarks/bench_*.py`` is picked up too.

The exit status is 1 when a script crashed or timed out; a missed target is a figure, not a
failure (it is listed under the table, and the README says by how much and why), unless
``--strict`` is given. A non-zero exit with MISS lines and no traceback counts as "ran":
bench_throttle.py exits 1 in full mode when one of its targets is missed. The full run also
writes ``benchmarks/results/summary.json``; the scripts write their own result files beside
it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: Known scripts, in the order they run (the most CPU-sensitive first).
ORDER = (
    "bench_engine.py",
    "bench_instructions.py",
    "bench_throttle.py",
    "bench_memory.py",
    "bench_first_send.py",
)
TIMEOUT = {"full": 1800.0, "smoke": 300.0}

_VERDICT = re.compile(r"\b(PASS|MISS|MISSES|meets)\b")
_MISSED = re.compile(r"\b(MISS|MISSES)\b")
_HEADLINE = re.compile(
    r"(us CPU/send|baseline: a process|above the import baseline|HTTP stack"
    r"|ratio with dedupe off|read_csv over the whole file|first request|first reply from)"
)
_SECTION = re.compile(r"^(\S[^:]{0,40}):")


def scripts() -> list[tuple[str, Path | None]]:
    """(name, path or None when missing) for the known scripts, then any other bench_*.py."""
    listed: list[tuple[str, Path | None]] = [
        (name, HERE / name if (HERE / name).exists() else None) for name in ORDER
    ]
    extra = sorted(p for p in HERE.glob("bench_*.py") if p.name not in ORDER)
    return listed + [(p.name, p) for p in extra]


def run(path: Path, smoke: bool) -> dict[str, Any]:
    """Run one script, echoing its output; return its status, figures and missed targets."""
    command = [sys.executable, str(path)] + (["--smoke"] if smoke else [])
    timeout = TIMEOUT["smoke" if smoke else "full"]
    started = time.perf_counter()
    lines: list[str] = []
    errors: list[str] = []
    process = subprocess.Popen(
        command, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stderr is not None
    echo = threading.Thread(target=_echo_stderr, args=(process.stderr, errors), daemon=True)
    echo.start()
    timer = threading.Timer(timeout, process.kill)  # bounds a script that hangs silently
    timer.start()
    try:
        for line in process.stdout:  # the script's own output, live
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line.rstrip("\n"))
        code = process.wait()
    finally:
        timer.cancel()
        echo.join(timeout=5)
    elapsed = time.perf_counter() - started
    found = figures(lines)
    missed = [f"[{sec}] {text}" if sec else text for sec, text in found if _MISSED.search(text)]
    crashed = any(line.startswith("Traceback") for line in errors)
    if code == 0:
        status = "ok"
    elif elapsed >= timeout:
        status = f"TIMEOUT {timeout:.0f}s"
    elif missed and not crashed:
        status = f"exit {code}"  # bench_throttle.py exits 1 in full mode when a target misses
    else:
        status = f"FAILED {code}"
    return {
        "status": status,
        "exit": code,
        "ran": code == 0 or status.startswith("exit"),
        "seconds": elapsed,
        "figures": found,
        "missed": missed,
        "stderr_tail": errors[-20:],
    }


def _echo_stderr(stream: Any, keep: list[str]) -> None:
    for line in stream:
        sys.stderr.write(line)
        sys.stderr.flush()
        keep.append(line.rstrip("\n"))


def figures(lines: list[str]) -> list[tuple[str, str]]:
    """(section, figure line) for each line with a verdict or a headline number.

    The section is the ``name:`` that starts the last unindented line (bench_throttle.py
    prints one per scenario), given to the indented figure lines under it.
    """
    found: list[tuple[str, str]] = []
    section = ""
    for line in lines:
        indented = line.startswith((" ", "\t"))
        if line.strip() and not indented:
            match = _SECTION.match(line)
            section = match.group(1) if match else ""
        if _VERDICT.search(line) or _HEADLINE.search(line):
            found.append((section if indented else "", " ".join(line.split())))
    return found


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {sys.platform}"


def table(mode: str, rows: list[tuple[str, dict[str, Any] | None]], total: float) -> None:
    print()
    print("=" * 100)
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    print(f"skycore-async benchmarks, {mode} mode, {stamp}, {total:.0f} s")
    print(f"machine: {machine()}")
    print("ratios are measured side by side in one run; absolute numbers vary with the machine")
    print("=" * 100)
    print(f"{'script':<21} {'status':<10} {'secs':>6}  figure")
    print("-" * 100)
    for name, result in rows:
        if result is None:
            print(f"{name:<21} {'skipped':<10} {'':>6}  (script not present yet)")
            continue
        first = True
        head = f"{name:<21} {result['status']:<10} {result['seconds']:>6.1f}"
        for section, text in result["figures"] or [("", "(no figure lines printed)")]:
            label = f"[{section}] {text}" if section else text
            print(f"{head if first else '':<39}  {label}")
            first = False
    print("=" * 100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="pass --smoke to every script")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed, too")
    args = parser.parse_args()
    mode = "smoke" if args.smoke else "full"
    rows: list[tuple[str, dict[str, Any] | None]] = []
    started = time.perf_counter()
    for name, path in scripts():
        if path is None:
            print(f"\n### {name}: not present, skipped", flush=True)
            rows.append((name, None))
            continue
        print(f"\n### {name} ({mode})", flush=True)
        rows.append((name, run(path, args.smoke)))
    total = time.perf_counter() - started
    table(mode, rows, total)
    failed = [name for name, result in rows if result is not None and not result["ran"]]
    missed = [
        (name, text) for name, result in rows if result is not None for text in result["missed"]
    ]
    if not args.smoke:
        RESULTS.mkdir(exist_ok=True)
        summary = {
            "machine": machine(),
            "seconds": total,
            "scripts": dict(rows),
        }
        (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if missed:
        print(f"{len(missed)} target(s) missed (see benchmarks/README.md for by how much and why):")
        for name, text in missed:
            print(f"  {name}: {text}")
    if failed:
        print(f"FAILED (crashed or timed out): {', '.join(failed)}")
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
