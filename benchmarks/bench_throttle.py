"""Throttle and retry against the emulator on loopback: the figures of issue 3.

The emulator runs in its own process pinned to CPU 1 (``_common.EmulatorProcess``); this
process, the client, is pinned to CPU 0 and sends through ``client.send_bulk`` with 64
workers. Rates, 1 s windows and duplicates come from the emulator's own record of accepted
sends; per-attempt answers and resends are also recorded client-side by a wrapping transport.

    python benchmarks/bench_throttle.py           # full run (~2 min); exit 1 if a target is missed
    python benchmarks/bench_throttle.py --smoke   # ~3 s per scenario; targets shown, not enforced

Scenarios (L = 200 calls/s on sendSavedMMS at the emulator, X = 0.05 s):

* known: client rate L, 30 s: rate >= 0.97 L, E113 <= 0.5 % of calls, every 1 s <= 1.02 L;
* over: client rate 2 L, 30 s: E113 <= 3 %, rate over the last 20 s >= 0.90 L;
* e106: emulator min_interval X, client unpaced, 20 s: no E106 to a call sent after the
  first E106 came back, rate >= 0.95 / X;
* faults: 5 % E503, 2 % E618, 1 % dropped after accept, 4,000 recipients at L: every call
  ends sent / typed failure / unknown, none resent after an ambiguous drop, no duplicates.

The full run writes per-second series to ``benchmarks/results/throttle.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import orjson
from _common import (
    CLIENT_CPU,
    RESULTS,
    TEMPLATE_ID,
    EmulatorProcess,
    between,
    figure,
    max_in_window,
    per_second,
    pin_to_cpu,
    report_figures,
    write_result,
)
from plot_throttle import plot

from skycore_async import (
    BulkMessage,
    HttpRequest,
    HttpResponse,
    Limits,
    Outcome,
    RetryEvent,
    SkycoreClient,
    SkycoreError,
    ThrottleEvent,
)
from skycore_async.transport import AiohttpTransport

L = 200.0
X = 0.05
SENDERS = 64
ACTION = "sendSavedMMS"
API_KEY = "test-key"
_CODE = re.compile(rb"<ERRORCODE>\s*([A-Z]\d+)\s*</ERRORCODE>")


@attrs.frozen
class Scenario:
    """One benchmark run: emulator settings, client limits, length, and the real limit."""

    name: str
    title: str
    emulator: dict[str, Any]
    limits: Limits
    limit: float  # what the account really allows, in calls/s (for ratios)
    seconds: float = 30.0  # time-bounded runs: how long
    count: int | None = None  # count-bounded runs: how many recipients
    smoke_seconds: float = 3.0
    smoke_count: int | None = None


SCENARIOS = (
    Scenario("known", "known limit: client rate L", {"throughput": {ACTION: L}},
             Limits(rate=L, concurrency=SENDERS), L),
    Scenario("over", "overestimated: client rate 2L", {"throughput": {ACTION: L}},
             Limits(rate=2 * L, concurrency=SENDERS), L),
    Scenario("e106", "E106, X = 0.05 s, client unpaced", {"min_interval": X},
             Limits(concurrency=SENDERS), 1 / X, seconds=20.0),
    Scenario("faults", "fault mix at L (5% E503, 2% E618, 1% drop)",
             {"throughput": {ACTION: L}, "error_rates": {"E503": 0.05, "E618": 0.02},
              "drop_after_accept": 0.01, "seed": 3},
             Limits(rate=L, concurrency=SENDERS), L, count=4000, smoke_count=600),
)  # fmt: skip


@attrs.frozen
class Target:
    """One figure against its bound; ``at_most`` means the figure must not exceed it."""

    label: str
    value: float
    bound: float
    at_most: bool

    @property
    def passed(self) -> bool:
        """True when the figure is on the right side of the bound."""
        return self.value <= self.bound if self.at_most else self.value >= self.bound

    def describe(self) -> str:
        """``label: value (target <= bound) PASS`` or ``... MISS by d``."""
        sign = "<=" if self.at_most else ">="
        verdict = "PASS" if self.passed else f"MISS by {abs(self.value - self.bound):.4g}"
        return f"{self.label}: {self.value:.4g} (target {sign} {self.bound:.4g}) {verdict}"


class RecordingTransport:
    """The aiohttp transport, plus one ``(start, end, answer)`` row per HTTP attempt.

    It also counts resends of a request whose earlier attempt ended ambiguously (the client
    reuses one ``HttpRequest`` object for every attempt of a call).
    """

    def __init__(self, pool_size: int) -> None:
        self._inner = AiohttpTransport(pool_size=pool_size)
        self._ambiguous: dict[int, HttpRequest] = {}
        self.attempts: list[tuple[float, float, str]] = []
        self.resent_after_ambiguous = 0

    async def send(
        self, request: HttpRequest, *, connect_timeout: float, read_timeout: float
    ) -> HttpResponse:
        """Send through aiohttp and record the attempt."""
        if id(request) in self._ambiguous:
            self.resent_after_ambiguous += 1
        start = time.monotonic()
        try:
            response = await self._inner.send(
                request, connect_timeout=connect_timeout, read_timeout=read_timeout
            )
        except SkycoreError as exc:
            if exc.ambiguous:
                self._ambiguous[id(request)] = request
            self.attempts.append((start, time.monotonic(), type(exc).__name__))
            raise
        match = _CODE.search(response.body)
        answer = match.group(1).decode() if match else "Success"
        self.attempts.append((start, time.monotonic(), answer))
        return response

    async def aclose(self) -> None:
        """Close the aiohttp session."""
        await self._inner.aclose()


@attrs.define
class ClientRecord:
    """What the client saw in one run."""

    start: float = 0.0
    end: float = 0.0
    outcomes: list[Outcome] = attrs.Factory(list)
    throttles: list[ThrottleEvent] = attrs.Factory(list)
    retries: list[RetryEvent] = attrs.Factory(list)
    rates: list[float | None] = attrs.Factory(list)  # the throttle's limit, sampled each second
    attempts: list[tuple[float, float, str]] = attrs.Factory(list)
    resent_after_ambiguous: int = 0


def recipients(count: int | None) -> Iterator[str]:
    """Distinct numbers: ``count`` of them, or endless when None."""
    n = 0
    while count is None or n < count:
        yield f"1650{n:07d}"
        n += 1


async def sample_rates(client: SkycoreClient, into: list[float | None]) -> None:
    """Append the throttle's current rate limit for the action once a second."""
    while True:
        await asyncio.sleep(1.0)
        into.append(client.throttle.current_rate(ACTION))


