"""Commands that run, decide and inspect runs (filled in by the engine)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_parsers(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Register run-related subcommands."""
    return


def dispatch(args: argparse.Namespace) -> int:
    raise NotImplementedError(args.command)


def _unused(*_: Any) -> None:
    return None
