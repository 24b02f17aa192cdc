"""Building engines for tests: a runbook from text, a store, a fake clock, the core connector."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.engine.catalog import RunbookCatalog
from bot.engine.clock import FakeClock
from bot.engine.engine import Engine, StaticGroups
from bot.engine.state import RunState
from bot.runbook.loader import load_text
from bot.store.memory import MemoryStore
from bot.store.store import DataStore
from connectors.registry import ConnectorPool, ConnectorRegistry

REGISTRY = ConnectorRegistry.discover(include_entry_points=False)


class RecordingChat:
    """A chat port that remembers what it was asked to show."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []
        self.fail_notify: Exception | None = None
        self.fail_gate: Exception | None = None

    async def run_started(self, run: RunState, view: Any) -> None:
        self.calls.append(("run_started", run.id, None))

    async def run_progress(self, run: RunState, view: Any) -> None:
        self.calls.append(("run_progress", run.id, None))

    async def run_finished(self, run: RunState, view: Any) -> None:
        self.calls.append(("run_finished", run.id, str(run.status)))

    async def gate_opened(self, run: RunState, step_id: str, view: Any) -> dict[str, str] | None:
        if self.fail_gate is not None:
            raise self.fail_gate
        self.calls.append(("gate_opened", run.id, step_id))
        return {"channel": "C1", "ts": f"ts-{step_id}"}

    async def gate_changed(self, run: RunState, step_id: str, view: Any) -> None:
        self.calls.append(("gate_changed", run.id, step_id))

    async def gate_escalated(self, run: RunState, step_id: str, view: Any) -> None:
        self.calls.append(("gate_escalated", run.id, step_id))

    async def notify(
        self,
        run: RunState,
        step_id: str,
        text: str,
        channel: str | None,
        thread: bool,
        view: Any,
        *,
        markup: str | None = None,
    ) -> dict[str, str] | None:
        if self.fail_notify is not None:
            raise self.fail_notify
        self.calls.append(("notify", run.id, text))
        return {"channel": channel or "C1", "ts": "1.0"}


@dataclass
class Harness:
    engine: Engine
    store: Any
    clock: FakeClock
    chat: RecordingChat
    records: list[dict[str, Any]] = field(default_factory=list)

    async def start(
        self,
        name: str,
        inputs: dict[str, Any] | None = None,
        requester: str | None = "cli:carol",
        **kwargs: Any,
    ) -> RunState:
        result = await self.engine.start_run(name, inputs or {}, requester=requester, **kwargs)
        return await self.settle(result.run.id)

    async def settle(self, run_id: str) -> RunState:
        """Let the run go as far as it can without more time passing."""
        return await asyncio.wait_for(self.engine.wait_settled(run_id), timeout=10)

    async def advance(self, seconds: float) -> None:
        await self.clock.advance(seconds)

    def events(self, run_id: str | None = None, step: str | None = None) -> list[str]:
        return [
            r["event"]
            for r in self.records
            if (run_id is None or r["run_id"] == run_id) and (step is None or r["step"] == step)
        ]

    def of(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["event"] == event]

    async def close(self) -> None:
        await self.engine.close()
        if isinstance(self.store, DataStore):
            await self.store.close()


def make_engine(
    sources: str | list[str],
    *,
    data_dir: Path | None = None,
    groups: dict[str, list[str]] | None = None,
    env: dict[str, str] | None = None,
    registry: ConnectorRegistry = REGISTRY,
    max_concurrent_runs: int = 50,
    rng: Callable[[], float] = lambda: 1.0,
    dry_run: bool = False,
    sandbox: bool = False,
) -> Harness:
    """An engine over the given runbook texts (YAML), with a fake clock."""
    texts = [sources] if isinstance(sources, str) else sources
    loaded = {}
    for index, text in enumerate(texts):
        result = load_text(text, f"runbook{index}.yaml", registry)
        assert result.loaded is not None, [str(d) for d in result.diagnostics]
        loaded[result.loaded.name] = result.loaded
    if data_dir is not None:
        store: Any = DataStore(data_dir)
        store.open({"command": "test"})
    else:
        store = MemoryStore()
    clock = FakeClock()
    chat = RecordingChat()
    engine = Engine(
        store,
        RunbookCatalog(loaded, registry, store.load_definition),
        ConnectorPool(registry, env or {}, register_secret=lambda _s: None),
        chat=chat,
        clock=clock,
        groups=StaticGroups(groups or {}),
        max_concurrent_runs=max_concurrent_runs,
        rng=rng,
        dry_run=dry_run,
        sandbox=sandbox,
    )
    harness = Harness(engine, store, clock, chat)
    engine.listeners.append(lambda _run, record: harness.records.append(record))
    return harness
