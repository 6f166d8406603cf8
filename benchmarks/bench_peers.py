"""Peers: the clients a user would pick instead, same workload, same server, same run.

Two parts, each client in its own process (``peer_clients.py``, pinned to CPU 0), so that the
CPU time per send is that client's alone:

1. **No limit, fast server.** ``fastserver.py`` (pinned to CPU 1) answers every request with a
   sendSavedMMS success. Every client sends the same bodies at concurrency 32 after a warm-up.
   The clients run in rounds, in an order rotated every round so that drift in the machine's
   load spreads over all of them; each figure is the median over the rounds, and each ratio to
   the engine is taken within a round, then the median. The raw aiohttp loop and the engine
   also run on uvloop (figure f) when the ``uvloop`` extra is installed.
2. **At a known limit, the emulator.** The emulator (its own process, CPU 1) allows L = 200
   calls/s; the clients that have a limiter are set to L, the naive gather has none; each
   sends to L x 10 s recipients. Figures come from the emulator's record: the share of
   recipients accepted, the share of calls answered E113 (throttled), accepted sends per second
   over the client's run / L, and the busiest 1 s window / L. Only the engine retries E113.

    python benchmarks/bench_peers.py           # full: 3 rounds (~2-3 min)
    python benchmarks/bench_peers.py --smoke   # tiny sizes, seconds

The httpx and requests clients get fewer sends (they cost 5-30x more per send); every figure is
per send or per second, so the counts need not match. Full runs write ``results/peers.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import bench_engine
import orjson
import peer_clients
from _common import EmulatorProcess, figure, max_in_window, report_figures, write_result

HERE = Path(__file__).parent
CONCURRENCY = 32
LIMIT = 200.0
LABELS = {
    "raw": "raw aiohttp loop (ceiling)",
    "engine": "skycore-async engine",
    "gather": "naive asyncio.gather",
    "semaphore": "aiohttp+Semaphore+AsyncLimiter",
    "httpx": "httpx.AsyncClient",
    "requests": "requests + thread pool",
}
#: Share of the base count each client sends (the slow ones fewer; figures are per send).
SHARE = {"httpx": 0.05, "requests": 0.15}
FULL = {"count": 10_000, "warmup": 1_000, "rounds": 3, "limit_seconds": 10.0}
SMOKE = {"count": 200, "warmup": 20, "rounds": 1, "limit_seconds": 1.0}


def lineup(uvloop: bool) -> list[tuple[str, str]]:
    """(client, loop) pairs of the no-limit part."""
    pairs = [(name, "threads" if name == "requests" else "asyncio") for name in LABELS]
    if uvloop:
        pairs += [("raw", "uvloop"), ("engine", "uvloop")]
    return pairs


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One client run in a fresh process; its JSON line."""
    command = [sys.executable, str(HERE / "peer_clients.py"), orjson.dumps(spec).decode()]
    done = subprocess.run(command, capture_output=True, check=False, timeout=600)
    if done.returncode != 0:
        sys.stderr.write(done.stderr.decode(errors="replace"))
        raise RuntimeError(f"{spec['client']} ({spec['loop']}) failed: exit {done.returncode}")
    result: dict[str, Any] = orjson.loads(done.stdout)
    if result["ok"] != result["sends"]:
        raise RuntimeError(f"{spec['client']}: {result['ok']} of {result['sends']} succeeded")
    return result


def no_limit(sizes: dict[str, Any], uvloop: bool) -> dict[str, Any]:
    """Part 1: every client against the fast server, rotated rounds."""
    pairs = lineup(uvloop)
    rounds: list[dict[str, dict[str, Any]]] = []
    server, url = bench_engine.start_server()
    try:
        for number in range(sizes["rounds"]):
            shift = number % len(pairs)
            row: dict[str, dict[str, Any]] = {}
            for name, loop in pairs[shift:] + pairs[:shift]:
                share = SHARE.get(name, 1.0)
                spec = {
                    "client": name, "loop": loop, "url": url, "concurrency": CONCURRENCY,
                    "count": max(20, int(sizes["count"] * share)),
                    "warmup": max(5, int(sizes["warmup"] * share)),
                }  # fmt: skip
                print(f"  round {number + 1}: {name} ({loop}) ...", file=sys.stderr, flush=True)
                result = run_child(spec)
                result["per_s"] = result["sends"] / result["seconds"]
                result["cpu_us"] = result["cpu_s"] / result["sends"] * 1e6
                row[f"{name}/{loop}"] = result
            rounds.append(row)
    finally:
        server.terminate()
        server.wait()
    return {"pairs": [f"{n}/{lp}" for n, lp in pairs], "rounds": rounds}


