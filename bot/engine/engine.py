"""The engine: starts, advances, decides and cancels runs — one way in for every channel.

Chat, alerts, schedules, the API and the CLI all call :meth:`Engine.start_run`,
:meth:`Engine.decide` and :meth:`Engine.cancel`.

Transitions happen in transactions: a step's end and everything it makes
decidable (later steps started or skipped, gates requested, the run
finished) are added to one store transaction by the synchronous
:meth:`Engine._advance`, written with one fsync, and only then acted on
(step tasks spawned, gates posted, compensations run). Nothing awaits
between the first record of a transaction and its commit, so nothing can
observe a transition before it is durable.

A run waiting at a gate has no task at all — a waiting gate is state, not a
sleeping coroutine — and its deadlines are timers re-armed from the store.

Stopping (:meth:`Engine.close`, an interrupt, or a failed store write) starts
nothing new: no step, attempt, retry, poll, ``for_each`` item or compensation.
Calls already in flight run to their end and their outcomes are recorded (while
the store can still write); a run stopped between two steps carries on after a
restart without a recovery gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.engine import admission, cancelling, effects, execute, gates, recovery, starting
from bot.engine import advance as advance_mod
from bot.engine.catalog import RunbookCatalog
from bot.engine.clock import SystemClock, iso
from bot.engine.defaults import NullChat, StaticGroups
from bot.engine.followup import FollowUp
from bot.engine.plan import RunbookPlan
from bot.engine.ports import (
    ActionRunner,
    Chat,
    Clock,
    GroupResolver,
    Listener,
    Store,
    Timers,
    Transaction,
)
from bot.engine.starting import StartResult
from bot.engine.state import RunState, RunStatus
from bot.engine.steps import (
    CallRunner,
)
from bot.engine.timers import ClockTimers
from bot.engine.view import RunbookView
from bot.errors import (
    AuditError,
    ConflictError,
    EngineStopping,
    NotFoundError,
    RunbookBotError,
    StoreError,
)
from bot.logs import run_id_var
from bot.redact import REDACTOR
from bot.runbook.model import Runbook

log = logging.getLogger("runbook.engine")


@dataclass(slots=True)
class _Live:
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    admitted: bool = False
    recheck: bool = True
    failure_seen: bool = False
    busy: int = 0
    finishing: bool = False


class Engine:
    """Runs runbooks durably. See the module docstring."""

    def __init__(
        self,
        store: Store,
        catalog: RunbookCatalog,
        actions: ActionRunner,
        *,
        chat: Chat | None = None,
        clock: Clock | None = None,
        timers: Timers | None = None,
        groups: GroupResolver | None = None,
        max_concurrent_runs: int = 50,
        sandbox: bool = False,
        dry_run: bool = False,
        rng: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.actions = actions
        self.chat: Chat = chat or NullChat()
        self.clock: Clock = clock or SystemClock()
        self.timers: Timers = timers or ClockTimers(self.clock)
        self.groups: GroupResolver = groups or StaticGroups({})
        self.max_concurrent_runs = max_concurrent_runs
        self.sandbox = sandbox
        self.dry_run = dry_run
        self.listeners: list[Listener] = []
        self.stop = asyncio.Event()  # set once stopping begins: nothing new starts
        self.calls = CallRunner(
            actions,
            self.clock,
            register_secret=REDACTOR.add,
            stop=self.stop,
            **({"rng": rng} if rng is not None else {}),
        )
        self.live: dict[str, _Live] = {}
        self.queue: list[str] = []
        self.accepting = True
        self.closing = False
        self.dedup_inflight: dict[str, asyncio.Future[RunState]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.following: set[asyncio.Task[Any]] = set()  # acting on durable transactions
        self._views: dict[str, RunbookView] = {}
        store.on_durable.append(self._announce)
        self.fatal: StoreError | None = None

    # -- life cycle -----------------------------------------------------------------------

    async def start(self, *, resume: bool = True, only: Iterable[str] | None = None) -> None:
        """Restore after a (re)start.

        Args:
            resume: carry on every unfinished run (``serve``, ``resume``); False
                leaves them alone unless named in ``only`` (a foreground ``run``).
            only: restrict to these run ids.
        """
        wanted = set(only) if only is not None else None
        for run in sorted(self.store.world.active_runs(), key=lambda r: r.seq):
            if wanted is not None and run.id not in wanted:
                continue
            if not resume and wanted is None:
                continue
            await self.resume_run(run.id)
        admission.admit(self)

    async def resume_run(self, run_id: str) -> None:
        """Carry one unfinished run on: re-arm deadlines, fire those due, recover steps."""
        run = self.store.world.runs.get(run_id)
        if run is None or run.ended:
            return
        reason = self.foreign(run)
        if reason is not None:
            log.warning("left alone: %s", reason)
            return
        for sid in run.waiting_gates:
            gates.arm_timers(self, run, sid)
        if run.status is RunStatus.PENDING and run.cancelled_by is None:
            if run_id not in self.queue:
                self.queue.append(run_id)
            return
        self.live_of(run_id).admitted = True
        await gates.fire_due(self, run)
        if not run.ended:
            await self.kick(run, recover=True)

    def foreign(self, run: RunState) -> str | None:
        """Why this process must leave ``run`` alone, or None when it may carry it on.

        A sandbox run's connector calls only ever go to the fake vendors, and a
        real run's never do: a process with the other setting neither advances,
        decides nor cancels it (the run stays as it is, its deadlines unarmed).
        """
        if self.dry_run or run.sandbox == self.sandbox:
            return None
        if run.sandbox:
            return (
                f"run {run.id} is a sandbox run: its connector calls only go to the fake "
                "vendors; continue it with --sandbox / serve --sandbox"
            )
        return (
            f"run {run.id} is not a sandbox run: its connector calls never go to the fake "
            "vendors; continue it without --sandbox"
        )

    def check_not_foreign(self, run: RunState) -> None:
        """Raises ConflictError when this process must leave ``run`` alone (see ``foreign``)."""
        reason = self.foreign(run)
        if reason is not None:
            raise ConflictError(reason)

    @property
    def stopping(self) -> bool:
        """True once nothing new may start (see :meth:`stop_starting`)."""
        return self.stop.is_set()

    def stop_starting(self) -> None:
        """From now on start nothing new: no step, attempt, retry, poll, item or compensation.

        Calls in flight go on to their end and are recorded; pauses between
        calls end at once. Callers of :meth:`wait_settled` are woken (it raises
        :class:`EngineStopping`, or the store's error after a failed write).
        """
        self.accepting = False
        if self.stop.is_set():
            return
        self.stop.set()
        log.info("stopping: nothing new starts; %d task(s) still running", len(self.working()))
        for live in self.live.values():
            live.settled.set()

    def working(self) -> list[asyncio.Task[Any]]:
        """The tasks still acting for runs: steps in flight, kicks, follow-ups."""
        steps = [t for live in self.live.values() for t in live.tasks.values()]
        current = asyncio.current_task()
        return [
            t
            for t in (*steps, *self._background, *self.following)
            if not t.done() and t is not current
        ]

    async def drain(self, grace: float = 30.0) -> bool:
        """Stop starting work and wait up to ``grace`` seconds for what runs to be recorded.

        Returns:
            True when nothing was left running.
        """
        self.stop_starting()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while tasks := self.working():
            # a task may hand on to another (a step to its follow-up): look again
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.wait(tasks, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        return True

    async def close(self, grace: float = 30.0) -> None:
        """Stop taking work; let running steps reach a durable point; stop.

        Nothing new starts once closing begins (see :meth:`stop_starting`).
        Calls still in flight after ``grace`` seconds are interrupted without
        a record: after a restart the crash-recovery rules apply to them.
        """
        await self.drain(grace)
        self.closing = True
        leftovers = self.working()
        for task in leftovers:
            task.cancel()
        for task in leftovers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.timers.close()

    # -- starting runs --------------------------------------------------------------------

    start_run = starting.start_run  # durable when it returns; see bot.engine.starting

    # -- admission (storm control) --------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self.queue)

    def live_of(self, run_id: str) -> _Live:
        live = self.live.get(run_id)
        if live is None:
            live = self.live[run_id] = _Live()
        return live

    def spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- waiting for runs -----------------------------------------------------------------

    def is_settled(self, run: RunState) -> bool:
        """Ended, or waiting for people with nothing running or about to run."""
        if run.ended:
            return True
        live = self.live.get(run.id)
        if live is None:
            return run.id not in self.queue and run.running_count == 0
        return (
            live.admitted
            and not live.tasks
            and not live.busy
            and run.running_count == 0
            and run.waiting_count > 0
        )

    def update_settled(self, run: RunState) -> None:
        live = self.live.get(run.id)
        if live is None:
            return
        if self.is_settled(run):
            live.settled.set()
            if run.ended:
                self.live.pop(run.id, None)
            admission.admit(self)
        else:
            live.settled.clear()

    async def wait_settled(self, run_id: str) -> RunState:
        """Wait until the run has ended or waits for people with nothing else to do."""
        while True:
            await self.sync()
            run = self.store.get_run(run_id)
            if run is None:
                raise NotFoundError(f"unknown run {run_id}", kind="run", key=run_id)
            if self.is_settled(run):
                return run
            self._raise_if_stopping(run_id)
            live = self.live_of(run_id)
            # A transition may have left the flag set while the run moves on; it is
            # set again once the run settles (update_settled), so clear it and wait.
            live.settled.clear()
            await live.settled.wait()
            self._raise_if_stopping(run_id)

    def _raise_if_stopping(self, run_id: str) -> None:
        if self.fatal is not None:
            raise self.fatal
        if self.stopping:
            raise EngineStopping(f"stopping: run {run_id} stops where it is")

    # -- decisions and cancellation -------------------------------------------------------

    async def decide(
        self,
        run_id: str,
        step_id: str,
        identity: str,
        decision: str,
        *,
        comment: str | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> gates.DecisionResult:
        """Record one person's decision at a gate (see :mod:`bot.engine.gates`).

        Raises:
            ConflictError: a sandbox run in a process without the sandbox, or the
                other way round (see ``foreign``); nothing is recorded.
        """
        run = self.store.get_run(run_id)
        if run is not None and not run.ended:
            self.check_not_foreign(run)
        return await gates.decide(self, run_id, step_id, identity, decision, comment, fields)

    cancel = cancelling.cancel  # see bot.engine.cancelling
    matches = cancelling.matches

    # -- records and transactions ---------------------------------------------------------

    def begin(self) -> Transaction:
        if self.fatal is not None:
            raise self.fatal
        return self.store.begin()

    def event(
        self,
        run: RunState | None,
        event: str,
        *,
        step: str | None = None,
        actor: str = "system",
        data: dict[str, Any] | None = None,
        run_id: str | None = None,
        runbook: str | None = None,
    ) -> dict[str, Any]:
        return {
            "event": event,
            "run_id": run.id if run is not None else run_id,
            "runbook": run.runbook if run is not None else runbook,
            "step": step,
            "actor": actor,
            "data": data or {},
            "ts": iso(self.clock.now()),
        }

    async def commit(self, txn: Transaction) -> list[dict[str, Any]]:
        """Queue a transaction and return once it is durable (shared fsync)."""
        records = txn.commit()
        await self.sync()
        return records

    async def sync(self) -> None:
        """Barrier: everything applied so far is durable (call before answering anyone)."""
        try:
            await self.store.sync()
        except StoreError as exc:
            self._fail(exc)
            raise

    def commit_now(self, txn: Transaction) -> list[dict[str, Any]]:
        """Make a transaction durable now, without yielding (for synchronous callers)."""
        records = txn.commit()
        try:
            self.store.flush_now()
        except StoreError as exc:
            self._fail(exc)
            raise
        return records

    def _fail(self, exc: StoreError) -> None:
        """A write failed: memory is ahead of the disk, so nothing more may start."""
        if self.fatal is None:
            self.fatal = exc
        self.stop_starting()

    def record_now(self, run: RunState | None, event: str, **kwargs: Any) -> dict[str, Any]:
        """Durably append one record, now (a transaction of its own)."""
        txn = self.begin()
        record = txn.add(self.event(run, event, **kwargs))
        self.commit_now(txn)
        return record

    async def record(self, run: RunState | None, event: str, **kwargs: Any) -> dict[str, Any]:
        """Durably append one record (a transaction of its own, sharing an fsync)."""
        txn = self.begin()
        record = txn.add(self.event(run, event, **kwargs))
        await self.commit(txn)
        return record

    def _announce(self, records: list[dict[str, Any]]) -> None:
        """Tell listeners about records once they are durable, in log order."""
        for record in records:
            run = self.store.world.runs.get(record["run_id"] or "")
            if run is None:
                continue
            for listener in self.listeners:
                try:
                    listener(run, record)
                except Exception:
                    log.exception("listener failed")

    # -- advancing a run ------------------------------------------------------------------

    def view(self, run: RunState) -> RunbookView:
        view = self._views.get(run.digest)
        if view is None:
            view = self._views[run.digest] = RunbookView(
                self.catalog.definition(run.digest, run.runbook)
            )
        return view

    @staticmethod
    def view_kind(runbook: Runbook, step_id: str) -> str:
        return RunbookView(runbook).step_kind(step_id)

    advance = advance_mod.advance  # decide what can be decided now, in one transaction

    def plan_of(self, run: RunState) -> RunbookPlan:
        return self.catalog.plan(run.digest, run.runbook)

    follow = effects.follow  # act on a durable transaction

    async def kick(self, run: RunState, *, recover: bool) -> None:
        """First advance after admission or a restart (its log lines carry the run id)."""
        token = run_id_var.set(run.id)
        try:
            await self._kick(run, recover=recover)
        finally:
            run_id_var.reset(token)

    async def _kick(self, run: RunState, *, recover: bool) -> None:
        live = self.live_of(run.id)
        live.admitted = True
        live.busy += 1
        try:
            try:
                plan = self.plan_of(run)
            except RunbookBotError as exc:
                txn = self.begin()
                reason = f"cannot load this run's runbook: {exc}"
                advance_mod.finish_in(self, run, txn, error=reason)
                await self.commit(txn)
                log.error("run %s failed: cannot load its runbook: %s", run.id, exc)
                follow = FollowUp(finished=True)  # its slot is handed on like any other end
            else:
                if run.thread is None and not run.started_any:
                    await effects.chat_started(self, run)
                if recover:  # before a wind-down, which would run them again
                    await recovery.recover_compensations(self, run, plan)
                if run.cancelled_by is not None:
                    await recovery.wind_down(self, run)
                    return
                if recover:
                    await recovery.recover_interrupted(self, run, plan, live)
                txn = self.begin()
                follow = advance_mod.advance(self, run, txn)
                await self.commit(txn)
        except StoreError as exc:
            log.error("run %s stopped: %s", run.id, exc)
            return
        finally:
            live.busy -= 1
        await self.follow(run, follow)

    def spawn_step(self, run: RunState, sid: str, *, recorded: bool) -> None:
        if self.stopping and not recorded:
            return  # it stays as it is; the next start recovers it
        live = self.live_of(run.id)
        task = asyncio.create_task(
            execute.run_step(self, run, sid, recorded=recorded), name=f"step:{run.id}:{sid}"
        )
        live.tasks[sid] = task

    async def step_ended(self, run: RunState, sid: str, event: dict[str, Any]) -> FollowUp:
        """Record a step's end and advance the run, in one transaction.

        An output that cannot be stored (not JSON, or over 256 KiB) fails the step.
        """
        txn = self.begin()
        try:
            txn.add(event, max_bytes=None if self.dry_run else execute.MAX_RECORD_BYTES)
        except AuditError as exc:
            plan = self.plan_of(run)
            txn.add(
                self.failed_event(
                    run,
                    plan,
                    sid,
                    f"its output cannot be recorded: {exc}",
                    event["data"].get("attempts", 0),
                )
            )
        follow = advance_mod.advance(self, run, txn, changed=[sid])
        await self.commit(txn)
        return follow

    def failed_event(
        self, run: RunState, plan: RunbookPlan, sid: str, error: str, attempts: int
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "error": error,
            "continue_on_error": plan.steps[sid].continue_on_error,
        }
        if attempts:
            data["attempts"] = attempts
        return self.event(run, "step.failed", step=sid, data=data)

    async def fire_due(self, run_id: str | None = None) -> None:
        """Fire gate deadlines and escalations that are due (all runs, or one)."""
        runs = [self.store.world.runs[run_id]] if run_id else list(self.store.world.active_runs())
        for run in runs:
            if not run.ended:
                await gates.fire_due(self, run)

    # -- chat helpers ---------------------------------------------------------------------


__all__ = ["Engine", "NullChat", "StartResult", "StaticGroups"]
