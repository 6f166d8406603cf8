"""Command line: ``skycore-async <command>`` (also ``python -m skycore_async``).

The API key comes from ``SKYCORE_API_KEY`` and the endpoint from ``SKYCORE_BASE_URL`` or
``--base-url``: keys never go on the command line, where ``ps`` would show them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence

import orjson

from .bulkcli import add_bulk_command
from .campaigncli import add_campaign_commands
from .client import DEFAULT_BASE_URL, SkycoreClient
from .errors import SkycoreError
from .postbackcli import add_postback_commands

__all__ = ["main"]


def _parse_pairs(values: Sequence[str]) -> dict[str, float]:
    pairs: dict[str, float] = {}
    for value in values:
        name, _, number = value.partition("=")
        pairs[name] = float(number)
    return pairs


def _add_emulator(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("emulator", help="run the local Skycore emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--api-key", action="append", default=None, help="accepted key (repeatable)"
    )
    parser.add_argument(
        "--throughput",
        action="append",
        default=[],
        metavar="ACTION=RATE",
        help="per-action calls/s before E113, e.g. sendSavedMMS=200",
    )
    parser.add_argument("--min-interval", type=float, default=None, help="E106 spacing in seconds")
    parser.add_argument("--quota", type=int, default=None, help="E120 after this many calls")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--postback-url", default=None, help="post N101/N102 notifications here")
    parser.add_argument("--template", action="append", default=[], help="preload an MMS id")
    parser.set_defaults(run=_run_emulator)


def _run_emulator(args: argparse.Namespace) -> int:
    from .testing import EmulatorSettings, serve

    settings = EmulatorSettings()
    if args.api_key:
        settings.api_keys = set(args.api_key)
    settings.throughput = _parse_pairs(args.throughput)
    settings.min_interval = args.min_interval
    settings.quota = args.quota
    settings.latency = args.latency
    settings.postback_url = args.postback_url
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, settings, templates=args.template))
    return 0


def _add_send(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("send", help="send a saved MMS to one number (sendSavedMMS)")
    parser.add_argument("--to", required=True)
    parser.add_argument("--mms-id", required=True)
    parser.add_argument("--from", dest="from_", required=True)
    parser.add_argument("--client-reference", default=None)
    parser.add_argument("--base-url", default=None)
    parser.set_defaults(run=_run_send)


def _run_send(args: argparse.Namespace) -> int:
    async def send() -> dict[str, object]:
        async with _client_from_env(args) as client:
            result = await client.send_saved_mms(
                to=args.to,
                mms_id=args.mms_id,
                from_=args.from_,
                client_reference=args.client_reference,
            )
        return {"tracking_id": result.tracking_id, "to": result.to, "mms_id": result.mms_id}

    try:
        printed = asyncio.run(send())
    except SkycoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(orjson.dumps(printed) + b"\n")
    return 0


def _client_from_env(args: argparse.Namespace) -> SkycoreClient:
    key = os.environ.get("SKYCORE_API_KEY")
    if not key:
        raise SystemExit(
            "error: set SKYCORE_API_KEY (the key is never taken from the command line)"
        )
    base_url = args.base_url or os.environ.get("SKYCORE_BASE_URL") or DEFAULT_BASE_URL
    return SkycoreClient(api_key=key, base_url=base_url)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="skycore-async", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_emulator(commands)
    _add_send(commands)
    add_bulk_command(commands)
    add_campaign_commands(commands)
    add_postback_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``skycore-async`` console script."""
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code