def summarise(part: dict[str, Any]) -> list[dict[str, Any]]:
    """Per client: median sends/s and CPU, and the median within-round ratio to the engine."""
    rows = []
    for key in part["pairs"]:
        runs = [r[key] for r in part["rounds"]]
        engines = [r["engine/asyncio"] for r in part["rounds"]]
        pairs = list(zip(runs, engines, strict=True))
        rows.append({
            "key": key, "sends": runs[0]["sends"],
            "per_s": statistics.median(r["per_s"] for r in runs),
            "cpu_us": statistics.median(r["cpu_us"] for r in runs),
            "x_rate": statistics.median(r["per_s"] / e["per_s"] for r, e in pairs),
            "x_cpu": statistics.median(r["cpu_us"] / e["cpu_us"] for r, e in pairs),
        })  # fmt: skip
    return rows


def uvloop_ratios(part: dict[str, Any]) -> dict[str, float]:
    """Within-round ratios for figure (f): engine/raw on uvloop, uvloop/asyncio per client."""

    def med(a: str, b: str) -> float:
        return float(statistics.median(r[a]["per_s"] / r[b]["per_s"] for r in part["rounds"]))

    return {
        "engine_over_raw_uvloop": med("engine/uvloop", "raw/uvloop"),
        "engine_over_raw_asyncio": med("engine/asyncio", "raw/asyncio"),
        "engine_uvloop_speedup": med("engine/uvloop", "engine/asyncio"),
        "raw_uvloop_speedup": med("raw/uvloop", "raw/asyncio"),
    }


def at_limit(sizes: dict[str, Any]) -> list[dict[str, Any]]:
    """Part 2: the clients with a limiter set to L, and the naive gather, at the emulator."""
    count = int(LIMIT * sizes["limit_seconds"])
    rows = []
    for name in ("engine", "semaphore", "gather"):
        rate = None if name == "gather" else LIMIT
        print(f"  at the limit: {name} ...", file=sys.stderr, flush=True)
        with EmulatorProcess({"throughput": {"sendSavedMMS": LIMIT}}) as emulator:
            spec = {"client": name, "loop": "asyncio", "url": emulator.url, "rate": rate,
                    "concurrency": CONCURRENCY, "count": count, "warmup": 0}  # fmt: skip
            command = [sys.executable, str(HERE / "peer_clients.py"), orjson.dumps(spec).decode()]
            done = subprocess.run(command, capture_output=True, check=True, timeout=600)
            client = orjson.loads(done.stdout)
            record = emulator.report()
        accepted = sorted(record["accepted"])
        seconds = client["end"] - client["start"]
        calls = max(record["requests"], 1)
        rows.append({
            "client": name, "rate_setting": rate, "recipients": count, "calls": record["requests"],
            "accepted": len(accepted), "seconds": seconds,
            "accepted_pct": 100 * len(accepted) / count,
            "x_limit": len(accepted) / seconds / LIMIT,
            "e113_pct": 100 * record["answers"].get("E113", 0) / calls,
            "max_1s_x_limit": max_in_window(accepted) / LIMIT,
            "cpu_us": client["cpu_s"] / count * 1e6,
        })  # fmt: skip
    return rows


