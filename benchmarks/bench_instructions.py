"""Client CPU per send as instruction counts: deterministic, whatever else the machine does.

Wall-clock ratios on a shared 2-core machine swing by +-15 % between identical runs. This
counts the instructions the *client process* executes per send under valgrind's callgrind
(the same binary and inputs give the same count), for the raw aiohttp loop and for the bulk
engine (journal and dedupe on), against the same fast loopback server. The difference between
a long and a short run cancels start-up costs:

    per_send = (instructions(N_long) - instructions(N_short)) / (N_long - N_short)

The instruction ratio raw/engine is the throughput ratio the engine would reach if every
instruction cost the same; it is the repeatable counterpart of bench_engine.py's figure.
Needs valgrind (Debian: apt-get install valgrind); skipped with a message otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import bench_engine  # noqa: E402


def child(which: str, count: int, url: str) -> None:
    """Run one client workload (inside valgrind)."""

    async def run() -> None:
        if which == "raw":
            await bench_engine.raw_loop(url, count, 32)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                await bench_engine.engine(url, count, 32, Path(tmp))

    asyncio.run(run())


def instructions(which: str, count: int, url: str) -> int:
    """Instructions callgrind counts for one workload run in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
            sys.executable, __file__, "--child", which, str(count), url,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    match = re.search(r"Collected : (\d+)", done.stderr)
    assert match, done.stderr[-2000:]
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("WHICH", "COUNT", "URL"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2])
        return 0
    if shutil.which("valgrind") is None:
        print("instruction counts: skipped (valgrind not installed)")
        return 0
    short, long = (100, 400) if args.smoke else (500, 2500)
    server, url = bench_engine.start_server()
    try:
        per_send = {
            which: (instructions(which, long, url) - instructions(which, short, url))
            / (long - short)
            for which in ("raw", "engine")
        }
    finally:
        server.terminate()
        server.wait()
    ratio = per_send["raw"] / per_send["engine"]
    print(f"client instructions per send ({long - short} sends, callgrind, deterministic)")
    print(f"  raw aiohttp loop : {per_send['raw']:9.0f}")
    print(f"  skycore-async    : {per_send['engine']:9.0f}  (journal on, dedupe on)")
    verdict = "meets" if ratio >= 0.75 else "MISSES"
    print(f"  ratio raw/engine : {ratio:.3f}  ({verdict} the 0.75 target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
