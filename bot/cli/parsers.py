"""Arguments of the run and service commands (kept light: no engine imports)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

RUN_STATUSES = ("pending", "running", "waiting", "succeeded", "failed", "rejected", "cancelled")


def add_parsers(
    add: Callable[[str, str], argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Register run-related subcommands (``common``: the options every command takes)."""
    p = add("run", "start a run in the foreground, with a live step timeline")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-i", "--input", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--as", dest="as_user", metavar="USER", help="requester (cli:USER)")
    p.add_argument("--dry-run", action="store_true", help="call nothing that changes anything")
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="fake vendor APIs on loopback for connectors without credentials (a sandbox run)",
    )

    p = add("approve", "decide an approval gate, then carry the run on")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("step", metavar="STEP")
    p.add_argument("--as", dest="as_user", metavar="USER", required=True)
    choice = p.add_mutually_exclusive_group()
    choice.add_argument("--reject", action="store_true")
    choice.add_argument("--skip", action="store_true", help="only at a recovery gate")
    p.add_argument("--comment", metavar="TEXT")
    p.add_argument("--field", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="fake vendor APIs on loopback for connectors without credentials (a sandbox run)",
    )

    p = add("resume", "carry on unfinished runs after a crash (all, or one)")
    p.add_argument("run_id", nargs="?", metavar="RUN_ID")
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="fake vendor APIs on loopback for connectors without credentials (a sandbox run)",
    )

    p = add("runs", "recent runs")
    p.add_argument("--status", choices=RUN_STATUSES)
    p.add_argument("--limit", type=int, default=50)

    p = add("status", "one run with its steps")
    p.add_argument("run_id", metavar="RUN_ID")

    p = add("cancel", "cancel a run")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--as", dest="as_user", metavar="USER")
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="fake vendor APIs on loopback for connectors without credentials (a sandbox run)",
    )

    p = add("report", "the run as a Markdown incident timeline, from the audit log")
    p.add_argument("run_id", metavar="RUN_ID")

    p = add("audit", "verify or export the audit log")
    sub = p.add_subparsers(dest="audit_command", metavar="ACTION")
    sub.required = True
    sub.add_parser("verify", help="check the hash chain end to end", parents=[common])
    g = sub.add_parser(
        "accept-gap",
        help="accept that records were cut from the log's end: keep the snapshot aside, "
        "record the gap, carry on from the log",
        parents=[common],
    )
    g.add_argument("--as", dest="as_user", metavar="USER", help="who accepts (cli:USER)")
    e = sub.add_parser("export", help="records as JSON Lines", parents=[common])
    e.add_argument("--run", metavar="RUN_ID")
    e.add_argument("--since", metavar="TIME", help="ISO time, or a duration ago (24h)")

    p = add("serve", "the bot service: Slack, alerts, API, schedules")
    p.add_argument("--host", metavar="H")
    p.add_argument("--port", metavar="P", type=int)
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="serve fake vendor APIs on loopback to connectors without credentials",
    )

    add("demo", "a guided end-to-end run in the sandbox")
