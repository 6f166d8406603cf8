"""``skycore-async bulk``: a resumable campaign from a CSV/JSONL file to ``results.jsonl``.

The results file holds one JSON object per input row (``index``, ``to``, ``status``,
``tracking_id``, ``error_code``, ``error_info``, ``attempts``, ``client_reference``). On
``--resume`` rows already in it are not written again, so after any number of crashes every
row is present exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import orjson

from .bulk import BulkMessage, BulkRun
from .client import DEFAULT_BASE_URL, SkycoreClient
from .config import Limits
from .errors import SkycoreError
from .outcomes import Progress, ResultBatch
from .recipients import read_recipients

__all__ = ["ProgressPrinter", "add_bulk_command"]

EXIT_INTERRUPTED = 130
EXIT_FATAL = 2


def add_bulk_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bulk`` on the CLI's sub-command parser."""
    parser = commands.add_parser("bulk", help="send a saved MMS to every number in a file")
    parser.add_argument("--mms-id", required=True)
    parser.add_argument("--from", dest="from_", required=True, help="sender code")
    parser.add_argument("--recipients", required=True, type=Path, help=".csv or .jsonl file")
    parser.add_argument("--out", required=True, type=Path, help="results file (JSONL)")
    parser.add_argument("--journal", type=Path, default=None, help="default: OUT.journal")
    parser.add_argument("--rate", type=float, default=None, help="calls/s ceiling")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--resume", action="store_true", help="continue a stopped run")
    parser.add_argument("--resend-unknown", action="store_true", help="resend in-doubt rows")
    parser.add_argument("--no-dedupe", action="store_true", help="send duplicate numbers too")
    parser.add_argument("--fallback-sms-text", default=None)
    parser.add_argument("--service-id", default=None, help="hyphenated dialect only")
    parser.add_argument("--dialect", choices=("skycore", "hyphenated"), default="skycore")
    parser.add_argument("--base-url", default=None, help="default: $SKYCORE_BASE_URL")
    parser.set_defaults(run=run_bulk)


def run_bulk(args: argparse.Namespace) -> int:
    """Entry point of ``skycore-async bulk``; returns the exit status."""
    key = os.environ.get("SKYCORE_API_KEY")
    if not key:
        print("error: set SKYCORE_API_KEY (keys never go on the command line)", file=sys.stderr)
        return EXIT_FATAL
    journal = args.journal or args.out.with_name(args.out.name + ".journal")
    if not args.resume and (args.out.exists() or journal.exists()):
        print(
            f"error: {args.out} or {journal} exists; add --resume to continue that run",
            file=sys.stderr,
        )
        return EXIT_FATAL
    try:
        return asyncio.run(_bulk(args, key, journal))
    except (SkycoreError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if isinstance(exc, SkycoreError) and exc.fatal and journal.exists():
            print(f"fix the cause, then resume with:\n  {_resume_command()}", file=sys.stderr)
        return EXIT_FATAL


async def _bulk(args: argparse.Namespace, key: str, journal: Path) -> int:
    base_url = args.base_url or os.environ.get("SKYCORE_BASE_URL") or DEFAULT_BASE_URL
    limits = Limits(rate=args.rate, concurrency=args.concurrency)
    shared = {
        k: v
        for k, v in (("fallback_sms_text", args.fallback_sms_text), ("service_id", args.service_id))
        if v
    }
    message = BulkMessage.saved_mms(mms_id=args.mms_id, from_=args.from_, **shared)
    written = _indices_in(args.out) if args.resume else bytearray()
    display = ProgressPrinter(sys.stderr)
    async with SkycoreClient(
        api_key=key, base_url=base_url, limits=limits, dialect=args.dialect
    ) as client:
        run = client.send_bulk(
            message, read_recipients(args.recipients), journal=journal, resume=args.resume,
            resend_unknown=args.resend_unknown, dedupe=not args.no_dedupe,
            batch_size=args.batch_size, on_progress=display.show,
            progress_interval=0.25 if display.tty else 5.0,
        )  # fmt: skip
        interrupted = await _drive(run, args, written)
    display.finish(run.progress)
    if interrupted:
        print(f"interrupted; resume with:\n  {_resume_command()}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"results: {args.out}", file=sys.stderr)
    return 0


async def _drive(run: BulkRun, args: argparse.Namespace, written: bytearray) -> bool:
    """Run to the end, writing results; True when stopped by SIGINT/SIGTERM."""
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()

    def on_signal() -> None:
        interrupted.set()
        run.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    counting = asyncio.create_task(_count_rows(args.recipients, run))
    try:
        # Small appends of whole batches; the event loop may block on them briefly.
        with open(args.out, "ab") as out:  # noqa: ASYNC230
            async with run:
                async for batch in run:
                    _write(out, batch, written)
    finally:
        counting.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return interrupted.is_set()


def _write(out: IO[bytes], batch: ResultBatch, written: bytearray) -> None:
    lines = []
    for outcome in batch.outcomes:
        if outcome.index < len(written) and written[outcome.index]:
            continue  # written before a crash; the journal replayed it
        lines.append(orjson.dumps(outcome.to_record()) + b"\n")
    out.write(b"".join(lines))
    out.flush()


def _indices_in(path: Path) -> bytearray:
    """Indices already in a results file; a torn last line (from a crash) is cut off."""
    seen = bytearray()
    if not path.exists():
        return seen
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(len(complete))
    for line in complete.splitlines():
        index = orjson.loads(line)["index"]
        if index >= len(seen):
            seen.extend(bytes(index + 1 - len(seen)))
        seen[index] = 1
    return seen


async def _count_rows(path: Path, run: BulkRun) -> None:
    """Count data rows in the background, so progress gets a total and an ETA."""

    def count() -> int:
        with open(path, "rb") as handle:
            rows = sum(1 for line in handle if line.strip())
        return rows - 1 if path.suffix.lower() == ".csv" else rows

    run.total = await asyncio.to_thread(count)


def _resume_command() -> str:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]]
    if "--resume" not in argv:
        argv.append("--resume")
    return shlex.join(argv)


class ProgressPrinter:
    """A progress bar on a terminal; plain periodic lines otherwise."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.tty = stream.isatty()
        self._started = time.monotonic()

    def show(self, progress: Progress) -> None:
        line = _describe(progress)
        if self.tty:
            self._stream.write("\r\x1b[2K" + _bar(progress) + " " + line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def finish(self, progress: Progress) -> None:
        if self.tty:
            self._stream.write("\n")
        c = progress
        self._stream.write(
            f"done: {c.done} recipients in {c.elapsed:.1f}s: sent {c.sent}, failed {c.failed}, "
            f"unknown {c.unknown}, skipped {c.skipped}\n"
        )


def _bar(progress: Progress, width: int = 30) -> str:
    fraction = progress.fraction or 0.0
    filled = int(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {fraction * 100:5.1f}%"


def _describe(p: Progress) -> str:
    total = f"/{p.total}" if p.total is not None else ""
    eta = f" ETA {int(p.eta) // 60}:{int(p.eta) % 60:02d}" if p.eta is not None else ""
    return (
        f"{p.done}{total} sent {p.sent} failed {p.failed} unknown {p.unknown} "
        f"skipped {p.skipped} in flight {p.in_flight} {p.rate:.0f}/s{eta}"
    )


def main_args(argv: Sequence[str]) -> argparse.Namespace:  # pragma: no cover - debugging aid
    """Parse only the bulk command's arguments (for scripts)."""
    parser = argparse.ArgumentParser()
    add_bulk_command(parser.add_subparsers())
    return parser.parse_args(["bulk", *argv])