def report(rows: list[dict[str, Any]], part: dict[str, Any], limited: list[dict[str, Any]]) -> None:
    """Print both tables."""
    rounds = len(part["rounds"])
    print(f"peers, no rate limit, fast loopback server, concurrency {CONCURRENCY}, "
          f"median of {rounds} rotated round(s); each client in its own process")  # fmt: skip
    print(f"  {'client':32} {'loop':8} {'sends':>6} {'sends/s':>8} {'CPU us/send':>11} "
          f"{'rate/engine':>11} {'CPU/engine':>10}")  # fmt: skip
    for r in rows:
        name, loop = r["key"].split("/")
        print(f"  {LABELS[name]:32} {loop:8} {r['sends']:>6} {r['per_s']:>8.0f} "
              f"{r['cpu_us']:>11.0f} {r['x_rate']:>11.2f} {r['x_cpu']:>10.2f}")  # fmt: skip
    print(f"\npeers at a known limit: emulator allows L = {LIMIT:.0f}/s; "
          f"engine and AsyncLimiter set to L, gather unlimited")  # fmt: skip
    print(f"  {'client':32} {'recipients':>10} {'accepted %':>10} {'E113 % of calls':>15} "
          f"{'accepted/s / L':>14} {'busiest 1 s / L':>15} {'CPU us/send':>11}")  # fmt: skip
    for r in limited:
        print(f"  {LABELS[r['client']]:32} {r['recipients']:>10} {r['accepted_pct']:>10.1f} "
              f"{r['e113_pct']:>15.2f} {r['x_limit']:>14.3f} {r['max_1s_x_limit']:>15.2f} "
              f"{r['cpu_us']:>11.0f}")  # fmt: skip
    print("  (no client retries here but the engine, which retries E113 after slowing down)")


def figures(
    rows: list[dict[str, Any]], ratios: dict[str, float] | None, limited: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The rows this script adds to the combined table."""
    out = []
    for r in rows:
        name, loop = r["key"].split("/")
        if r["key"] == "engine/asyncio" or loop == "uvloop":
            continue
        out.append(figure(
            "p", f"{LABELS[name]} / engine: sends/s, CPU per send",
            f"{r['x_rate']:.2f}x, {r['x_cpu']:.2f}x ({r['per_s']:.0f}/s, {r['cpu_us']:.0f} us)",
        ))  # fmt: skip
    for r in limited:
        out.append(figure(
            "p", f"at limit: {LABELS[r['client']]}: accepted, E113, max 1 s / L",
            f"{r['accepted_pct']:.1f} %, {r['e113_pct']:.1f} % of calls, "
            f"{r['max_1s_x_limit']:.2f}",
        ))  # fmt: skip
    if ratios is None:
        out.append(figure("f", "uvloop", "not installed (pip install -e '.[bench]')"))
        return out
    out += [
        figure("f", "uvloop: engine / raw aiohttp, both on uvloop (asyncio in brackets)",
               f"{ratios['engine_over_raw_uvloop']:.2f} "
               f"({ratios['engine_over_raw_asyncio']:.2f})"),
        figure("f", "uvloop / asyncio sends/s: engine, raw aiohttp loop",
               f"{ratios['engine_uvloop_speedup']:.2f}x, {ratios['raw_uvloop_speedup']:.2f}x"),
    ]  # fmt: skip
    return out


def sniffio_installed() -> bool:
    """Whether httpx's fair figure is possible (see the note printed when it is not)."""
    try:
        import sniffio  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--rounds", type=int, help="override the number of rounds")
    args = parser.parse_args()
    sizes = dict(SMOKE if args.smoke else FULL)
    if args.rounds:
        sizes["rounds"] = args.rounds
    uvloop = peer_clients.uvloop_available()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    part = no_limit(sizes, uvloop)
    rows = summarise(part)
    limited = at_limit(sizes)
    report(rows, part, limited)
    ratios = uvloop_ratios(part) if uvloop else None
    if ratios is None:
        print("\nuvloop: not installed, so no uvloop column (pip install -e '.[bench]')")
    else:
        print(f"\nuvloop (f): engine/raw {ratios['engine_over_raw_uvloop']:.2f} on uvloop, "
              f"{ratios['engine_over_raw_asyncio']:.2f} on asyncio; uvloop/asyncio sends/s: "
              f"engine {ratios['engine_uvloop_speedup']:.2f}x, "
              f"raw {ratios['raw_uvloop_speedup']:.2f}x")  # fmt: skip
    if not sniffio_installed():
        print("\nnote: sniffio is not installed, so httpcore retries a failing `import sniffio` "
              "on every request (about a quarter of httpx's time, perf-notes); install it "
              "beside httpx for a fair httpx figure")  # fmt: skip
    report_figures(figures(rows, ratios, limited))
    if not args.smoke:
        result = {"sizes": sizes, "load_before": load, "no_limit": part, "summary": rows,
                  "uvloop": ratios, "at_limit": limited, "limit": LIMIT}  # fmt: skip
        print(f"\nresults saved to {write_result('peers', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
