"""``skycore-async campaign load|work|status|results``: one campaign, many workers, on Redis.

The Redis URL comes from ``--redis`` or ``$SKYCORE_REDIS_URL``; the API key only from
``$SKYCORE_API_KEY``. See :mod:`skycore_async.campaign` for the design.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .bulk import BulkMessage
from .campaign import (
    CampaignError,
    CampaignStatus,
    CampaignWorker,
    campaign_results,
    campaign_status,
    connect_redis,
    load_campaign,
)
from .client import DEFAULT_BASE_URL, SkycoreClient
from .config import Limits
from .errors import SkycoreError
from .recipients import read_recipients

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["add_campaign_commands"]

EXIT_INCOMPLETE = 1
EXIT_FATAL = 2
EXIT_INTERRUPTED = 130


def add_campaign_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``campaign`` and its sub-commands on the CLI's sub-command parser."""
    parser = commands.add_parser("campaign", help="a campaign shared by many workers (Redis)")
    sub = parser.add_subparsers(dest="campaign_command", required=True)

    load = _common(sub.add_parser("load", help="enqueue a recipient file (resumable)"))
    load.add_argument("--recipients", required=True, type=Path, help=".csv or .jsonl file")
    load.add_argument("--mms-id", required=True)
    load.add_argument("--from", dest="from_", required=True, help="sender code")
    load.add_argument("--fallback-sms-text", default=None)
    load.add_argument("--service-id", default=None, help="hyphenated dialect only")
    load.add_argument("--dialect", choices=("skycore", "hyphenated"), default="skycore")
    load.add_argument("--no-dedupe", action="store_true", help="send duplicate numbers too")
    load.add_argument("--chunk", type=int, default=1000, help="rows per Redis round trip")
    load.set_defaults(run=_run_load)

    work = _common(sub.add_parser("work", help="run a worker until the campaign is drained"))
    work.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    work.add_argument(
        "--rate", type=float, default=None,
        help="calls/s ceiling: of the whole account with --shared-throttle, else of this worker",
    )  # fmt: skip
    work.add_argument(
        "--shared-throttle", action="store_true",
        help="pace all workers of the account together through the same Redis",
    )  # fmt: skip
    work.add_argument("--lease", type=float, default=60.0, help="seconds before take-over")
    work.add_argument("--poll", type=float, default=0.5, help="seconds a read waits")
    work.add_argument("--resend-unknown", action="store_true", help="resend in-doubt rows")
    work.add_argument("--worker-id", default=None, help="default: host-pid-random")
    work.add_argument("--base-url", default=None, help="default: $SKYCORE_BASE_URL")
    work.set_defaults(run=_run_work)

    status = _common(sub.add_parser("status", help="progress across all workers"))
    status.set_defaults(run=_run_status)

    results = _common(sub.add_parser("results", help="write the result records as JSONL"))
    results.add_argument("--out", required=True, help="JSONL file, or - for stdout")
    results.set_defaults(run=_run_results)


def _common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--redis", default=None, help="redis:// URL; default $SKYCORE_REDIS_URL")
    parser.add_argument("--campaign", required=True, help="the campaign's name")
    return parser


def _redis_url(args: argparse.Namespace) -> str:
    url = args.redis or os.environ.get("SKYCORE_REDIS_URL")
    if not url:
        raise CampaignError("give --redis URL or set SKYCORE_REDIS_URL")
    return str(url)


def _run(args: argparse.Namespace, body: Callable[[Redis], Any]) -> int:
    """Connect, run ``body(redis)``, map failures to an exit status with a clear message."""

    async def main() -> int:
        redis = connect_redis(_redis_url(args))
        try:
            code: int = await body(redis)
            return code
        finally:
            await redis.aclose()

    expected: tuple[type[Exception], ...] = (CampaignError, SkycoreError, ValueError, OSError)
    try:
        from redis.exceptions import RedisError

        expected += (RedisError,)
    except ImportError:  # pragma: no cover - connect_redis explains
        pass
    try:
        return asyncio.run(main())
    except expected as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL


# ---------------------------------------------------------------------- load


def _run_load(args: argparse.Namespace) -> int:
    shared = {
        k: v
        for k, v in (("fallback_sms_text", args.fallback_sms_text), ("service_id", args.service_id))
        if v
    }
    message = BulkMessage.saved_mms(mms_id=args.mms_id, from_=args.from_, **shared)
    path: Path = args.recipients
    source = f"{path.name}:{path.stat().st_size}" if path.exists() else path.name

    async def body(redis: Redis) -> int:
        report = await load_campaign(
            redis, args.campaign, message, read_recipients(path), dialect=args.dialect,
            dedupe=not args.no_dedupe, source=source, chunk=args.chunk,
        )  # fmt: skip
        if report.already_loaded:
            print(f"campaign {args.campaign!r} was already loaded: {report.total} rows")
        else:
            resumed = f" (continued at row {report.resumed_at})" if report.resumed_at else ""
            print(
                f"campaign {args.campaign!r}: {report.total} rows{resumed}; enqueued "
                f"{report.enqueued}, recorded {report.recorded} (invalid or duplicate)"
            )
        return 0

    return _run(args, body)


