"""Peak memory of a complete bulk run for 10k, 100k and 1M recipients: is it flat?

Every measurement is a fresh child process (``ru_maxrss`` of that child alone) running one
whole ``send_bulk`` campaign with the defaults a campaign uses: journal on, dedupe on,
concurrency 32, result batches consumed. Recipients come from a lazily generated input (a
generator, never a list) and, separately, from a CSV file read with ``read_csv`` (written to
a temp dir first, streaming).

Transport. The 1M runs use an in-process instant transport: ``MockTransport`` answering
every request with a canned sendSavedMMS success and a unique tracking id, so that a million
sends take about a minute instead of several. What is under test is the *engine's* memory
(input, workers, dedupe set, journal, batches), not aiohttp's; aiohttp's footprint is
a constant (one session, 32 keep-alive connections), which the ``http`` variant shows by
running the same engine against the real loopback server (``fastserver.py``) at 10k and 100k.
``MockTransport(keep=0)`` records no request, so the double itself does not grow.

    python benchmarks/bench_memory.py             # full: 10k, 100k, 1M (~3-5 min)
    python benchmarks/bench_memory.py --smoke     # 1k and 5k, seconds
    python benchmarks/bench_memory.py --diagnose  # also a tracemalloc diff, 100k -> 1M (+~7 min)

Also printed: a baseline (a child that only imports skycore_async and aiohttp), a control
(the generator run with ``dedupe=False``) and probes inside the largest run (RSS, bytes held by
the dedupe set, gc-tracked objects at 10k/100k/1M outcomes), which show what grows.

Target (issue 4): peak RSS at 1M within 1.2 x that at 10k. When it misses (or with
``--diagnose``), a traced child diffs tracemalloc snapshots taken at 100k and 1M outcomes
and prints the ten allocation sites whose size changed most.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bench_engine  # the same fast-server launcher (same directory, on sys.path)
from _common import figure, report_figures, write_recipients_csv

HERE = Path(__file__).parent
RESULTS = HERE / "results"
TARGET = 1.2
NO_DEDUPE = "gen, dedupe off"  # the control: the same run without the dedupe set
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

# ---------------------------------------------------------------------- shared helpers


def number(i: int) -> str:
    """The i-th distinct, valid (US, 11-digit) recipient number."""
    return f"1650{i:07d}"


def generated(count: int) -> Iterator[str]:
    """Recipients produced lazily, one at a time (never a list)."""
    for i in range(count):
        yield number(i)


def mb(kib: float) -> float:
    return kib / 1024


# ---------------------------------------------------------------------- child process


def rss_kib() -> int:
    """Current resident set size in KiB (Linux), or the peak where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * PAGE // 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS


def instant_transport() -> Any:
    """MockTransport answering every send at once with a success and a unique tracking id."""
    from skycore_async import HttpResponse, MockTransport

    counter = itertools.count(1)
    prefix = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<RESPONSE><STATUS>Success</STATUS>'
        b"<MMSID>35674</MMSID><TRACKINGID>MMS_"
    )
    suffix = (
        b"</TRACKINGID><TO>16501234123</TO>"
        b"<STATUSDETAILS>MMS request accepted and queued for delivery</STATUSDETAILS></RESPONSE>"
    )

    async def handler(_request: Any) -> HttpResponse:
        await asyncio.sleep(0)  # yield once, as a network send would: all workers in flight
        return HttpResponse(200, b"%b%d%b" % (prefix, next(counter), suffix), "text/xml")

    return MockTransport(handler, keep=0)


def dedupe_bytes(run: Any) -> tuple[int, int]:
    """Bytes held by the run's dedupe set (bitmap + sorted runs + buffer), and its size.

    Reads the engine's private ``_dedupe`` (a ``NumberSet``): a probe, not an API.
    """
    numbers = getattr(run, "_dedupe", None)
    if numbers is None:
        return 0, 0
    held = len(numbers._bits) + sys.getsizeof(numbers._buffer)
    held += sum(r.buffer_info()[1] * r.itemsize for r in numbers._runs)
    return held, len(numbers)


