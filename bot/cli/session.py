"""A foreground engine session: own the data directory, run, release it."""

from __future__ import annotations

import sys
from typing import Any

from bot.chat.console import ConsoleChat, Timeline
from bot.cli.context import CliContext, cpu_jobs
from bot.engine.catalog import RunbookCatalog
from bot.engine.engine import Engine, StaticGroups
from bot.errors import ConfigError, DataDirLocked, StoreError
from bot.redact import REDACTOR
from bot.runbook.loader import LoadResult
from bot.store.store import DataStore
from connectors.registry import ConnectorPool


class EngineSession:
    """Opens the store (taking the lock) and an engine; ``close`` releases both."""

    def __init__(
        self, ctx: CliContext, *, command: str, timeline: Timeline, loaded: LoadResult | None = None
    ) -> None:
        self.ctx = ctx
        self.command = command
        self.timeline = timeline
        self.loaded = loaded
        self.store: DataStore | None = None
        self.pool: ConnectorPool | None = None
        self.engine: Engine | None = None

    def runbooks(self) -> LoadResult:
        if self.loaded is None:
            self.loaded = self.ctx.load_runbooks(jobs=cpu_jobs())
        return self.loaded

    async def open(self) -> Engine:
        """Raises DataDirLocked when another process owns the data directory."""
        loaded = self.runbooks()
        store = DataStore(self.ctx.settings.data_dir)
        try:
            store.open({"command": self.command})
        except DataDirLocked:
            raise
        except StoreError as exc:
            if not store.data_dir.is_dir():  # never created: a usage error, not a failed run
                raise ConfigError(str(exc)) from None
            raise
        for warning in store.warnings:
            print(f"runbook: warning: {warning}", file=sys.stderr)
        self.store = store
        self.pool = ConnectorPool(
            self.ctx.registry,
            self.ctx.env,
            register_secret=REDACTOR.add,
            sandbox_env=self.ctx.sandbox_env,
        )
        catalog = RunbookCatalog(loaded.runbooks, self.ctx.registry, store.load_definition)
        engine = Engine(
            store,
            catalog,
            self.pool,
            chat=ConsoleChat(self.timeline),
            groups=StaticGroups(self.ctx.settings.groups),
            max_concurrent_runs=self.ctx.settings.max_concurrent_runs,
            sandbox=self.ctx.sandbox is not None,
        )
        engine.listeners.append(self.timeline)
        await engine.start(resume=False)
        self.engine = engine
        if self.ctx.interrupts is not None:
            self.ctx.interrupts.session = self  # Ctrl-C stops this engine gracefully
        return engine

    async def close(self, grace: float = 30.0) -> None:
        """Stop the engine (calls in flight get ``grace`` seconds), release the data directory."""
        if self.engine is not None:
            await self.engine.close(grace)
            self.engine = None
        if self.pool is not None:
            await self.pool.aclose()
            self.pool = None
        if self.store is not None:
            await self.store.close()
            self.store = None

    async def __aenter__(self) -> Engine:
        return await self.open()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def open_readonly(ctx: CliContext) -> DataStore:
    """The data directory for reading, even while another process owns it."""
    store = DataStore(ctx.settings.data_dir, readonly=True)
    store.open()
    return store
