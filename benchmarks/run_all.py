"""Run every benchmark script in sequence and print one combined table.

    python benchmarks/run_all.py           # full figures (a few minutes on 2 cores)
    python benchmarks/run_all.py --smoke   # seconds per script; CI runs this so nothing rots

Scripts run one after the other (never side by side: they would steal each other's CPU), each
in its own interpreter, with ``--smoke`` passed through. Each script's own output is shown as
it runs. Each script also hands its headline figures to this runner as rows (figure letter,
label, result, target, verdict; ``_common.report_figures``, through the file named by
``SKYCORE_BENCH_FIGURES``), and the combined table at the end lists them all, figure by
figure: (a)-(f) of issue 6 and (p) the peers. Any other ``benchmarks/bench_*.py`` is run too.

The exit status is 1 when something is broken: a script crashed, timed out, or reported no
figure at all. A missed target is a figure, not a failure (it is listed under the table, and
the README says by how much and why), unless ``--strict`` is given. bench_throttle.py exits 1
in full mode when one of its targets is missed; with MISS rows and no traceback, that counts as
"ran". The full run also writes ``benchmarks/results/summary.json``; the scripts write their
own result files beside it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import FIGURES_ENV

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: Known scripts, in the order they run (the most CPU-sensitive first).
ORDER = (
    "bench_engine.py",
    "bench_breakdown.py",
    "bench_peers.py",
    "bench_throttle.py",
    "bench_memory.py",
    "bench_first_send.py",
)
TIMEOUT = {"full": 1800.0, "smoke": 300.0}
#: The figures of issue 6, in table order, and the script expected to report each.
FIGURES = {
    "a": ("engine throughput, no rate limit", "bench_engine.py"),
    "b": ("client CPU per send, by stage", "bench_breakdown.py"),
    "c": ("throttle precision and adaptation", "bench_throttle.py"),
    "d": ("peak memory, 10k to 1M recipients", "bench_memory.py"),
    "e": ("time to first send, 1M-line CSV", "bench_first_send.py"),
    "f": ("uvloop beside the default loop", "bench_peers.py"),
    "p": ("peers: same workload, same server, same run", "bench_peers.py"),
}


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
    errors: list[str] = []
    handle, figures_path = tempfile.mkstemp(prefix="skycore-figures-", suffix=".jsonl")
    os.close(handle)
    env = os.environ | {FIGURES_ENV: figures_path}
    process = subprocess.Popen(
        command, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip
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
        code = process.wait()
    finally:
        timer.cancel()
        echo.join(timeout=5)
        found = read_figures(Path(figures_path))
        os.unlink(figures_path)
    elapsed = time.perf_counter() - started
    missed = [row for row in found if row["verdict"] == "MISS"]
    crashed = any(line.startswith("Traceback") for line in errors)
    if elapsed >= timeout:
        status = f"TIMEOUT {timeout:.0f}s"
    elif code != 0 and (crashed or not missed):
        status = f"FAILED {code}"
    elif not found:
        status = "NO FIGURES"  # ran, but reported nothing: broken
    else:
        status = "ok" if code == 0 else f"exit {code}"  # bench_throttle: 1 on a missed target
    return {
        "status": status,
        "exit": code,
        "ran": status == "ok" or status.startswith("exit"),
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


def read_figures(path: Path) -> list[dict[str, Any]]:
    """The figure rows a script appended to ``path`` (one JSON object per line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


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
    """The combined table: every figure (a)-(f) and the peers, then each script's status."""
    reported = [(name, row) for name, result in rows if result for row in result["figures"]]
    label_w = min(72, max([len(row["label"]) for _n, row in reported] + [40]))
    result_w = min(44, max([len(row["result"]) for _n, row in reported] + [20]))
    width = 3 + label_w + 1 + result_w + 1 + 10 + 8
    print()
    print("=" * width)
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    print(f"skycore-async benchmarks, {mode} mode, {stamp}, {total:.0f} s")
    print(f"machine: {machine()}")
    print("ratios are measured side by side in one run; absolute numbers vary with the machine")
    if mode == "smoke":
        print("smoke mode: tiny sizes, so the figures only show that every script runs")
    print("=" * width)
    print(f"{'':3}{'figure':{label_w}} {'result':{result_w}} {'target':>10} {'verdict':>7}")
    for key, (title, script) in FIGURES.items():
        print("-" * width)
        print(f"({key}) {title}")
        mine = [row for _name, row in reported if row["key"] == key]
        if not mine:
            print(f"{'':3}(no figure: {script} did not report one)")
        for row in mine:
            print(f"{'':3}{row['label']:{label_w}} {row['result']:{result_w}} "
                  f"{row['target']:>10} {row['verdict']:>7}")  # fmt: skip
    others = [(name, row) for name, row in reported if row["key"] not in FIGURES]
    for name, row in others:
        print(f"{'':3}[{name}] {row['label']}: {row['result']} {row['target']} {row['verdict']}")
    print("=" * width)
    print(f"{'script':<24} {'status':<12} {'secs':>6}")
    for name, result in rows:
        if result is None:
            print(f"{name:<24} {'missing':<12}")
        else:
            print(f"{name:<24} {result['status']:<12} {result['seconds']:>6.1f}")
    print("=" * width)


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
            print(f"\n### {name}: MISSING", flush=True)
            rows.append((name, None))
            continue
        print(f"\n### {name} ({mode})", flush=True)
        rows.append((name, run(path, args.smoke)))
    total = time.perf_counter() - started
    table(mode, rows, total)
    failed = [name for name, result in rows if result is None or not result["ran"]]
    missed = [
        (name, f"({row['key']}) {row['label']}: {row['result']} (target {row['target']})")
        for name, result in rows
        if result is not None
        for row in result["missed"]
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
        print(f"BROKEN (missing, crashed, timed out or no figures): {', '.join(failed)}")
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