async def child_run(spec: dict[str, Any]) -> dict[str, Any]:
    from skycore_async import BulkMessage, SkycoreClient, read_csv

    count: int = spec["count"]
    checkpoints = sorted({c for c in (10_000, 100_000, 1_000_000, count) if c <= count})
    trace_at = set(spec.get("trace_at", ()))
    snapshots: dict[int, tracemalloc.Snapshot] = {}
    probes: dict[str, dict[str, float]] = {}
    if spec["source"] == "csv":
        recipients: Any = read_csv(spec["csv"])
    else:
        recipients = generated(count)
    if spec["transport"] == "http":
        client = SkycoreClient(api_key="k", base_url=spec["url"])
    else:
        client = SkycoreClient(api_key="k", base_url=spec["url"], transport=instant_transport())
    message = BulkMessage.saved_mms(mms_id=35674, from_="60856")
    sent = done = 0
    started = time.perf_counter()
    bulk = client.send_bulk(
        message, recipients, journal=spec["journal"], dedupe=spec.get("dedupe", True)
    )
    async with client, bulk as run:
        async for batch in run:
            sent += batch.count("sent")
            before, done = done, done + len(batch)
            for mark in checkpoints:
                if before < mark <= done:
                    held, size = dedupe_bytes(run)
                    probes[str(mark)] = {
                        "seconds": time.perf_counter() - started,
                        "rss_kib": rss_kib(),
                        "dedupe_kib": held / 1024,
                        "dedupe_numbers": size,
                        "gc_objects": len(gc.get_objects()),
                    }
                    if mark in trace_at:
                        snapshots[mark] = tracemalloc.take_snapshot()
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {
        "sent": sent,
        "done": done,
        "elapsed_s": elapsed,
        "sends_per_s": done / elapsed if elapsed else 0.0,
        "probes": probes,
        "journal_bytes": os.path.getsize(spec["journal"]),
    }
    if len(snapshots) == 2:
        result["trace"] = trace_diff(snapshots, probes)
    return result


def trace_diff(snapshots: dict[int, tracemalloc.Snapshot], probes: dict[str, Any]) -> Any:
    """Top 10 growing allocation sites between the two snapshots."""
    (lo, old), (hi, new) = sorted(snapshots.items())
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    old, new = old.filter_traces(ignore), new.filter_traces(ignore)
    sites = []
    for stat in new.compare_to(old, "lineno")[:10]:
        frame = stat.traceback[0]
        sites.append({
            "site": f"{frame.filename}:{frame.lineno}",
            "size_diff_kib": stat.size_diff / 1024,
            "size_kib": stat.size / 1024,
            "count_diff": stat.count_diff,
        })  # fmt: skip
    traced_lo = sum(s.size for s in old.statistics("filename"))
    traced_hi = sum(s.size for s in new.statistics("filename"))
    return {
        "from": lo,
        "to": hi,
        "traced_kib": [traced_lo / 1024, traced_hi / 1024],
        "rss_kib": [probes[str(lo)]["rss_kib"], probes[str(hi)]["rss_kib"]],
        "sites": sites,
    }


def child_main(spec: dict[str, Any]) -> None:
    if spec.get("trace_at"):
        tracemalloc.start(1)  # 1 frame: ~13x slower already; 8 frames is ~55x
    result: dict[str, Any] = {}
    if spec["mode"] == "baseline":
        import aiohttp  # noqa: F401 (imported for its footprint)

        import skycore_async  # noqa: F401
    else:
        result = asyncio.run(child_run(spec))
    result["peak_rss_kib"] = peak_kib()
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------------- parent side


