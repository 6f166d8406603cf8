"""``skycore-async postbacks serve`` (the receiver) and ``skycore-async report`` (reconciliation).

The secret comes from the environment variable named by ``--secret-env``, never from the
command line, where ``ps`` would show it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path

from . import reconcile
from .receiver import serve_postbacks

__all__ = ["add_postback_commands"]

EXIT_USAGE = 2
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def add_postback_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``postbacks serve`` and ``report`` on the CLI's sub-command parser."""
    group = commands.add_parser("postbacks", help="receive Skycore delivery notifications")
    actions = group.add_subparsers(dest="postbacks_command", required=True)
    serve = actions.add_parser("serve", help="run the postback receiver")
    serve.add_argument("--port", type=int, default=8081)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--out", required=True, type=Path, help="notifications file (JSONL)")
    serve.add_argument(
        "--secret-env", default=None, metavar="NAME", help="env variable holding the secret"
    )
    serve.add_argument("--fsync", action="store_true", help="fsync each write")
    serve.set_defaults(run=run_serve)

    report = commands.add_parser("report", help="delivery report: bulk results + postbacks")
    report.add_argument(
        "--results", action="append", default=[], type=Path, help="results.jsonl (repeatable)"
    )
    report.add_argument(
        "--postbacks", action="append", required=True, type=Path, help="notifications file"
    )
    report.add_argument("--csv", type=Path, default=None, help="write the per-recipient table")
    report.add_argument("--jsonl", type=Path, default=None, help="write the per-recipient table")
    report.set_defaults(run=run_report)


def run_serve(args: argparse.Namespace) -> int:
    """Entry point of ``skycore-async postbacks serve``; returns the exit status."""
    secret = None
    if args.secret_env:
        secret = os.environ.get(args.secret_env)
        if not secret:
            print(f"error: environment variable {args.secret_env} is empty", file=sys.stderr)
            return EXIT_USAGE
    if secret is None and args.host not in _LOOPBACK:
        print(
            f"warning: listening on {args.host} without a secret: anyone who can reach it can "
            "post delivery reports; set --secret-env",
            file=sys.stderr,
        )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_postbacks(args.host, args.port, args.out, secret, fsync=args.fsync))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def run_report(args: argparse.Namespace) -> int:
    """Entry point of ``skycore-async report``; returns the exit status."""
    try:
        report = reconcile.reconcile_files(args.results, args.postbacks)
        if args.csv is not None:
            reconcile.write_csv(report.rows, args.csv)
        if args.jsonl is not None:
            reconcile.write_jsonl(report.rows, args.jsonl)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(reconcile.render_text(report))
    for problem in report.problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 0
