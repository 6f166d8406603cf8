"""The clients a user might pick instead of skycore-async, each sending the same workload.

Every client sends the same sendSavedMMS form bodies (built once per number from the same
pre-encoded template, which favours the peers: none of them pays for encoding) to the same URL
with the same concurrency, and reads every reply. One client runs per process, so the process
CPU time (``getrusage``: user + sys, all threads) is that client's alone:

    python benchmarks/peer_clients.py '{"client": "raw", "loop": "asyncio", "url": ...,
                                        "count": 10000, "warmup": 1000, "concurrency": 32}'

prints one JSON line: sends, replies that said Success, measured seconds, CPU seconds, and the
``time.monotonic()`` bounds of the measured phase (system-wide on Linux, so they compare with
the emulator's record of accepted sends). The process pins itself to CPU 0; the server runs
pinned to CPU 1. ``rate`` (calls/s) is given to the clients that have a limiter (the engine,
the hand-rolled aiolimiter loop); the others have none.

Clients:

* ``raw``: aiohttp, one session, N workers pulling from one iterator: the ceiling;
* ``engine``: skycore-async's bulk engine (journal on, dedupe on, batches consumed);
* ``gather``: the naive script: one task per recipient, ``asyncio.gather`` of all of them, a
  default ``aiohttp.ClientSession()`` (aiohttp's default pool of 100 connections);
* ``semaphore``: aiohttp + ``asyncio.Semaphore(N)`` + ``aiolimiter.AsyncLimiter(rate)``, one
  task per recipient (the usual hand-rolled pattern; with no rate the limiter is set far
  above what the client can reach, so it costs its acquire but never waits);
* ``httpx``: ``httpx.AsyncClient`` with ``max_connections=N``, N workers;
* ``requests``: ``requests`` with a thread-local ``Session`` per thread in a
  ``ThreadPoolExecutor(N)`` (``loop`` does not apply).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson

from skycore_async.fields import ApiRequest
from skycore_async.template import SavedMmsTemplate

API_KEY = "test-key"
MMS_ID = "35674"
SENDER = "60856"
HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
UNLIMITED = 1_000_000.0  # the aiolimiter rate used when the run has no rate limit
CLIENTS = ("raw", "engine", "gather", "semaphore", "httpx", "requests")

_TEMPLATE = SavedMmsTemplate.build(
    ApiRequest("sendSavedMMS", {"API_KEY": API_KEY, "MMSID": MMS_ID, "FROM": SENDER}), "skycore"
)


def body(number: str) -> bytes:
    """The form body the engine sends for ``number`` (same bytes for every client)."""
    return _TEMPLATE.body(number)


def numbers(start: int, count: int) -> list[str]:
    """``count`` distinct valid numbers from offset ``start`` (warm-up and run do not overlap)."""
    return [f"1650{n:07d}" for n in range(start, start + count)]


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# A client takes (url, numbers, concurrency, rate) and returns how many replies said Success.
AsyncClient = Callable[[str, list[str], int, float | None], Coroutine[Any, Any, int]]


async def raw(url: str, todo: list[str], concurrency: int, rate: float | None) -> int:
    """aiohttp posting pre-built bodies from N workers; nothing else (the ceiling)."""
    import aiohttp

    source = iter(todo)
    ok = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal ok
            for number in source:
                async with session.post(url, data=body(number), headers=HEADERS) as response:
                    ok += b"Success" in await response.read()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


async def engine(url: str, todo: list[str], concurrency: int, rate: float | None) -> int:
    """skycore-async's bulk engine as a campaign script runs it."""
    from skycore_async import BulkMessage, Limits, SkycoreClient

    message = BulkMessage.saved_mms(mms_id=MMS_ID, from_=SENDER)
    limits = Limits(rate=rate, concurrency=concurrency)
    sent = 0
    with tempfile.TemporaryDirectory(prefix="skycore-peer-") as tmp:
        async with SkycoreClient(api_key=API_KEY, base_url=url, limits=limits) as client:
            journal = Path(tmp) / "run.journal"
            async with client.send_bulk(message, todo, journal=journal) as run:
                async for batch in run:
                    sent += batch.count("sent")
    return sent