async def drive(scenario: Scenario, url: str, seconds: float, count: int | None) -> ClientRecord:
    """Run the bulk engine against ``url`` for ``seconds`` (or over ``count`` recipients)."""
    record = ClientRecord()
    transport = RecordingTransport(SENDERS)
    client = SkycoreClient(
        api_key=API_KEY, base_url=url, limits=scenario.limits, transport=transport,
        on_throttle=record.throttles.append, on_retry=record.retries.append,
    )  # fmt: skip
    message = BulkMessage.saved_mms(mms_id=TEMPLATE_ID, from_="60856")
    async with client:
        sampler = asyncio.create_task(sample_rates(client, record.rates))
        record.start = time.monotonic()
        async with client.send_bulk(message, recipients(count), concurrency=SENDERS) as run:
            if count is None:
                asyncio.get_running_loop().call_later(seconds, run.stop)
            async for batch in run:
                record.outcomes.extend(batch.outcomes)
        record.end = time.monotonic()
        sampler.cancel()
    record.attempts = transport.attempts
    record.resent_after_ambiguous = transport.resent_after_ambiguous
    return record


def measure(scenario: Scenario, smoke: bool) -> dict[str, Any]:
    """Run one scenario end to end: emulator process, client run, figures, targets."""
    seconds = scenario.smoke_seconds if smoke else scenario.seconds
    count = scenario.smoke_count if smoke else scenario.count
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with EmulatorProcess(scenario.emulator) as emulator:
        client = asyncio.run(drive(scenario, emulator.url, seconds, count))
        record = emulator.report()
    if count is not None:
        seconds = client.end - client.start
    result = figures(scenario, seconds, client, record)
    result |= {"recipients": count, "load_before": load}
    targets = TARGETS[scenario.name](scenario, result, client, record)
    result["targets"] = [attrs.asdict(t) | {"passed": t.passed} for t in targets]
    return result


