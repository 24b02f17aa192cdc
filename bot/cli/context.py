"""What every command needs: settings, the environment, connectors, runbooks."""

from __future__ import annotations

import argparse
import functools
import os
from dataclasses import dataclass
from typing import Any

from bot.config import Settings, environment, load_settings
from bot.runbook.loader import LoadResult, load_paths
from connectors.registry import ConnectorRegistry


@dataclass
class CliContext:
    """Settings and helpers resolved from the command line and environment."""

    args: argparse.Namespace
    env: dict[str, str]
    settings: Settings
    sandbox: Any = None  # the running bot.sandbox.Sandbox with --sandbox
    interrupts: Any = None  # bot.cli.stopping.Interrupts while a foreground command runs

    @property
    def sandbox_env(self) -> dict[str, str]:
        """Connector settings pointing at the fakes (empty without ``--sandbox``)."""
        return dict(self.sandbox.env) if self.sandbox is not None else {}

    @functools.cached_property
    def registry(self) -> ConnectorRegistry:
        return ConnectorRegistry.discover()

    def configured(self, connector: str) -> bool:
        try:
            cls = self.registry.connector_class(connector)
        except KeyError:
            return True
        return cls.is_configured(self.env)

    def load_runbooks(self, paths: list[str] | None = None, *, jobs: int = 1) -> LoadResult:
        targets = paths or [str(self.settings.runbooks_dir)]
        return load_paths(targets, self.registry, configured=self.configured, jobs=jobs)


def make_context(args: argparse.Namespace) -> CliContext:
    env = environment()
    settings = load_settings(
        env,
        runbooks_dir=getattr(args, "runbooks", None),
        data_dir=getattr(args, "data", None),
    )
    from bot.redact import REDACTOR

    REDACTOR.add_settings(settings, env)
    return CliContext(args=args, env=env, settings=settings)


def cpu_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))