def spawn(spec: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; return what it reported."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr.decode(errors="replace"))
        raise RuntimeError(f"child failed ({out.returncode}): {spec}")
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


def label(count: int) -> str:
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    return f"{count // 1000}k" if count % 1000 == 0 else str(count)


def measure(sizes: list[int], http_sizes: list[int], tmp: Path, url: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    baseline = spawn({"mode": "baseline"})
    baseline_mb = mb(baseline["peak_rss_kib"])
    print(f"  baseline (import skycore_async + aiohttp only): {baseline_mb:.1f} MB")
    plan = [("generator", "instant", n) for n in sizes]
    plan += [("csv", "instant", n) for n in sizes]
    plan += [("generator", "http", n) for n in http_sizes]
    plan += [(NO_DEDUPE, "instant", n) for n in (sizes[0], sizes[-1])]  # the control
    for source, transport, count in plan:
        spec: dict[str, Any] = {
            "mode": "run",
            "source": "csv" if source == "csv" else "gen",
            "transport": transport,
            "count": count,
            "url": url,
            "dedupe": source != NO_DEDUPE,
            "journal": str(tmp / f"{transport}-{count}-{time.monotonic_ns()}.journal"),
        }
        if source == "csv":
            csv_path = tmp / f"recipients-{count}.csv"
            if not csv_path.exists():
                write_recipients_csv(csv_path, count)
            spec["csv"] = str(csv_path)
        result = spawn(spec)
        os.unlink(spec["journal"])
        assert result["sent"] == count, f"{source}/{transport}/{count}: sent {result['sent']}"
        row = {"source": source, "transport": transport, "count": count, **result}
        rows.append(row)
        print(
            f"  {source:16} {transport:7} {label(count):>5}: {mb(result['peak_rss_kib']):6.1f} MB "
            f"peak  ({result['sends_per_s']:.0f} sends/s, {result['elapsed_s']:.1f} s)",
            flush=True,
        )
    return {"baseline_rss_kib": baseline["peak_rss_kib"], "rows": rows}


def add_ratios(result: dict[str, Any], sizes: list[int]) -> None:
    """Ratio of each row to the smallest size of its (source, transport) group."""
    smallest, largest = min(sizes), max(sizes)
    groups: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for row in result["rows"]:
        groups.setdefault((row["source"], row["transport"]), {})[row["count"]] = row
    verdicts = []
    for (source, transport), by_size in groups.items():
        base = by_size[min(by_size)]["peak_rss_kib"]
        for row in by_size.values():
            row["ratio"] = row["peak_rss_kib"] / base
        if smallest in by_size and largest in by_size and transport == "instant":
            if source == NO_DEDUPE:
                control = by_size[largest]["peak_rss_kib"] / by_size[smallest]["peak_rss_kib"]
                result["control_ratio"] = control
                continue
            ratio = by_size[largest]["peak_rss_kib"] / by_size[smallest]["peak_rss_kib"]
            verdicts.append({
                "source": source, "transport": transport, "ratio": ratio,
                "from": smallest, "to": largest, "pass": ratio <= TARGET,
                "margin": TARGET - ratio,
            })  # fmt: skip
    result["verdicts"] = verdicts


def report(result: dict[str, Any]) -> None:
    print("peak RSS of a complete bulk run (a fresh process per row; journal on; dedupe on)")
    print(f"  {'input':16} {'transport':9} {'size':>6} {'peak MB':>8} {'x smallest':>10} "
          f"{'sends/s':>8}")  # fmt: skip
    for row in result["rows"]:
        print(
            f"  {row['source']:16} {row['transport']:9} {label(row['count']):>6} "
            f"{mb(row['peak_rss_kib']):8.1f} {row['ratio']:10.2f} {row['sends_per_s']:8.0f}"
        )
    print(f"  baseline: a process that only imports skycore_async and aiohttp: "
          f"{mb(result['baseline_rss_kib']):.1f} MB")  # fmt: skip
    for v in result["verdicts"]:
        if v["pass"]:
            verdict = f"PASS, {v['margin']:.2f} under the {TARGET} target"
        else:
            verdict = f"MISS, {-v['margin']:.2f} over the {TARGET} target"
        print(f"  {label(v['to'])}/{label(v['from'])} ratio ({v['source']}): {v['ratio']:.2f}  "
              f"({verdict})")  # fmt: skip
    if "control_ratio" in result:
        sizes = f"{label(max(result['sizes']))}/{label(min(result['sizes']))}"
        print(f"  {sizes} ratio with dedupe off (control, not the target): "
              f"{result['control_ratio']:.2f}")  # fmt: skip
    growth(result)
    report_figures(
        figure("d", f"peak RSS {label(v['to'])} / {label(v['from'])} ({v['source']})",
               f"{v['ratio']:.3f} ({mb(_peak(result, v['source'], v['to'])):.1f} MB vs "
               f"{mb(_peak(result, v['source'], v['from'])):.1f} MB)", f"<= {TARGET}", v["pass"])
        for v in result["verdicts"]
    )  # fmt: skip
    http = [r for r in result["rows"] if r["transport"] == "http"]
    for row in http:
        same = next(
            (r for r in result["rows"]
             if r["transport"] == "instant" and r["source"] == row["source"]
             and r["count"] == row["count"]),
            None,
        )  # fmt: skip
        if same is not None:
            extra = mb(row["peak_rss_kib"] - same["peak_rss_kib"])
            print(f"  HTTP stack (aiohttp, real loopback server) at {label(row['count'])}: "
                  f"{extra:+.1f} MB over the instant transport")  # fmt: skip


def _peak(result: dict[str, Any], source: str, count: int) -> int:
    """Peak RSS (KiB) of the instant-transport row for ``source`` at ``count``."""
    return int(next(
        r["peak_rss_kib"] for r in result["rows"]
        if r["source"] == source and r["transport"] == "instant" and r["count"] == count
    ))  # fmt: skip


def growth(result: dict[str, Any]) -> None:
    """What grows: probes taken inside the largest generator run, and the engine's share."""
    rows = [r for r in result["rows"] if r["transport"] == "instant" and r["source"] == "generator"]
    if len(rows) < 2:
        return
    small, large = min(rows, key=lambda r: r["count"]), max(rows, key=lambda r: r["count"])
    base = result["baseline_rss_kib"]
    above = (large["peak_rss_kib"] - base) / max(1, small["peak_rss_kib"] - base)
    print(f"  above the import baseline: {mb(small['peak_rss_kib'] - base):.1f} MB at "
          f"{label(small['count'])}, {mb(large['peak_rss_kib'] - base):.1f} MB at "
          f"{label(large['count'])} ({above:.1f}x)")  # fmt: skip
    probes = large["probes"]
    print(f"  what grows, probed inside the {label(large['count'])} generator run:")
    for mark, probe in probes.items():
        print(f"    at {label(int(mark)):>5}: RSS {mb(probe['rss_kib']):5.1f} MB, dedupe set "
              f"{mb(probe['dedupe_kib']):5.1f} MB ({probe['dedupe_numbers']:,} numbers), "
              f"{probe['gc_objects']:,} gc-tracked objects")  # fmt: skip
    first, last = probes[min(probes, key=int)], probes[max(probes, key=int)]
    rss_up = last["rss_kib"] - first["rss_kib"]
    set_up = last["dedupe_kib"] - first["dedupe_kib"]
    per = set_up * 1024 / max(1, last["dedupe_numbers"] - first["dedupe_numbers"])
    print(f"    RSS {mb(rss_up):+.1f} MB, of which the dedupe set {mb(set_up):+.1f} MB "
          f"({per:.1f} bytes per new number); live objects "
          f"{last['gc_objects'] - first['gc_objects']:+,}")  # fmt: skip


def diagnose(tmp: Path, url: str, small: int, large: int) -> dict[str, Any]:
    """A traced child: what grew between ``small`` and ``large`` outcomes."""
    spec = {
        "mode": "run", "source": "gen", "transport": "instant", "count": large, "url": url,
        "journal": str(tmp / f"trace-{time.monotonic_ns()}.journal"), "trace_at": [small, large],
    }  # fmt: skip
    result = spawn(spec, timeout=1800)
    trace: dict[str, Any] = result["trace"]
    rss = [mb(k) for k in trace["rss_kib"]]
    traced = trace["traced_kib"]
    print(f"tracemalloc diff, {label(small)} -> {label(large)} outcomes (one traced process)")
    print("  top 10 allocation sites by size change (tracing inflates RSS: its own trace table)")
    print(f"  current RSS {rss[0]:.1f} -> {rss[1]:.1f} MB ({rss[1] - rss[0]:+.1f}); "
          f"traced Python heap {mb(traced[0]):.1f} -> {mb(traced[1]):.1f} MB "
          f"({mb(traced[1] - traced[0]):+.1f})")  # fmt: skip
    for site in trace["sites"]:
        print(f"  {site['size_diff_kib']:+9.1f} KiB  {site['count_diff']:+8d} blocks  "
              f"{_short(site['site'])}")  # fmt: skip
    return trace


def _short(where: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in where:
            return where.split(marker, 1)[1]
    return where.replace(str(HERE.parent) + "/", "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="1k and 5k only, for CI")
    parser.add_argument("--diagnose", action="store_true", help="always run the tracemalloc diff")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return 0
    sizes = [1_000, 5_000] if args.smoke else [10_000, 100_000, 1_000_000]
    http_sizes = sizes[:1] if args.smoke else sizes[:2]
    server, url = bench_engine.start_server()
    try:
        with tempfile.TemporaryDirectory(prefix="skycore-bench-mem-") as tmp:
            result = measure(sizes, http_sizes, Path(tmp), url)
            result["sizes"] = sizes
            add_ratios(result, sizes)
            report(result)
            missed = any(not v["pass"] for v in result["verdicts"])
            if not args.smoke and (missed or args.diagnose):
                print("diagnosing what grows (tracemalloc, ~13x slower: several minutes) ...",
                      flush=True)  # fmt: skip
                result["diagnosis"] = diagnose(Path(tmp), url, sizes[1], sizes[-1])
    finally:
        server.terminate()
        server.wait()
    result["target"] = TARGET
    if not args.smoke:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "memory.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
