"""Engine throughput with no rate limit, as a ratio to a minimal raw aiohttp loop.

Both send the same sendSavedMMS form bodies to the same fast loopback server
(``fastserver.py``, pinned to CPU 1), in the same run, interleaved over several rounds; the
client side is pinned to CPU 0. The engine runs with its journal on, dedupe on and result
batches consumed, i.e. as a campaign script would run it.

    python benchmarks/bench_engine.py            # full: 5,000 sends x 24 rounds, order alternating
    python benchmarks/bench_engine.py --smoke    # seconds; CI uses this so it cannot rot

Target (issue 4): engine / raw >= 0.75, the median of the per-round ratios.

Why many short rounds: on these shared 2-core machines the speed of the host drifts by 10 %
and more over seconds (CPU per send moves for both clients alike), so one round's ratio can be
anywhere from 0.6 to 1.0. A round pairs the two clients back to back, a few seconds apart, and
the median of 24 such pairs is stable where the median of 6 long rounds was not. Short rounds
do not favour the engine: its fixed costs per run (journal file, dedupe bitmap, tasks) weigh
more in a short round, not less. The quartiles of the per-round ratios are printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from _common import figure, report_figures

from skycore_async import BulkMessage, Limits, SkycoreClient
from skycore_async.fields import ApiRequest
from skycore_async.template import SavedMmsTemplate

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "fastserver.py"), str(port)], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    process.stdout.readline()  # "ready"
    return process, f"http://127.0.0.1:{port}/API/wxml/1.3/index.php"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def numbers(count: int) -> list[str]:
    return [f"1650{n:07d}" for n in range(count)]


async def raw_loop(url: str, count: int, concurrency: int) -> tuple[float, float]:
    """The ceiling: aiohttp posting pre-built bodies, reading each answer, nothing else."""
    request = ApiRequest("sendSavedMMS", {"API_KEY": "k", "MMSID": "35674", "FROM": "60856"})
    template = SavedMmsTemplate.build(request, "skycore")
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    todo = iter(numbers(count))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            for number in todo:
                async with session.post(
                    url, data=template.body(number), headers=headers
                ) as response:
                    await response.read()

        started, cpu = time.perf_counter(), cpu_seconds()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, cpu_seconds() - cpu


async def engine(url: str, count: int, concurrency: int, journal_dir: Path) -> tuple[float, float]:
    """skycore-async's bulk engine: journal on, dedupe on, batches consumed."""
    message = BulkMessage.saved_mms(mms_id=35674, from_="60856")
    journal = journal_dir / f"engine-{time.monotonic_ns()}.journal"
    limits = Limits(rate=None, concurrency=concurrency)
    async with SkycoreClient(api_key="k", base_url=url, limits=limits) as client:
        started, cpu = time.perf_counter(), cpu_seconds()
        sent = 0
        async with client.send_bulk(
            message, numbers(count), journal=journal, batch_size=500
        ) as run:
            async for batch in run:
                sent += batch.count("sent")
        elapsed = time.perf_counter() - started, cpu_seconds() - cpu
    assert sent == count, f"engine sent {sent} of {count}"
    return elapsed


async def measure(url: str, count: int, rounds: int, concurrency: int) -> dict[str, Any]:
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        await raw_loop(url, min(count, 2000), concurrency)  # warm-up: connections, caches
        for round_number in range(rounds):
            # Alternate which client goes first: whatever drifts within a round (the server's
            # state, the other core's load) then favours neither.
            if round_number % 2 == 0:
                raw_s, raw_cpu = await raw_loop(url, count, concurrency)
                eng_s, eng_cpu = await engine(url, count, concurrency, Path(tmp))
            else:
                eng_s, eng_cpu = await engine(url, count, concurrency, Path(tmp))
                raw_s, raw_cpu = await raw_loop(url, count, concurrency)
            rows.append({
                "raw_per_s": count / raw_s, "engine_per_s": count / eng_s,
                "raw_cpu_us": raw_cpu / count * 1e6, "engine_cpu_us": eng_cpu / count * 1e6,
            })  # fmt: skip
    ratio = statistics.median(r["engine_per_s"] / r["raw_per_s"] for r in rows)
    return {"count": count, "rounds": rows, "ratio": ratio, "concurrency": concurrency}


def report(result: dict[str, Any]) -> None:
    med = {k: statistics.median(r[k] for r in result["rounds"]) for k in result["rounds"][0]}
    rounds, count = len(result["rounds"]), result["count"]
    print(f"engine throughput, no rate limit, {count} sends x {rounds} rounds, "
          f"concurrency {result['concurrency']}")  # fmt: skip
    for label, key in (("raw aiohttp loop", "raw"), ("skycore-async   ", "engine")):
        rate, cpu = med[f"{key}_per_s"], med[f"{key}_cpu_us"]
        print(f"  {label} : {rate:8.0f} sends/s  {cpu:6.1f} us CPU/send")
    verdict = "meets" if result["ratio"] >= 0.75 else "MISSES"
    print(f"  ratio engine/raw : {result['ratio']:.2f}  ({verdict} the 0.75 target)")
    ratios = [r["engine_per_s"] / r["raw_per_s"] for r in result["rounds"]]
    if len(ratios) >= 4:
        low, mid, high = statistics.quantiles(ratios, n=4)
        print(f"  per-round ratios : quartiles {low:.2f} / {mid:.2f} / {high:.2f}, "
              f"range {min(ratios):.2f}-{max(ratios):.2f}")  # fmt: skip
    report_figures([
        figure("a", "engine / raw aiohttp loop, sends/s (journal + dedupe on)",
               f"{result['ratio']:.2f}", ">= 0.75", result["ratio"] >= 0.75),
        figure("a", "client CPU per send: engine, raw aiohttp loop",
               f"{med['engine_cpu_us']:.0f} us, {med['raw_cpu_us']:.0f} us"),
        figure("a", "sends/s: engine, raw aiohttp loop",
               f"{med['engine_per_s']:.0f}, {med['raw_per_s']:.0f}"),
    ])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    parser.add_argument("--count", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    count, rounds = (1000, 1) if args.smoke else (args.count, args.rounds)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    server, url = start_server()
    try:
        result = asyncio.run(measure(url, count, rounds, args.concurrency))
    finally:
        server.terminate()
        server.wait()
    report(result)
    if not args.smoke:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "engine.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
