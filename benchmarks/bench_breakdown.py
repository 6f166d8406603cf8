"""Client CPU per send, broken into encode, decode, journal, engine bookkeeping and transport.

Method: seven workloads run one after the other in one child process, each at two sizes; the
per-send figure is ``(cost(N_large) - cost(N_small)) / (N_large - N_small)``, which cancels
each workload's fixed costs (event loop, session, journal file, dedupe bitmap, connects).

* ``encode``: what the engine does per send to build a request: the campaign template's body
  for the number (``SavedMmsTemplate.body``) and the ``HttpRequest``;
* ``decode``: ``raise_for_failure(decode_response(reply))`` of fastserver's success reply;
* ``journal``: ``Journal.claim`` (one ``os.write`` each) and ``Journal.complete`` of an
  ``Outcome`` built beforehand (buffered, flushed every 500 as the batches do);
* ``engine, instant transport``: the whole bulk engine (journal and dedupe on, concurrency 32)
  against a transport that answers at once without touching the loop;
* ``transport over HTTP``: 32 workers sending pre-built requests through the engine's own
  ``AiohttpTransport`` (with the timeouts the client passes), nothing else;
* ``engine over HTTP`` and ``raw aiohttp over HTTP``: the engine and the raw aiohttp loop of
  ``peer_clients.py`` against ``fastserver.py`` (another process, pinned to CPU 1).

The breakdown is then: encode, decode and journal as measured in isolation; **engine
bookkeeping** = engine with the instant transport - (encode + decode + journal): the worker
loop, number normalisation, dedupe, throttle slot, the execute pipeline, outcome, batches;
**transport** = the AiohttpTransport loop over HTTP: aiohttp, asyncio, the kernel; **the
rest** = engine over HTTP - instant engine - transport: what the same work costs more among 32
concurrent requests (caches, GC, wake-ups); it can be slightly negative, since the transport
loop's own worker code counts in "transport" and the engine's in "bookkeeping". The parts add
up to the engine over HTTP by construction. Also printed: the raw aiohttp loop's total, and
AiohttpTransport loop - raw loop (the transport wrapper's cost over a bare session.post).

Two units, from the same child code:

* **CPU us** (``time.process_time``), the best of 3 passes in one process: noisy on a shared
  machine, so compare stages within one run;
* **instructions** under valgrind's callgrind (a dump on each ``os.getppid()`` marks segment
  boundaries): deterministic, whatever the machine's load, but user space only (syscalls such
  as the journal's ``os.write`` per send are not counted); full mode only (Python under
  callgrind starts in ~40 s), or with ``--callgrind``. Needs valgrind.

    python benchmarks/bench_breakdown.py            # full: CPU and instructions (~3 min)
    python benchmarks/bench_breakdown.py --smoke    # CPU only, tiny sizes, seconds
    python benchmarks/bench_breakdown.py --profile 30000   # cProfile of the engine's own work

The instruction ratio raw/engine over HTTP is the throughput ratio the engine would reach if
every instruction cost the same: the repeatable counterpart of bench_engine.py's figure (a).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).parent
SAMPLE = 2000  # numbers that repeat in the isolated stages (the engine's own are all distinct)
REPLY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<RESPONSE><STATUS>Success</STATUS>'
    b"<MMSID>35674</MMSID><TRACKINGID>MMS_1</TRACKINGID><TO>16501234123</TO>"
    b"<STATUSDETAILS>MMS request accepted and queued for delivery</STATUSDETAILS></RESPONSE>"
)
STAGES = (
    "encode",
    "decode",
    "journal",
    "engine_instant",
    "transport_http",
    "engine_http",
    "raw_http",
)
#: (small, large) sizes per mode: isolated stages, engine with the instant transport, HTTP.
SIZES = {
    "cpu": {"pure": (2_000, 20_000), "instant": (2_000, 12_000), "http": (1_000, 5_000)},
    "callgrind": {"pure": (500, 2_500), "instant": (300, 1_300), "http": (200, 1_000)},
    "smoke": {"pure": (50, 300), "instant": (50, 300), "http": (50, 300)},
}
KIND = {"encode": "pure", "decode": "pure", "journal": "pure",
        "engine_instant": "instant", "transport_http": "http", "engine_http": "http",
        "raw_http": "http"}  # fmt: skip

# ---------------------------------------------------------------------- child: the workloads


def numbers(start: int, count: int) -> list[str]:
    """Distinct numbers (so that dedupe lets every one through)."""
    return [f"1650{n:07d}" for n in range(start, start + count)]


class InstantTransport:
    """Answers every request with the success reply at once (never yields to the loop)."""

    async def send(self, request: Any, *, connect_timeout: float, read_timeout: float) -> Any:
        """The canned success reply."""
        from skycore_async import HttpResponse

        return HttpResponse(200, REPLY, "text/xml")

    async def aclose(self) -> None:
        """Nothing to release."""


def prepare(stage: str, count: int, url: str, tmp: Path, offset: int) -> Callable[[], object]:
    """Everything a measured run needs, built outside it; returns the run itself."""
    import peer_clients

    from skycore_async import HttpRequest, Outcome
    from skycore_async.journal import Journal
    from skycore_async.protocol import decode_response, raise_for_failure

    todo = numbers(offset, count)
    if stage == "encode":
        template, headers = peer_clients._TEMPLATE, peer_clients.HEADERS

        def encode() -> None:
            for number in todo:
                HttpRequest("POST", url, body=template.body(number), headers=headers,
                            action="sendSavedMMS")  # fmt: skip

        return encode
    if stage == "decode":
        return lambda: [raise_for_failure(decode_response(REPLY)) for _ in range(count)]
    if stage == "journal":
        journal, _ = Journal.open(tmp / f"j{offset}", {"action": "sendSavedMMS"}, resume=False)
        outcomes = [Outcome(i, n, "sent", tracking_id=f"MMS_{i}", attempts=1)
                    for i, n in enumerate(todo)]  # fmt: skip

        def record() -> None:
            for i, outcome in enumerate(outcomes):
                journal.claim(i, outcome.to)
                journal.complete(outcome)
                if i % 500 == 499:
                    journal.flush()
            journal.close()

        return record
    if stage == "raw_http":
        return lambda: asyncio.run(peer_clients.raw(url, todo, 32, None))
    if stage == "engine_http":
        return lambda: asyncio.run(peer_clients.engine(url, todo, 32, None))
    if stage == "transport_http":
        requests = [HttpRequest("POST", url, body=peer_clients.body(n),
                                headers=peer_clients.HEADERS, action="sendSavedMMS")
                    for n in todo]  # fmt: skip
        return lambda: asyncio.run(transport_loop(requests))
    return lambda: asyncio.run(engine_instant(todo, tmp / f"e{offset}"))


async def transport_loop(requests: list[Any]) -> None:
    """32 workers sending pre-built requests through the engine's own AiohttpTransport."""
    from skycore_async import Timeouts
    from skycore_async.transport import AiohttpTransport

    transport, timeouts, todo = AiohttpTransport(pool_size=32), Timeouts(), iter(requests)

    async def worker() -> None:
        for request in todo:
            response = await transport.send(
                request, connect_timeout=timeouts.connect, read_timeout=timeouts.read
            )
            assert b"Success" in response.body

    try:
        await asyncio.gather(*(worker() for _ in range(32)))
    finally:
        await transport.aclose()