# ---------------------------------------------------------------------- work


def _run_work(args: argparse.Namespace) -> int:
    key = os.environ.get("SKYCORE_API_KEY")
    if not key:
        print("error: set SKYCORE_API_KEY (keys never go on the command line)", file=sys.stderr)
        return EXIT_FATAL
    base_url = args.base_url or os.environ.get("SKYCORE_BASE_URL") or DEFAULT_BASE_URL

    async def body(redis: Redis) -> int:
        dialect = (await campaign_status(redis, args.campaign)).dialect
        limits = Limits(rate=args.rate, concurrency=args.concurrency)
        options: dict[str, Any] = {"limits": limits}
        if args.shared_throttle:
            from .redis_throttle import RedisThrottle, account_from_api_key

            account = account_from_api_key(key)
            shared = RedisThrottle(_redis_url(args), account=account, limits=limits)
            options = {"throttle": shared}
        async with SkycoreClient(
            api_key=key, base_url=base_url, dialect=dialect, **options
        ) as client:
            worker = CampaignWorker(
                redis, args.campaign, client, concurrency=args.concurrency, lease=args.lease,
                poll=args.poll, resend_unknown=args.resend_unknown, worker_id=args.worker_id,
                on_progress=lambda counts: _progress(worker.worker_id, counts),
            )  # fmt: skip
            try:
                return await _drive(worker, args.campaign)
            finally:
                if "throttle" in options:
                    await options["throttle"].aclose()

    return _run(args, body)


async def _drive(worker: CampaignWorker, name: str) -> int:
    loop = asyncio.get_running_loop()
    interrupted = False

    def on_signal() -> None:
        nonlocal interrupted
        interrupted = True
        worker.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    print(f"worker {worker.worker_id}: working on campaign {name!r}", file=sys.stderr)
    try:
        report = await worker.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    summary = (
        f"worker {report.worker}: sent {report.sent}, failed {report.failed}, unknown "
        f"{report.unknown}, taken over {report.taken_over}"
    )
    print(summary, file=sys.stderr)
    if interrupted or not report.drained:
        print(
            "interrupted: in-flight requests finished, unstarted work was handed back; "
            "start a worker to continue",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(f"campaign {name!r} drained: nothing left to send", file=sys.stderr)
    return 0


def _progress(worker: str, counts: dict[str, int]) -> None:
    described = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())
    print(f"worker {worker}: {described}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- status and results


def _run_status(args: argparse.Namespace) -> int:
    async def body(redis: Redis) -> int:
        render_status(await campaign_status(redis, args.campaign), sys.stdout)
        return 0

    return _run(args, body)


def render_status(status: CampaignStatus, out: IO[str], now: float | None = None) -> None:
    """Write a human-readable status report."""
    now = time.time() if now is None else now
    s = status
    state = "loaded" if s.loaded else "loading (so far)"
    percent = f" ({100 * s.done / s.total:.1f}%)" if s.total else ""
    out.write(f"campaign {s.name!r}: {s.total} rows, {state}\n")
    out.write(
        f"done {s.done}/{s.total}{percent}: sent {s.sent}, failed {s.failed}, "
        f"unknown {s.unknown}, skipped {s.skipped}\n"
        f"pending {s.pending}: queued {s.queued}, held by workers {s.held}\n"
        f"workers seen: {len(s.workers)}\n"
    )
    for w in s.workers:
        c = w.counts
        out.write(
            f"  {w.worker} {w.state} heartbeat {max(0.0, now - w.heartbeat):.1f}s ago: "
            f"sent {c['sent']} failed {c['failed']} unknown {c['unknown']} "
            f"taken over {c['taken_over']} in flight {c['in_flight']}\n"
        )
    if s.fatal:
        out.write(f"fatal: {s.fatal}\n")


def _run_results(args: argparse.Namespace) -> int:
    async def body(redis: Redis) -> int:
        status = await campaign_status(redis, args.campaign)
        written = 0
        # Whole chunks at a time; the loop may block on a local file write briefly.
        out = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")  # noqa: ASYNC230, SIM115
        try:
            lines: list[bytes] = []
            async for record in campaign_results(redis, args.campaign):
                lines.append(record.encode() + b"\n")
                if len(lines) >= 1000:
                    out.write(b"".join(lines))
                    written, lines = written + len(lines), []
            out.write(b"".join(lines))
            written += len(lines)
        finally:
            if out is not sys.stdout.buffer:
                out.close()
        missing = status.total - written
        where = "stdout" if args.out == "-" else args.out
        print(f"{written} result records written to {where}", file=sys.stderr)
        if missing > 0 or not status.loaded:
            print(
                f"incomplete: {max(missing, 0)} rows have no outcome yet"
                + ("" if status.loaded else "; the load has not finished"),
                file=sys.stderr,
            )
            return EXIT_INCOMPLETE
        return 0

    return _run(args, body)
