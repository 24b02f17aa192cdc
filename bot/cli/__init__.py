"""The ``runbook`` command: parse arguments, call the engine or the store, print.

Errors a user can cause print one line on stderr (and ``{"error": ...}`` on
stdout with ``--json``), never a traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from bot.errors import (
    AuditGapError,
    ConfigError,
    DataDirLocked,
    InputError,
    NotFoundError,
    PermissionDenied,
    RunbookBotError,
    RunbookLoadError,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED, EXIT_CANCELLED, EXIT_WAITING = 0, 1, 2, 3, 4, 5


class CliExit(Exception):
    """Stop with an exit code and (optionally) a message for stderr."""

    def __init__(self, code: int, message: str | None = None) -> None:
        self.code = code
        self.message = message
        super().__init__(message or "")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        # the message is printed after "runbook: "; name only the subcommand, if any
        command = self.prog.removeprefix("runbook").strip()
        raise CliExit(EXIT_USAGE, f"{command}: {message}" if command else message)


def build_parser() -> argparse.ArgumentParser:
    def common_options(suppress: bool) -> _Parser:
        # Sub-level copies must not overwrite values given before the command.
        extra: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
        group = _Parser(add_help=False)
        group.add_argument(
            "--runbooks", metavar="DIR", help="runbook folder (RUNBOOK_RUNBOOKS_DIR)", **extra
        )
        group.add_argument(
            "--data", metavar="DIR", help="data directory (RUNBOOK_DATA_DIR)", **extra
        )
        group.add_argument("--json", action="store_true", help="print one JSON document", **extra)
        group.add_argument("--debug", action="store_true", help="show tracebacks", **extra)
        return group

    common = common_options(suppress=True)
    parser: argparse.ArgumentParser = _Parser(
        prog="runbook",
        description="Runbook Bot: runbooks as code, approvals in chat, a trustworthy audit trail.",
        parents=[common_options(suppress=False)],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=help_text, description=help_text, parents=[common]
        )
        return parser

    p = add("validate", "load and check runbooks (files or folders)")
    p.add_argument("paths", nargs="*", metavar="PATH")

    add("list", "runbooks with their title and triggers")

    p = add("graph", "the step graph of a runbook")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--format", choices=["text", "mermaid", "dot"], default="text")

    add("connectors", "connectors and their actions")

    from bot.cli.parsers import add_parsers

    add_parsers(add, common)
    return parser


def _wants_json(argv: Sequence[str]) -> bool:
    return "--json" in argv


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``runbook`` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    json_mode = _wants_json(args_list)
    try:
        parser = build_parser()
        if not args_list:
            parser.print_help()
            return EXIT_USAGE
        try:
            args = parser.parse_args(args_list)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        return int(dispatch(args) or 0)
    except CliExit as exc:
        if exc.message:
            _error(exc.message, json_mode)
        return exc.code
    except KeyboardInterrupt:
        _error("interrupted", json_mode)
        return 130
    except RunbookLoadError as exc:
        for diag in exc.diagnostics:
            print(str(diag), file=sys.stderr)
        if json_mode:
            print(
                json.dumps(
                    {"error": "invalid runbook", "errors": [d.as_dict() for d in exc.diagnostics]}
                )
            )
        return EXIT_USAGE
    except (
        InputError,
        NotFoundError,
        PermissionDenied,
        ConfigError,
        DataDirLocked,
        AuditGapError,
    ) as exc:
        _error(str(exc), json_mode)
        if debug:
            raise
        return EXIT_USAGE
    except RunbookBotError as exc:
        _error(str(exc), json_mode)
        if debug:
            raise
        return EXIT_FAILED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        if debug:
            raise
        _error(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", json_mode
        )
        return EXIT_FAILED


def _error(message: str, json_mode: bool) -> None:
    from bot.redact import redact_text

    message = redact_text(message)
    print(f"runbook: {message}", file=sys.stderr)
    if json_mode:
        print(json.dumps({"error": message}))


def dispatch(args: argparse.Namespace) -> int:
    if args.command in ("validate", "list", "graph", "connectors"):
        from bot.cli import read_commands

        return int(getattr(read_commands, f"cmd_{args.command}")(args))
    from bot.cli import run_commands

    return run_commands.dispatch(args)