async def engine_instant(todo: list[str], journal: Path) -> int:
    """The bulk engine (journal and dedupe on, concurrency 32) against InstantTransport."""
    from skycore_async import BulkMessage, Limits, SkycoreClient

    message = BulkMessage.saved_mms(mms_id="35674", from_="60856")
    limits = Limits(rate=None, concurrency=32)
    sent = 0
    client = SkycoreClient(api_key="test-key", base_url="http://127.0.0.1:9/", limits=limits,
                           transport=InstantTransport())  # fmt: skip
    async with client, client.send_bulk(message, todo, journal=journal) as run:
        async for batch in run:
            sent += batch.count("sent")
    assert sent == len(todo), f"instant engine sent {sent} of {len(todo)}"
    return sent


def child(mode: str, url: str, passes: int) -> None:
    """Run every stage at both sizes; print the segment labels (and CPU times) as JSON.

    ``os.getppid()`` marks each segment end: under callgrind (``--dump-before=getppid``)
    each call writes a dump holding the instructions since the previous one.
    """
    import peer_clients  # noqa: F401  (imports happen before the first mark)

    import skycore_async  # noqa: F401

    labels: list[str] = []
    cpu: list[float] = []

    def mark(label: str) -> None:
        os.getppid()
        labels.append(label)
        cpu.append(time.process_time())

    mark("startup")
    offset = 0
    with tempfile.TemporaryDirectory(prefix="skycore-breakdown-") as tmp:
        for _ in range(passes):
            for stage in STAGES:
                small, large = SIZES[mode][KIND[stage]]
                for size, label in ((small // 2, "warm"), (small, "small"), (large, "large")):
                    run = prepare(stage, size, url, Path(tmp), offset)
                    offset += size
                    mark("setup")
                    run()
                    mark(f"{stage}:{label}")
    segments = [b - a for a, b in itertools.pairwise(cpu)]
    sys.stdout.buffer.write(orjson.dumps({"labels": labels[1:], "cpu": segments}) + b"\n")


# ---------------------------------------------------------------------- parent


def per_send(values: dict[str, list[float]], mode: str) -> dict[str, float]:
    """Per stage: (large - small) / (N_large - N_small), best over the passes."""
    out = {}
    for stage in STAGES:
        small, large = SIZES[mode][KIND[stage]]
        pairs = zip(values[f"{stage}:small"], values[f"{stage}:large"], strict=True)
        out[stage] = min((b - a) / (large - small) for a, b in pairs)
    return out


def by_label(labels: list[str], values: list[float]) -> dict[str, list[float]]:
    """Segment values grouped by label, in order (one per pass)."""
    grouped: dict[str, list[float]] = {}
    for label, value in zip(labels, values, strict=True):
        grouped.setdefault(label, []).append(value)
    return grouped


def run_cpu(url: str, mode: str, passes: int) -> dict[str, float]:
    """CPU seconds per send, per stage, best of ``passes``."""
    command = [sys.executable, __file__, "--child", mode, url, str(passes)]
    done = subprocess.run(command, capture_output=True, check=True, timeout=900)
    data = orjson.loads(done.stdout)
    return per_send(by_label(data["labels"], data["cpu"]), mode)


def run_callgrind(url: str) -> dict[str, float]:
    """Instructions per send, per stage (one pass: the counts are deterministic)."""
    with tempfile.TemporaryDirectory(prefix="skycore-callgrind-") as tmp:
        command = [
            "valgrind", "--tool=callgrind", "--dump-before=getppid",
            f"--callgrind-out-file={tmp}/out",
            sys.executable, __file__, "--child", "callgrind", url, "1",
        ]  # fmt: skip
        env = os.environ | {"PYTHONHASHSEED": "0"}
        done = subprocess.run(command, capture_output=True, check=True, timeout=1800, env=env)
        labels = orjson.loads(done.stdout)["labels"]
        dumps = len(list(Path(tmp).glob("out.*")))
        if dumps != len(labels) + 1:  # something else called getppid(): segments unknown
            raise RuntimeError(f"{dumps} callgrind dumps for {len(labels) + 1} marks")
        counts = [dump_total(Path(tmp) / f"out.{n}") for n in range(1, len(labels) + 2)]
    # Dump 1 closes the start-up segment; dump k + 1 closes the segment labelled labels[k].
    return per_send(by_label(labels, [float(c) for c in counts[1:]]), "callgrind")


def dump_total(path: Path) -> int:
    """The instruction total of one callgrind dump."""
    match = re.search(r"^totals:\s*(\d+)", path.read_text(errors="replace"), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no totals line in {path}")
    return int(match.group(1))


ROWS = (
    ("encode", "encode: template body + HttpRequest"),
    ("decode", "decode: decode_response + raise_for_failure"),
    ("journal", "journal: claim (os.write) + complete (orjson)"),
    ("bookkeeping", "engine bookkeeping (instant engine - the 3 above)"),
    ("transport", "transport: AiohttpTransport loop over HTTP"),
    ("interaction", "the rest: engine over HTTP - instant - transport"),
    ("engine_http", "= engine over HTTP, per send"),
    ("raw_http", "raw aiohttp loop over HTTP, per send"),
    ("wrapper", "AiohttpTransport loop - raw aiohttp loop"),
)
TOTALS = {"engine_http", "raw_http", "wrapper"}  # rows that are not parts of the engine's cost


def breakdown(stage: dict[str, float]) -> dict[str, float]:
    """The six parts of the engine's per-send cost, the two totals, the wrapper's cost."""
    isolated = stage["encode"] + stage["decode"] + stage["journal"]
    return {
        "encode": stage["encode"], "decode": stage["decode"], "journal": stage["journal"],
        "bookkeeping": stage["engine_instant"] - isolated,
        "transport": stage["transport_http"],
        "interaction": stage["engine_http"] - stage["engine_instant"] - stage["transport_http"],
        "engine_http": stage["engine_http"], "raw_http": stage["raw_http"],
        "wrapper": stage["transport_http"] - stage["raw_http"],
    }  # fmt: skip


def report(cpu: dict[str, float], instr: dict[str, float] | None, note: str) -> None:
    """The breakdown table, CPU us and (when measured) instructions side by side."""
    total_us, total_i = cpu["engine_http"], (instr or {}).get("engine_http")
    print("client CPU per send, skycore-async engine (journal on, dedupe on, concurrency 32)")
    head = f"  {'part':52} {'CPU us':>8} {'share':>6}"
    print(head + (f" {'instructions':>13} {'share':>6}" if instr else ""))
    for key, label in ROWS:
        share = f"{100 * cpu[key] / total_us:5.1f}%" if key not in TOTALS else ""
        line = f"  {label:52} {cpu[key] * 1e6:8.1f} {share:>6}"
        if instr is not None and total_i:
            ishare = f"{100 * instr[key] / total_i:5.1f}%" if key not in TOTALS else ""
            line += f" {instr[key]:13,.0f} {ishare:>6}"
        print(line)
    print(
        f"  raw / engine over HTTP: CPU {cpu['raw_http'] / cpu['engine_http']:.3f}"
        + (f", instructions {instr['raw_http'] / instr['engine_http']:.3f}" if instr else "")
    )
    if note:
        print(f"  {note}")


def profile(count: int) -> None:
    """cProfile of the engine with the instant transport: where its own time goes.

    cProfile inflates every Python call, so read the list as an order, not as microseconds.
    """
    import cProfile
    import pstats

    with tempfile.TemporaryDirectory(prefix="skycore-profile-") as tmp:
        asyncio.run(engine_instant(numbers(0, 1000), Path(tmp) / "warm"))
        profiler = cProfile.Profile()
        profiler.runcall(asyncio.run, engine_instant(numbers(1000, count), Path(tmp) / "run"))
    print(f"cProfile, engine with the instant transport, {count} sends, by own time:")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="CPU only, tiny sizes")
    parser.add_argument("--callgrind", action="store_true", help="count instructions in smoke too")
    parser.add_argument("--profile", type=int, metavar="N", help="only: cProfile N instant sends")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return 0
    if args.profile:
        profile(args.profile)
        return 0
    import bench_engine
    from _common import figure, report_figures, write_result

    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})  # children inherit CPU 0; the server pins itself to 1
    server, url = bench_engine.start_server()
    try:
        cpu = breakdown(run_cpu(url, "smoke" if args.smoke else "cpu", 1 if args.smoke else 3))
        instr, note = None, ""
        if shutil.which("valgrind") is None:
            note = "instructions: skipped (valgrind not installed)"
        elif args.smoke and not args.callgrind:
            note = "instructions: skipped in smoke mode (--callgrind to count them)"
        else:
            print("counting instructions under callgrind (a few minutes) ...", flush=True)
            instr = breakdown(run_callgrind(url))
    finally:
        server.terminate()
        server.wait()
    report(cpu, instr, note)
    rows = []
    for key, label in ROWS[:6]:
        text = f"{cpu[key] * 1e6:.1f} us" + (f", {instr[key]:,.0f} instr" if instr else "")
        rows.append(figure("b", label, text))
    if instr is not None:
        ratio = instr["raw_http"] / instr["engine_http"]
        rows.append(figure("a", "instructions per send, raw aiohttp / engine (callgrind)",
                           f"{ratio:.3f}", ">= 0.75", ratio >= 0.75))  # fmt: skip
    report_figures(rows)
    if not args.smoke:
        path = write_result("breakdown", {"cpu_s_per_send": cpu, "instructions_per_send": instr,
                                          "sizes": SIZES})  # fmt: skip
        print(f"results saved to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
