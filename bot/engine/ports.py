"""The engine's ports: everything with side effects is handed in from outside.

The engine depends on these protocols only; adapters (TinyDB store, Slack,
the console, APScheduler timers, httpx connectors) implement them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from bot.engine.state import RunState, World


class Clock(Protocol):
    """Time, injectable so timeouts and deadlines are tested without waiting."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for measuring spans, not for records)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def sleep_until(self, when: datetime) -> None: ...

    async def timeout(self, awaitable: Awaitable[Any], seconds: float | None) -> Any:
        """Await with a deadline; raises TimeoutError when it passes."""
        ...


class Transaction(Protocol):
    """Records applied as they are added; ``commit`` queues them for the next write.

    Callers never await between ``begin`` and ``commit``, and act on a
    transaction only after ``Store.sync()``: nothing outside the engine
    observes a record before it is durable.
    """

    records: list[dict[str, Any]]

    def add(self, event: dict[str, Any], max_bytes: int | None = None) -> dict[str, Any]:
        """Build and apply a record; AuditError (nothing applied) if it cannot be stored."""
        ...

    def commit(self) -> list[dict[str, Any]]:
        """Queue the transaction for the next write; await ``Store.sync()`` before acting."""
        ...


class Store(Protocol):
    """Durable state: an append-only journal (the audit log) and the world folded from it.

    ``expected_versions`` maps run ids to the version the writer last saw
    (optimistic concurrency: a mismatch raises ConflictError, meaning someone
    else moved the run) — trivially true for one process on TinyDB, and the
    contract a shared database backend keeps.
    """

    world: World

    @property
    def broken(self) -> str | None:
        """Why the store can no longer be written, or None."""
        ...

    on_durable: list[Callable[[list[dict[str, Any]]], None]]

    def begin(self, expected_versions: Mapping[str, int] | None = None) -> Transaction: ...

    async def sync(self) -> None:
        """Return once every committed transaction is durable (group commit)."""
        ...

    def flush_now(self) -> None:
        """Make every committed transaction durable now (synchronously)."""
        ...

    async def append(
        self,
        events: Sequence[dict[str, Any]],
        expected_versions: Mapping[str, int] | None = None,
    ) -> list[dict[str, Any]]: ...

    async def save_definition(self, digest: str, form: str, text: str) -> None: ...

    def load_definition(self, digest: str) -> tuple[str, str] | None: ...

    async def checkpoint(self) -> None: ...

    def get_run(self, run_id: str) -> RunState | None: ...

    def summaries(self) -> list[dict[str, Any]]:
        """Every run's summary, newest first (for listings)."""
        ...


class MessageRef(Protocol):
    channel: str
    ts: str


class Chat(Protocol):
    """Where runs talk to people: Slack, the console, or nothing.

    Methods return a reference ``{"channel", "ts"}`` for messages that later
    get updated, or None. Raising ChatError fails the step that asked.
    """

    async def run_started(self, run: RunState, view: RunView) -> dict[str, Any] | None: ...

    async def run_progress(self, run: RunState, view: RunView) -> dict[str, Any] | None: ...

    async def run_finished(self, run: RunState, view: RunView) -> None: ...

    async def gate_opened(
        self, run: RunState, step_id: str, view: RunView
    ) -> dict[str, Any] | None: ...

    async def gate_changed(self, run: RunState, step_id: str, view: RunView) -> None: ...

    async def gate_escalated(self, run: RunState, step_id: str, view: RunView) -> None: ...

    async def notify(
        self,
        run: RunState,
        step_id: str,
        text: str,
        channel: str | None,
        thread: bool,
        view: RunView,
        *,
        markup: str | None = None,
    ) -> dict[str, Any] | None:
        """Post ``text``; ``markup`` is the same text for chat markup (mrkdwn), the
        data in it escaped (``&``, ``<``, ``>``) and the author's formatting kept."""
        ...


class RunView(Protocol):
    """Read-only facts about a run's runbook that chat adapters need to render it."""

    title: str
    channel: str | None

    def step_title(self, step_id: str) -> str: ...

    def step_description(self, step_id: str) -> str | None: ...

    def step_kind(self, step_id: str) -> str: ...


class GroupResolver(Protocol):
    """Group membership of an identity (``slack:U1``, ``cli:alice``, ``api:ci``)."""

    async def groups_of(self, identity: str, candidates: Sequence[str]) -> set[str]:
        """Which of ``candidates`` the identity belongs to."""
        ...


class Timers(Protocol):
    """Wake-ups at given times (approval deadlines, escalations)."""

    def arm(self, key: str, when: datetime, callback: Callable[[], Awaitable[None]]) -> None: ...

    def disarm(self, key: str) -> None: ...

    async def close(self) -> None: ...


class ActionRunner(Protocol):
    """Calls connector actions (the connector pool)."""

    def lookup(self, ref: str) -> Any: ...

    async def call(self, spec: Any, args: Mapping[str, Any], ctx: Any) -> dict[str, Any]: ...

    def describe(self, spec: Any, args: Mapping[str, Any]) -> dict[str, Any] | None: ...

    def is_sandboxed(self, connector: str) -> bool: ...


Listener = Callable[[RunState, dict[str, Any]], None]
