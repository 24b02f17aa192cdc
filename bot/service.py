"""The long-running service behind ``runbook serve``: one process, one data directory.

It loads and validates the runbooks (refusing to start on errors), opens the
store (taking the data directory's lock), builds the connector pool (pointing
unconfigured connectors at the sandbox with ``--sandbox``), the chat adapter
and the engine, resumes unfinished runs, and serves HTTP. Features plug in as
:class:`Extension` objects (Slack, alert intake, API, schedules): each may
prepare the engine's ports, add routes, and start and stop with the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from starlette.routing import BaseRoute

from bot.config import Settings
from bot.engine.catalog import RunbookCatalog
from bot.engine.clock import SystemClock
from bot.engine.defaults import NullChat, StaticGroups
from bot.engine.engine import Engine
from bot.engine.ports import Chat, Clock, GroupResolver, Timers
from bot.engine.state import RunState
from bot.errors import RunbookLoadError
from bot.logs import step_id_var
from bot.metrics import Registry
from bot.redact import REDACTOR
from bot.runbook.loader import LoadResult, load_paths
from bot.store.store import DataStore
from connectors.registry import ConnectorPool, ConnectorRegistry

log = logging.getLogger("runbook.service")

CHECKPOINT_EVERY = 30.0
CHECKPOINT_RECORDS = 5000


class Extension(Protocol):
    """A feature of the service (Slack, alert intake, API, schedules)."""

    name: str

    async def prepare(self, service: Service) -> None:
        """Before the engine exists: set ``service.chat`` / group resolvers, check settings."""
        ...

    async def start(self, service: Service) -> None:
        """After the engine has restored its state."""
        ...

    async def stop(self) -> None: ...

    def routes(self) -> list[BaseRoute]: ...

    def health(self) -> dict[str, Any]:
        """Extra facts for ``/healthz`` (``ok: False`` makes it 503)."""
        ...


class CompositeGroups:
    """Group membership by identity realm: ``slack:`` from Slack, others from settings."""

    def __init__(self, fallback: GroupResolver) -> None:
        self.fallback = fallback
        self.realms: dict[str, GroupResolver] = {}

    async def groups_of(self, identity: str, candidates: Sequence[str]) -> set[str]:
        realm = identity.split(":", 1)[0] if ":" in identity else ""
        resolver = self.realms.get(realm, self.fallback)
        return await resolver.groups_of(identity, candidates)


@contextlib.contextmanager
def _about_step(step_id: str) -> Iterator[None]:
    """Log lines written inside carry ``step_id`` (JSON logs)."""
    token = step_id_var.set(step_id)
    try:
        yield
    finally:
        step_id_var.reset(token)


class LogChat(NullChat):
    """Chat when Slack is off: everything goes to the log (lines about a step carry its id)."""

    async def run_started(self, run: RunState, view: Any) -> None:
        log.info(
            "run %s (%s) started by %s",
            run.id,
            run.runbook,
            run.requester or run.trigger.get("kind"),
        )

    async def run_finished(self, run: RunState, view: Any) -> None:
        log.info("run %s (%s) %s", run.id, run.runbook, run.status)

    async def gate_opened(self, run: RunState, step_id: str, view: Any) -> None:
        gate = run.steps[step_id].gate
        prompt = gate.prompt if gate else ""
        with _about_step(step_id):
            log.info(
                "run %s waits for approval at %s: %s — decide with "
                "POST /api/runs/%s/steps/%s/decision",
                run.id,
                step_id,
                prompt,
                run.id,
                step_id,
            )

    async def gate_escalated(self, run: RunState, step_id: str, view: Any) -> None:
        with _about_step(step_id):
            log.info("run %s: approval at %s escalated", run.id, step_id)

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
    ) -> None:
        with _about_step(step_id):
            log.info("run %s notify%s: %s", run.id, f" {channel}" if channel else "", text)


class Service:
    """Owns the data directory and runs the engine for as long as it lives."""

    def __init__(
        self,
        settings: Settings,
        env: dict[str, str],
        *,
        sandbox: bool = False,
        clock: Clock | None = None,
        timers: Timers | None = None,
        extensions: Iterable[Extension] | None = None,
        registry: ConnectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.env = env
        self.start_error: str | None = None  # why start() failed, for the exit status
        self.sandbox_enabled = sandbox
        self.clock: Clock = clock or SystemClock()
        self.timers = timers
        self.registry = registry or ConnectorRegistry.discover()
        self.extensions: list[Extension] = list(
            extensions if extensions is not None else default_extensions(settings)
        )
        self.metrics = Registry()
        self.chat: Chat = LogChat()
        self.groups = CompositeGroups(StaticGroups(settings.groups))
        self.url: str | None = None
        self.ready = False
        self.ready_event = asyncio.Event()
        self.loaded: LoadResult | None = None
        self.store: DataStore | None = None
        self.pool: ConnectorPool | None = None
        self.engine: Engine | None = None
        self.sandbox: Any = None
        self.scheduler: Any = None  # APScheduler AsyncIOScheduler, shared by features
        self._checkpointer: asyncio.Task[None] | None = None

    # -- start and stop -------------------------------------------------------------------

    def open(self) -> None:
        """Validate the runbooks and take the data directory, before serving anything.

        Raises:
            RunbookLoadError: listing every error in the runbooks.
            DataDirLocked: another process owns the data directory.
        """
        loaded = load_paths(
            [str(self.settings.runbooks_dir)],
            self.registry,
            configured=self._usable,
        )
        if loaded.errors:
            raise RunbookLoadError(loaded.errors)
        for diagnostic in loaded.warnings:
            log.warning("%s", diagnostic)
        self.loaded = loaded
        store = DataStore(self.settings.data_dir)
        store.open({"command": "runbook serve", "url": self.url})
        self.store = store
        for warning in store.warnings:
            log.warning("%s", warning)

    async def start(self) -> None:
        """Restore runs, gates and dedup state; then ``/healthz`` answers 200."""
        if self.store is None:
            self.open()
        store, loaded = self.store, self.loaded
        assert store is not None and loaded is not None
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.scheduler.start()
        if self.timers is None:
            from bot.triggers.timers import SchedulerTimers

            self.timers = SchedulerTimers(self.scheduler)
        sandbox_env: dict[str, str] = {}
        if self.sandbox_enabled:
            from bot.sandbox import Sandbox, sandbox_notice

            self.sandbox = Sandbox()
            await self.sandbox.__aenter__()
            sandbox_env = dict(self.sandbox.env)
            log.warning(
                "SANDBOX: runs are marked as sandbox runs; %s",
                sandbox_notice(self.registry.names(), self._configured, self.sandbox.url),
            )
        self.pool = ConnectorPool(
            self.registry, self.env, register_secret=REDACTOR.add, sandbox_env=sandbox_env
        )
        for extension in self.extensions:
            await extension.prepare(self)
        self.engine = Engine(
            store,
            RunbookCatalog(loaded.runbooks, self.registry, store.load_definition),
            self.pool,
            chat=self.chat,
            clock=self.clock,
            timers=self.timers,
            groups=self.groups,
            max_concurrent_runs=self.settings.max_concurrent_runs,
            sandbox=self.sandbox_enabled,
        )
        self._install_metrics(self.engine)
        await self.engine.start(resume=True)
        for extension in self.extensions:
            await extension.start(self)
        self._checkpointer = asyncio.create_task(self._checkpoint_loop(), name="checkpoint")
        self.ready = True
        self.ready_event.set()
        runbooks, unfinished = len(loaded.runbooks), len(store.world.active_runs())
        log.info(
            "ready: %d runbook%s, %d unfinished run%s restored%s",
            runbooks,
            "" if runbooks == 1 else "s",
            unfinished,
            "" if unfinished == 1 else "s",
            " (sandbox)" if self.sandbox_enabled else "",
        )

    async def stop(self, grace: float = 30.0) -> None:
        """Stop taking work, let running steps reach a durable point, release everything.

        The engine starts nothing new from the first moment (see
        :meth:`Engine.stop_starting`); calls in flight get ``grace`` seconds to end
        and be recorded, so runs stop between steps and resume without a gate.
        """
        self.ready = False
        self.stop_starting()
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        for extension in reversed(self.extensions):
            with contextlib.suppress(Exception):
                await extension.stop()
        if self.engine is not None:
            await self.engine.close(grace)
        for extension in reversed(self.extensions):
            # optional: release what the engine may use until it has stopped (Slack's client)
            closer = getattr(extension, "close", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        if self.pool is not None:
            await self.pool.aclose()
        if self.store is not None:
            await self.store.close()
        if self.sandbox is not None:
            await self.sandbox.__aexit__(None, None, None)
            self.sandbox = None

    def stop_starting(self) -> None:
        """The service is going down: the engine starts no new step, attempt or item."""
        if self.engine is not None:
            self.engine.stop_starting()

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY)
            store = self.store
            if store is not None and store.dirty and store.broken is None:
                try:
                    from bot.engine.clock import iso

                    await store.checkpoint(iso(self.clock.now()))
                except Exception:
                    log.exception("checkpoint failed (state stays safe in the audit log)")

    def set_url(self, url: str) -> None:
        self.url = url
        if self.store is not None and self.store.lock.held:
            self.store.lock.update_owner({"url": url})

    # -- helpers ---------------------------------------------------------------------------

    def _configured(self, name: str) -> bool:
        try:
            return self.registry.connector_class(name).is_configured(self.env)
        except KeyError:
            return True

    def _usable(self, name: str) -> bool:
        """Configured, or (with ``--sandbox``) simulated by a fake vendor: no warning due."""
        if self._configured(name):
            return True
        if not self.sandbox_enabled:
            return False
        from bot.sandbox import MOUNTS

        return name in MOUNTS

    def routes(self) -> list[BaseRoute]:
        found: list[BaseRoute] = []
        for extension in self.extensions:
            found.extend(extension.routes())
        return found

    def health(self) -> tuple[bool, dict[str, Any]]:
        facts: dict[str, Any] = {"ready": self.ready}
        ok = self.ready
        if self.store is not None:
            facts["store"] = "broken" if self.store.broken else "ok"
            ok = ok and self.store.broken is None
        if self.engine is not None:
            facts["queue"] = self.engine.queue_depth
            facts["active_runs"] = len(self.store.world.active_runs()) if self.store else 0
        for extension in self.extensions:
            extra = extension.health()
            if extra:
                facts[extension.name] = extra
                ok = ok and extra.get("ok", True)
        return ok, facts

    def _install_metrics(self, engine: Engine) -> None:
        metrics = self.metrics
        steps = metrics.histogram(
            "runbook_step_duration_seconds", "Step durations by connector action and outcome"
        )
        finished = metrics.counter("runbook_runs_finished_total", "Runs finished, by status")
        started = metrics.counter("runbook_runs_started_total", "Runs started, by trigger kind")
        store = engine.store

        def by_status() -> dict[Any, float]:
            counts: dict[Any, float] = {}
            for run in store.world.active_runs():
                key = (("status", str(run.status)),)
                counts[key] = counts.get(key, 0) + 1
            return counts

        metrics.gauge("runbook_runs_active", "Unfinished runs, by status", by_status)
        metrics.gauge(
            "runbook_approvals_waiting",
            "Approval gates waiting for people",
            lambda: {(): float(sum(r.waiting_count for r in store.world.active_runs()))},
        )
        metrics.gauge(
            "runbook_queue_depth",
            "Runs pending admission (storm control)",
            lambda: {(): float(engine.queue_depth)},
        )

        def on_record(run: RunState, record: dict[str, Any]) -> None:
            event = record["event"]
            if event == "run.started":
                started.inc(kind=str(run.trigger.get("kind", "manual")))
            elif event == "run.finished":
                finished.inc(status=str(record["data"].get("status")))
            elif event in ("step.succeeded", "step.failed") and record.get("step"):
                state = run.steps.get(record["step"])
                if state is not None and state.started_at:
                    from bot.engine.clock import parse_iso

                    seconds = (
                        parse_iso(record["ts"]) - parse_iso(state.started_at)
                    ).total_seconds()
                    view = engine.view(run)
                    steps.observe(
                        max(seconds, 0.0),
                        action=view.step_kind(record["step"]),
                        outcome=event.split(".")[1],
                    )

        engine.listeners.append(on_record)


def default_extensions(settings: Settings) -> list[Extension]:
    """The features ``runbook serve`` runs with (each module decides whether it is on)."""
    found: list[Extension] = []
    from bot.chat.slack import extension as slack_extension
    from bot.web.intake import extensions as intake_extensions

    slack = slack_extension(settings)
    if slack is not None:
        found.append(slack)
    found.extend(intake_extensions(settings))
    return found