def figures(
    scenario: Scenario, seconds: float, client: ClientRecord, emulator: dict[str, Any]
) -> dict[str, Any]:
    """The common figures of a run (rates and windows from the emulator's accepted times)."""
    accepted = sorted(emulator["accepted"])
    inside = between(accepted, client.start, client.start + seconds)
    calls = max(emulator["requests"], 1)
    answers = Counter(emulator["answers"])
    rate = len(inside) / seconds
    limits = [r for r in client.rates if r is not None]
    return {
        "name": scenario.name, "title": scenario.title, "limit": scenario.limit,
        "client_rate": scenario.limits.rate, "seconds": round(seconds, 3),
        "calls": emulator["requests"], "answers": dict(answers),
        "accepted": len(accepted), "rate": rate, "ratio": rate / scenario.limit,
        "e113_pct": 100 * answers["E113"] / calls, "e106_pct": 100 * answers["E106"] / calls,
        "max_1s": max_in_window(accepted),
        "max_1s_after_first_s": max_in_window(between(accepted, client.start + 1, math.inf)),
        "outcomes": dict(Counter(outcome.status for outcome in client.outcomes)),
        "throttled": len(client.throttles), "retried": len(client.retries),
        "per_second": per_second(inside, client.start, math.ceil(seconds)),
        "rate_limit_per_second": client.rates,
        "lowest_rate_limit": min(limits) if limits else None,
    }  # fmt: skip


Checker = Callable[[Scenario, dict[str, Any], ClientRecord, dict[str, Any]], list[Target]]


def known_targets(
    s: Scenario, r: dict[str, Any], c: ClientRecord, e: dict[str, Any]
) -> list[Target]:
    """Known limit: rate, E113 share, busiest 1 s window."""
    return [
        Target("rate / L", r["ratio"], 0.97, at_most=False),
        Target("E113 % of calls", r["e113_pct"], 0.5, at_most=True),
        Target("max 1 s window / L", r["max_1s"] / s.limit, 1.02, at_most=True),
    ]


def over_targets(
    s: Scenario, r: dict[str, Any], c: ClientRecord, e: dict[str, Any]
) -> list[Target]:
    """Overestimated limit: E113 share, rate over the last two thirds (20 s of 30)."""
    end = c.start + r["seconds"]
    tail = between(e["accepted"], end - r["seconds"] * 2 / 3, end)
    r["tail_ratio"] = len(tail) / (r["seconds"] * 2 / 3) / s.limit
    return [
        Target("E113 % of calls", r["e113_pct"], 3.0, at_most=True),
        Target("rate over the last 2/3 of the run / L", r["tail_ratio"], 0.90, at_most=False),
    ]


def e106_targets(
    s: Scenario, r: dict[str, Any], c: ClientRecord, e: dict[str, Any]
) -> list[Target]:
    """E106: none to a call sent after the first E106 came back; rate against 1/X."""
    e106 = [(start, end) for start, end, answer in c.attempts if answer == "E106"]
    first_back = min((end for _start, end in e106), default=math.inf)
    r["e106_later"] = sum(1 for start, _end in e106 if start > first_back)
    r["e106_first_wave"] = len(e106) - r["e106_later"]
    return [
        Target("E106 to calls sent after the first E106", r["e106_later"], 0, at_most=True),
        Target("rate / (1/X)", r["ratio"], 0.95, at_most=False),
    ]


def fault_targets(
    s: Scenario, r: dict[str, Any], c: ClientRecord, e: dict[str, Any]
) -> list[Target]:
    """Fault mix: every call classified, no resend after an ambiguous drop, no duplicates."""
    typed = [o for o in c.outcomes if o.status == "sent" or (
        o.status in ("failed", "unknown") and o.error_code)]  # fmt: skip
    unclassified = abs(r["recipients"] - len(typed))
    drops = e["answers"].get("DROP_AFTER_ACCEPT", 0)
    r["failure_codes"] = dict(Counter(o.error_code for o in c.outcomes if o.status != "sent"))
    return [
        Target("calls without a sent / typed failure / unknown end", unclassified, 0, True),
        Target("|unknown outcomes - emulator drops|", abs(r["outcomes"].get("unknown", 0) - drops),
               0, True),
        Target("resends after an ambiguous drop", c.resent_after_ambiguous, 0, True),
        Target("duplicate sends at the emulator", len(e["duplicates"]), 0, True),
    ]  # fmt: skip


