"""``runbook serve`` and ``runbook demo`` (the service lands with the Slack and intake work)."""

from __future__ import annotations

from bot.cli import EXIT_USAGE, CliExit
from bot.cli.context import CliContext


def cmd_serve(ctx: CliContext) -> int:
    raise CliExit(EXIT_USAGE, "`runbook serve` is not available in this build yet")


def cmd_demo(ctx: CliContext) -> int:
    raise CliExit(EXIT_USAGE, "`runbook demo` is not available in this build yet")