async def gather(url: str, todo: list[str], concurrency: int, rate: float | None) -> int:
    """The naive script: a task per recipient, all gathered, aiohttp's default session."""
    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def send(number: str) -> bool:
            async with session.post(url, data=body(number), headers=HEADERS) as response:
                return b"Success" in await response.read()

        return sum(await asyncio.gather(*(send(number) for number in todo)))


async def semaphore(url: str, todo: list[str], concurrency: int, rate: float | None) -> int:
    """Hand-rolled: a task per recipient under a Semaphore and an aiolimiter AsyncLimiter."""
    import aiohttp
    from aiolimiter import AsyncLimiter

    gate = asyncio.Semaphore(concurrency)
    limiter = AsyncLimiter(rate or UNLIMITED, 1.0)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(number: str) -> bool:
            async with gate, limiter, session.post(url, data=body(number), headers=HEADERS) as r:
                return b"Success" in await r.read()

        return sum(await asyncio.gather(*(send(number) for number in todo)))


async def httpx_loop(url: str, todo: list[str], concurrency: int, rate: float | None) -> int:
    """httpx.AsyncClient with a pool of N connections, N workers."""
    import httpx

    source = iter(todo)
    ok = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:

        async def worker() -> None:
            nonlocal ok
            for number in source:
                response = await client.post(url, content=body(number), headers=HEADERS)
                ok += b"Success" in response.content

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


def requests_pool(url: str, todo: list[str], concurrency: int) -> int:
    """requests in a thread pool of N threads, one Session per thread."""
    import requests

    local = threading.local()

    def send(number: str) -> bool:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        response = session.post(url, data=body(number), headers=HEADERS)
        return b"Success" in response.content

    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        return sum(pool.map(send, todo))


ASYNC_CLIENTS: dict[str, AsyncClient] = {
    "raw": raw, "engine": engine, "gather": gather, "semaphore": semaphore, "httpx": httpx_loop,
}  # fmt: skip


def run_client(spec: dict[str, Any]) -> dict[str, Any]:
    """Warm up, then run the measured phase; returns the figures of the measured phase."""
    name, url, concurrency = spec["client"], spec["url"], spec["concurrency"]
    rate = spec.get("rate")
    warm, todo = numbers(0, spec["warmup"]), numbers(spec["warmup"], spec["count"])
    if name == "requests":
        if warm:
            requests_pool(url, warm, concurrency)
        return _measured(lambda: requests_pool(url, todo, concurrency), len(todo))
    client = ASYNC_CLIENTS[name]
    with asyncio.Runner(loop_factory=_loop_factory(spec["loop"])) as runner:
        if warm:
            runner.run(client(url, warm, concurrency, rate))
        return _measured(lambda: runner.run(client(url, todo, concurrency, rate)), len(todo))


def _measured(run: Callable[[], int], sends: int) -> dict[str, Any]:
    start, cpu, clock = time.monotonic(), cpu_seconds(), time.perf_counter()
    ok = run()
    seconds, cpu = time.perf_counter() - clock, cpu_seconds() - cpu
    return {"sends": sends, "ok": ok, "seconds": seconds, "cpu_s": cpu,
            "start": start, "end": time.monotonic()}  # fmt: skip


def _loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if loop == "asyncio":
        return None
    if loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    raise ValueError(f"unknown loop {loop!r}")


def uvloop_available() -> bool:
    """True when the ``uvloop`` extra is installed."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    """Child entry: pin to CPU 0, run the spec given as JSON, print the result as JSON."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    spec = orjson.loads(sys.argv[1])
    result = run_client(spec)
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")


if __name__ == "__main__":
    main()