TARGETS: dict[str, Checker] = {
    "known": known_targets, "over": over_targets, "e106": e106_targets, "faults": fault_targets,
}  # fmt: skip


def print_table(results: list[dict[str, Any]]) -> None:
    """One row of common figures per scenario, then each target with PASS/MISS."""
    print(f"{'scenario':<8} {'calls':>6} {'secs':>5} {'acc/s':>6} {'x limit':>7} {'E113 %':>6} "
          f"{'E106 %':>6} {'max 1s':>6} {'throttled':>9} {'retried':>7} {'load':>5}")  # fmt: skip
    for r in results:
        load = "" if r["load_before"] is None else f"{r['load_before']:.2f}"
        print(
            f"{r['name']:<8} {r['calls']:>6} {r['seconds']:>5.1f} {r['rate']:>6.1f} "
            f"{r['ratio']:>7.3f} {r['e113_pct']:>6.2f} {r['e106_pct']:>6.2f} {r['max_1s']:>6} "
            f"{r['throttled']:>9} {r['retried']:>7} {load:>5}"
        )
    for r in results:
        print_details(r)


def print_details(r: dict[str, Any]) -> None:
    """A scenario's outcomes, diagnostics and targets."""
    print(f"\n{r['name']}: {r['title']} (limit {r['limit']:g}/s)")
    print(f"  outcomes {r['outcomes']}; emulator answers {r['answers']}")
    print(f"  busiest 1 s: {r['max_1s']} ({r['max_1s_after_first_s']} after the first second)")
    if r["lowest_rate_limit"] is not None:
        print(f"  client rate limit: lowest {r['lowest_rate_limit']:.1f}/s, "
              f"at the end {r['rate_limit_per_second'][-1]:.1f}/s")  # fmt: skip
    if "e106_later" in r:
        print(f"  E106: {r['e106_first_wave']} to calls sent before the first E106 came back")
    if "failure_codes" in r:
        print(f"  failure codes {r['failure_codes']}")
    if r["load_before"] is not None and r["load_before"] > 0.5:
        print(f"  note: 1-min load average was {r['load_before']:.2f} before this run")
    for target in r["targets"]:
        fields = {k: target[k] for k in ("label", "value", "bound", "at_most")}
        print("  " + Target(**fields).describe())


def draw(results: list[dict[str, Any]], smoke: bool) -> None:
    """The rate-over-time PNG: results/throttle.png (smoke: drawn in a temp dir, not kept)."""
    if smoke:
        with tempfile.TemporaryDirectory() as tmp:
            drawn = plot(results, Path(tmp) / "throttle.png")
            if drawn is not None and drawn.stat().st_size == 0:
                raise RuntimeError("the throttle plot is empty")
        print("\nplot: drawn (smoke mode: not kept)" if drawn else "\nplot: nothing to plot")
        return
    drawn = plot(results, RESULTS / "throttle.png")
    print(f"\nplot saved to {drawn}" if drawn else "\nplot: nothing to plot")


def main() -> int:
    """Run every scenario (or those named), print the table, save the series."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="~3 s per scenario, for CI")
    parser.add_argument("--only", action="append", choices=[s.name for s in SCENARIOS])
    parser.add_argument("--json", type=Path, help="save results here (full mode: results/)")
    args = parser.parse_args()
    pinned = pin_to_cpu(CLIENT_CPU)
    results = []
    for scenario in (s for s in SCENARIOS if not args.only or s.name in args.only):
        print(f"running {scenario.name}: {scenario.title} ...", file=sys.stderr, flush=True)
        results.append(measure(scenario, args.smoke))
    print_table(results)
    if not pinned:
        print("\nnote: not pinned (needs 2 CPUs and sched_setaffinity); figures may be noisier")
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"\nresults saved to {args.json}")
    elif not args.smoke:
        print(f"\nresults saved to {write_result('throttle', results)}")
    draw(results, args.smoke)
    report_figures(
        figure("c", f"throttle {r['name']}: {t['label']}", f"{t['value']:.4g}",
               f"{'<=' if t['at_most'] else '>='} {t['bound']:.4g}", t["passed"])
        for r in results for t in r["targets"]
    )  # fmt: skip
    missed = [t for r in results for t in r["targets"] if not t["passed"]]
    if missed and not args.smoke:
        print(f"{len(missed)} target(s) missed")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
