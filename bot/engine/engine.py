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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bot.engine import gates
from bot.engine.catalog import RunbookCatalog
from bot.engine.clock import SystemClock, iso, parse_iso
from bot.engine.context import build_context
from bot.engine.plan import Action, RunbookPlan, compensation_order, final_status
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
from bot.engine.state import RunState, RunStatus, dedup_slot
from bot.engine.steps import (
    MAX_OUTPUT_BYTES,
    CallPlan,
    CallRunner,
    StepFailure,
    for_each_items,
    render_args,
)
from bot.engine.timers import ClockTimers
from bot.engine.view import RunbookView
from bot.errors import (
    AuditError,
    ChatError,
    ConflictError,
    NotFoundError,
    PermissionDenied,
    RunbookBotError,
    StoreError,
)
from bot.redact import REDACTOR
from bot.runbook.inputs import coerce_inputs
from bot.runbook.model import ApprovalStep, CallStep, NotifyStep, RetryPolicy, Runbook, Who
from bot.runbook.templates import TemplateError, evaluate, render_string

log = logging.getLogger("runbook.engine")

_B32 = "0123456789abcdefghjkmnpqrstvwxyz"
NO_RETRY = RetryPolicy(attempts=1)
MAX_RECORD_BYTES = MAX_OUTPUT_BYTES + 4096


def new_run_id() -> str:
    """``r-`` + 16 base32 characters: sortable by time, unguessable enough."""
    value = (int(time.time() * 1000) << 32) | secrets.randbits(32)
    chars = []
    for _ in range(16):
        chars.append(_B32[value & 31])
        value >>= 5
    return "r-" + "".join(reversed(chars))


@dataclass(slots=True)
class StartResult:
    """What :meth:`Engine.start_run` did: started a run, or joined one within a dedup window."""

    run: RunState
    deduplicated: bool = False


@dataclass(slots=True)
class FollowUp:
    """What to do once a transaction is durable."""

    spawn: list[str] = field(default_factory=list)
    gates: list[str] = field(default_factory=list)
    changed_gates: list[str] = field(default_factory=list)
    compensate: bool = False
    finished: bool = False


@dataclass(slots=True)
class _Live:
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    admitted: bool = False
    recheck: bool = True
    failure_seen: bool = False
    busy: int = 0
    finishing: bool = False


class NullChat:
    """Chat that says nothing (tests, dry runs)."""

    async def run_started(self, run: RunState, view: Any) -> None:
        return None

    async def run_progress(self, run: RunState, view: Any) -> None:
        return None

    async def run_finished(self, run: RunState, view: Any) -> None:
        return None

    async def gate_opened(self, run: RunState, step_id: str, view: Any) -> None:
        return None

    async def gate_changed(self, run: RunState, step_id: str, view: Any) -> None:
        return None

    async def gate_escalated(self, run: RunState, step_id: str, view: Any) -> None:
        return None

    async def notify(
        self, run: RunState, step_id: str, text: str, channel: str | None, thread: bool,
        view: Any,
    ) -> None:
        return None


class StaticGroups:
    """Group membership from settings (``RUNBOOK_GROUPS``) for ``cli:`` and ``api:`` people."""

    def __init__(self, groups: Mapping[str, list[str]]) -> None:
        self.groups = {name: set(members) for name, members in groups.items()}

    async def groups_of(self, identity: str, candidates: Iterable[str]) -> set[str]:
        short = identity.split(":", 1)[1] if ":" in identity else identity
        return {
            group
            for group in candidates
            if short in self.groups.get(group, set()) or identity in self.groups.get(group, set())
        }


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
        self.calls = CallRunner(
            actions, self.clock, register_secret=REDACTOR.add,
            **({"rng": rng} if rng is not None else {}),
        )
        self._live: dict[str, _Live] = {}
        self._queue: list[str] = []
        self._accepting = True
        self._closing = False
        self._dedup_inflight: dict[str, asyncio.Future[RunState]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._views: dict[str, RunbookView] = {}
        self.fatal: StoreError | None = None

    # -- life cycle ------------------------------------------------------------------------

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
        self._admit()

    async def resume_run(self, run_id: str) -> None:
        """Carry one unfinished run on: re-arm deadlines, fire those due, recover steps."""
        run = self.store.world.runs.get(run_id)
        if run is None or run.ended:
            return
        for sid in run.waiting_gates:
            gates.arm_timers(self, run, sid)
        if run.status is RunStatus.PENDING and run.cancelled_by is None:
            if run_id not in self._queue:
                self._queue.append(run_id)
            return
        self._live_of(run_id).admitted = True
        await gates.fire_due(self, run)
        if not run.ended:
            await self._kick(run, recover=True)

    async def close(self, grace: float = 30.0) -> None:
        """Stop taking work; let running steps reach a durable point; stop.

        Steps still running after ``grace`` seconds are interrupted without a
        record: after a restart the crash-recovery rules apply to them.
        """
        self._accepting = False
        tasks = [t for live in self._live.values() for t in live.tasks.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        self._closing = True
        leftovers = [
            t for live in self._live.values() for t in live.tasks.values() if not t.done()
        ] + [t for t in self._background if not t.done()]
        for task in leftovers:
            task.cancel()
        for task in leftovers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.timers.close()

    # -- starting runs ---------------------------------------------------------------------

    async def start_run(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        requester: str | None,
        trigger: Mapping[str, Any] | None = None,
        alert: Any = None,
        from_text: bool = False,
        dedup: tuple[str, float] | None = None,
        idempotency_key: str | None = None,
        check_permission: bool = True,
        admit: bool = True,
    ) -> StartResult:
        """Start a run durably (its ``run.started`` record is on disk when this returns).

        Raises:
            NotFoundError: unknown runbook.
            InputError: inputs that do not fit.
            PermissionDenied: the requester may not start it (``run_by``).
        """
        if not self._accepting:
            raise ConflictError("the service is shutting down; try again shortly")
        if self.fatal is not None:
            raise self.fatal
        loaded = self.catalog.get(name)
        runbook = loaded.runbook
        if check_permission and requester is not None and runbook.run_by is not None:
            if not await self.matches(requester, runbook.run_by):
                raise PermissionDenied(
                    f"{requester} may not start runbook {name!r} (run_by limits who may)"
                )
        values = coerce_inputs(runbook.inputs, dict(inputs or {}), from_text=from_text)
        if idempotency_key is not None and idempotency_key in self.store.world.idempotency:
            existing = self.store.get_run(self.store.world.idempotency[idempotency_key])
            if existing is not None:
                return StartResult(existing, deduplicated=True)
        slot = dedup_slot(name, dedup[0]) if dedup else None
        if slot is not None:
            joined = await self._dedup_join(slot)
            if joined is not None:
                return StartResult(joined, deduplicated=True)
            future: asyncio.Future[RunState] = asyncio.get_running_loop().create_future()
            self._dedup_inflight[slot] = future
        try:
            run = await self._record_start(
                loaded, values, requester, dict(trigger or {"kind": "manual"}), alert,
                dedup, idempotency_key,
            )
        except BaseException as exc:
            if slot is not None:
                pending = self._dedup_inflight.pop(slot)
                pending.set_exception(exc if isinstance(exc, Exception) else RuntimeError("stop"))
                pending.exception()  # retrieved: nobody else may be waiting
            raise
        if slot is not None:
            self._dedup_inflight.pop(slot).set_result(run)
        self._queue.append(run.id)
        if admit:
            self._admit()
        return StartResult(run)

    async def _dedup_join(self, slot: str) -> RunState | None:
        inflight = self._dedup_inflight.get(slot)
        if inflight is not None:
            try:
                return await asyncio.shield(inflight)
            except Exception:  # noqa: BLE001 - the other start failed; try our own
                return None
        entry = self.store.world.dedup.get(slot)
        if entry is not None and entry.until > iso(self.clock.now()):
            return self.store.get_run(entry.run_id)
        return None

    async def _record_start(
        self,
        loaded: Any,
        values: dict[str, Any],
        requester: str | None,
        trigger: dict[str, Any],
        alert: Any,
        dedup: tuple[str, float] | None,
        idempotency_key: str | None,
    ) -> RunState:
        runbook: Runbook = loaded.runbook
        run_id = new_run_id()
        now = self.clock.now()
        concurrency_key = None
        if runbook.concurrency_key is not None:
            context = {
                "inputs": values,
                "alert": alert,
                "run": {"id": run_id, "runbook": runbook.name, "requester": requester,
                        "trigger": trigger.get("kind"), "started_at": iso(now)},
            }
            try:
                concurrency_key = str(render_string(runbook.concurrency_key, context))
            except TemplateError as exc:
                raise ConflictError(f"concurrency_key: {exc.message}") from None
        if not self.dry_run:
            await self.store.save_definition(loaded.digest, loaded.form, loaded.source)
        data: dict[str, Any] = {
            "inputs": values,
            "requester": requester,
            "trigger": trigger,
            "alert": alert,
            "digest": loaded.digest,
            "title": runbook.display_title,
            "steps": runbook.step_ids,
            "sandbox": self.sandbox,
            "concurrency_key": concurrency_key,
        }
        if dedup is not None:
            data["dedup"] = {"key": dedup[0], "until": iso(now + timedelta(seconds=dedup[1]))}
        if idempotency_key is not None:
            data["idempotency_key"] = idempotency_key
        self.record_now(
            None, "run.started", actor=requester or _trigger_actor(trigger), data=data,
            run_id=run_id, runbook=runbook.name,
        )
        return self.store.world.runs[run_id]

    # -- admission (storm control) -------------------------------------------------------------

    def _admit(self) -> None:
        """Start queued runs in arrival order, within the global and per-runbook limits.

        Runs waiting at a gate hold no slot; a concurrency key is held by every
        admitted unfinished run, and later runs with a held key keep their order.
        """
        if not self._accepting or not self._queue:
            return
        world = self.store.world
        executing = 0
        by_runbook: dict[str, int] = {}
        keys: set[str] = set()
        for rid, live in self._live.items():
            run = world.runs.get(rid)
            if run is None or run.ended or not live.admitted:
                continue
            if run.concurrency_key is not None:
                keys.add(run.concurrency_key)
            if not live.settled.is_set():
                executing += 1
                by_runbook[run.runbook] = by_runbook.get(run.runbook, 0) + 1
        remaining: list[str] = []
        for rid in self._queue:
            run = world.runs.get(rid)
            if run is None or run.ended:
                continue
            limit = self._runbook_limit(run)
            blocked = (
                executing >= self.max_concurrent_runs
                or (limit is not None and by_runbook.get(run.runbook, 0) >= limit)
                or (run.concurrency_key is not None and run.concurrency_key in keys)
            )
            if run.concurrency_key is not None:
                keys.add(run.concurrency_key)
            if blocked:
                remaining.append(rid)
                continue
            executing += 1
            by_runbook[run.runbook] = by_runbook.get(run.runbook, 0) + 1
            live = self._live_of(rid)
            live.admitted = True
            self._spawn(self._kick(run, recover=False), f"kick:{rid}")
        self._queue = remaining

    def _runbook_limit(self, run: RunState) -> int | None:
        try:
            return self.catalog.definition(run.digest, run.runbook).max_concurrent
        except RunbookBotError:
            return None

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def _live_of(self, run_id: str) -> _Live:
        live = self._live.get(run_id)
        if live is None:
            live = self._live[run_id] = _Live()
        return live

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- waiting for runs ----------------------------------------------------------------------

    def is_settled(self, run: RunState) -> bool:
        """Ended, or waiting for people with nothing running or about to run."""
        if run.ended:
            return True
        live = self._live.get(run.id)
        if live is None:
            return run.id not in self._queue and run.running_count == 0
        return (
            live.admitted
            and not live.tasks
            and not live.busy
            and run.running_count == 0
            and run.waiting_count > 0
        )

    def _update_settled(self, run: RunState) -> None:
        live = self._live.get(run.id)
        if live is None:
            return
        if self.is_settled(run):
            live.settled.set()
            if run.ended:
                self._live.pop(run.id, None)
            self._admit()
        else:
            live.settled.clear()

    async def wait_settled(self, run_id: str) -> RunState:
        """Wait until the run has ended or waits for people with nothing else to do."""
        while True:
            run = self.store.get_run(run_id)
            if run is None:
                raise NotFoundError(f"unknown run {run_id}", kind="run", key=run_id)
            if self.is_settled(run):
                return run
            if self.fatal is not None:
                raise self.fatal
            live = self._live_of(run_id)
            await live.settled.wait()
            if self.fatal is not None:
                raise self.fatal

    # -- decisions and cancellation ------------------------------------------------------------------

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
        """Record one person's decision at a gate (see :mod:`bot.engine.gates`)."""
        return await gates.decide(self, run_id, step_id, identity, decision, comment, fields)

    async def cancel(self, run_id: str, identity: str) -> RunState:
        """Cancel a run: running steps are cancelled, then compensations run.

        Raises:
            NotFoundError: unknown run.
            ConflictError: the run already ended.
            PermissionDenied: not the requester, someone in run_by, or an approver.
        """
        run = self.store.get_run(run_id)
        if run is None:
            raise NotFoundError(f"unknown run {run_id}", kind="run", key=run_id)
        if run.ended:
            raise ConflictError(f"run {run_id} already ended ({run.status})")
        if not await self.may_cancel(run, identity):
            raise PermissionDenied(
                f"{identity} may not cancel run {run_id} (only its requester, the people in "
                "run_by and its approvers may)"
            )
        if run.cancelled_by is None:
            self.record_now(run, "run.cancelled", actor=identity, data={"reason": "cancelled"})
        if run_id in self._queue:
            self._queue.remove(run_id)
        live = self._live_of(run_id)
        live.admitted = True
        live.busy += 1
        try:
            tasks = list(live.tasks.values())
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._wind_down(run)
        finally:
            live.busy -= 1
            self._update_settled(run)
        return run

    async def may_cancel(self, run: RunState, identity: str) -> bool:
        """Requester, people in run_by (anyone if unset), and the approvers of its gates."""
        if identity == run.requester:
            return True
        runbook = self.catalog.definition(run.digest, run.runbook)
        if runbook.run_by is None or await self.matches(identity, runbook.run_by):
            return True
        for step in runbook.steps:
            if isinstance(step, ApprovalStep):
                who = step.approval.approvers
                if who is None or await self.matches(identity, who):
                    return True
        return False

    async def matches(self, identity: str, who: Who) -> bool:
        """Whether ``identity`` is one of ``who`` (users, or a member of its groups)."""
        from bot.engine.approvals import listed

        if listed(identity, who.users):
            return True
        if who.groups:
            return bool(await self.groups.groups_of(identity, who.groups))
        return False

    # -- records and transactions ----------------------------------------------------------------------

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

    def commit(self, txn: Transaction) -> list[dict[str, Any]]:
        """Make a transaction durable, then tell listeners."""
        try:
            records = txn.commit()
        except StoreError as exc:
            self.fatal = exc
            raise
        for record in records:
            run = self.store.world.runs.get(record["run_id"] or "")
            if run is None:
                continue
            for listener in self.listeners:
                try:
                    listener(run, record)
                except Exception:
                    log.exception("listener failed")
        return records

    def record_now(
        self, run: RunState | None, event: str, **kwargs: Any
    ) -> dict[str, Any]:
        """Durably append one record (a transaction of its own)."""
        txn = self.begin()
        record = txn.add(self.event(run, event, **kwargs))
        self.commit(txn)
        return record

    async def record(self, run: RunState, event: str, **kwargs: Any) -> dict[str, Any]:
        return self.record_now(run, event, **kwargs)

    # -- advancing a run -----------------------------------------------------------------------------

    def view(self, run: RunState) -> RunbookView:
        view = self._views.get(run.digest)
        if view is None:
            view = self._views[run.digest] = RunbookView(
                self.catalog.definition(run.digest, run.runbook)
            )
        return view

    def plan_of(self, run: RunState) -> RunbookPlan:
        return self.catalog.plan(run.digest, run.runbook)

    def _advance(
        self, run: RunState, txn: Transaction, changed: Iterable[str] | None = None
    ) -> FollowUp:
        """Decide every step that can be decided now; add their records to ``txn``.

        Synchronous on purpose: see the module docstring.
        """
        follow = FollowUp()
        live = self._live_of(run.id)
        if run.ended or run.cancelled_by is not None or live.finishing:
            return follow
        plan = self.plan_of(run)
        if live.recheck or changed is None:
            live.recheck = False
            candidates = [sid for sid in plan.order if self._undecided(run, live, sid)]
        else:
            candidates = _dependents(plan, run, live, changed, self)
        while candidates:
            newly: list[str] = []
            for sid in candidates:
                if not self._undecided(run, live, sid):
                    continue
                decision = plan.decide(run, sid, lambda expr: evaluate(expr, build_context(run)))
                if decision is None:
                    continue
                if decision.action is Action.SKIP:
                    txn.add(self.event(run, "step.skipped", step=sid,
                                       data={"reason": decision.reason}))
                    newly.append(sid)
                elif decision.action is Action.FAIL:
                    txn.add(self._failed_event(run, plan, sid, decision.reason or "failed", 0))
                    newly.append(sid)
                elif isinstance(plan.steps[sid].step, ApprovalStep):
                    if gates.request(self, run, plan, sid, txn):
                        follow.gates.append(sid)
                    if run.steps[sid].ended:
                        newly.append(sid)
                else:
                    step = plan.steps[sid].step
                    uses = step.uses if isinstance(step, CallStep) else "notify"
                    txn.add(self.event(run, "step.started", step=sid,
                                       data={"attempt": run.steps[sid].attempts + 1,
                                             "uses": uses,
                                             "idempotency_key": f"{run.id}:{sid}"}))
                    follow.spawn.append(sid)
            if run.failure and not live.failure_seen:
                live.failure_seen = True
                for sid in run.waiting_gates:
                    if not plan.steps[sid].failure_handler:
                        gates.close_in(self, run, sid, txn, "step.cancelled",
                                       {"reason": "an earlier step failed"})
                        follow.changed_gates.append(sid)
                candidates = [sid for sid in plan.order if self._undecided(run, live, sid)]
                continue
            candidates = _dependents(plan, run, live, newly, self) if newly else []
        if run.running_count == 0 and run.waiting_count == 0 and not follow.spawn:
            if (run.failure or run.cancelled_by is not None) and compensation_order(run, plan):
                follow.compensate = True
                live.finishing = True
            else:
                self._finish_in(run, txn)
                follow.finished = True
        return follow

    def _undecided(self, run: RunState, live: _Live, sid: str) -> bool:
        state = run.steps[sid]
        if state.outcome is not None or state.running or state.waiting:
            return False
        return sid not in live.tasks

    def _finish_in(self, run: RunState, txn: Transaction, error: str | None = None) -> None:
        status = RunStatus.FAILED if error else final_status(run)
        data: dict[str, Any] = {"status": str(status)}
        if error:
            data["error"] = error
        data["duration"] = round(
            (self.clock.now() - parse_iso(run.started_at)).total_seconds(), 3
        )
        txn.add(self.event(run, "run.finished", data=data))

    async def _follow(self, run: RunState, follow: FollowUp) -> None:
        """Act on a durable transaction: spawn steps, post gates, compensate, announce."""
        live = self._live_of(run.id)
        for sid in follow.spawn:
            self._spawn_step(run, sid, recorded=True)
        live.busy += 1
        try:
            for sid in follow.changed_gates:
                self.timers.disarm(f"{run.id}:{sid}:deadline")
                self.timers.disarm(f"{run.id}:{sid}:escalate")
                with contextlib.suppress(ChatError):
                    await self.chat.gate_changed(run, sid, self.view(run))
            for sid in follow.gates:
                gates.arm_timers(self, run, sid)
                await gates.post(self, run, sid)
            if follow.compensate:
                await self._compensate(run)
                txn = self.begin()
                self._finish_in(run, txn)
                self.commit(txn)
                follow.finished = True
            if follow.finished:
                for sid in run.step_ids:
                    self.timers.disarm(f"{run.id}:{sid}:deadline")
                    self.timers.disarm(f"{run.id}:{sid}:escalate")
                with contextlib.suppress(ChatError, RunbookBotError):
                    await self.chat.run_finished(run, self.view(run))
            elif run.waiting_count and not run.running_count and not live.tasks:
                await self._chat_progress(run)
        finally:
            live.busy -= 1
            self._update_settled(run)

    async def _kick(self, run: RunState, *, recover: bool) -> None:
        """First advance after admission or a restart."""
        live = self._live_of(run.id)
        live.admitted = True
        live.busy += 1
        try:
            try:
                plan = self.plan_of(run)
            except RunbookBotError as exc:
                txn = self.begin()
                self._finish_in(run, txn, error=f"cannot load this run's runbook: {exc}")
                self.commit(txn)
                return
            if run.thread is None and not run.started_any:
                await self._chat_started(run)
            if run.cancelled_by is not None:
                await self._wind_down(run)
                return
            if recover:
                await self._recover_interrupted(run, plan, live)
            txn = self.begin()
            follow = self._advance(run, txn)
            self.commit(txn)
        except StoreError as exc:
            log.error("run %s stopped: %s", run.id, exc)
            return
        finally:
            live.busy -= 1
        await self._follow(run, follow)

    def _spawn_step(self, run: RunState, sid: str, *, recorded: bool) -> None:
        live = self._live_of(run.id)
        task = asyncio.create_task(
            self._run_step(run, sid, recorded=recorded), name=f"step:{run.id}:{sid}"
        )
        live.tasks[sid] = task

    def step_ended(self, run: RunState, sid: str, event: dict[str, Any]) -> FollowUp:
        """Record a step's end and advance the run, in one transaction.

        An output that cannot be stored (not JSON, or over 256 KiB) fails the step.
        """
        txn = self.begin()
        try:
            txn.add(event, max_bytes=MAX_RECORD_BYTES)
        except AuditError as exc:
            plan = self.plan_of(run)
            txn.add(self._failed_event(
                run, plan, sid, f"its output cannot be recorded: {exc}",
                event["data"].get("attempts", 0),
            ))
        follow = self._advance(run, txn, changed=[sid])
        self.commit(txn)
        return follow

    # -- executing steps ------------------------------------------------------------------------------

    async def _run_step(self, run: RunState, sid: str, *, recorded: bool) -> None:
        live = self._live_of(run.id)
        plan = self.plan_of(run)
        step = plan.steps[sid].step
        follow: FollowUp | None = None
        try:
            if isinstance(step, CallStep):
                event = await self._run_call(run, plan, sid, step, recorded=recorded)
            elif isinstance(step, NotifyStep):
                event = await self._run_notify(run, plan, sid, step)
            else:  # pragma: no cover - gates have no task
                return
            if live.tasks.get(sid) is asyncio.current_task():
                del live.tasks[sid]
            follow = self.step_ended(run, sid, event)
        except asyncio.CancelledError:
            if not self._closing and run.cancelled_by is not None and not run.steps[sid].ended:
                with contextlib.suppress(StoreError):
                    self.record_now(run, "step.cancelled", step=sid,
                                    data={"reason": "run cancelled", "error": "cancelled"})
            raise
        except StoreError as exc:
            log.error("run %s step %s: %s", run.id, sid, exc)
        except Exception:
            log.exception("run %s step %s: internal error", run.id, sid)
            with contextlib.suppress(StoreError):
                follow = self.step_ended(
                    run, sid, self._failed_event(run, plan, sid, "internal error (see logs)", 0)
                )
        finally:
            if live.tasks.get(sid) is asyncio.current_task():
                del live.tasks[sid]
        if follow is not None:
            await self._follow(run, follow)
        else:
            self._update_settled(run)

    def _failed_event(
        self, run: RunState, plan: RunbookPlan, sid: str, error: str, attempts: int
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "error": error, "continue_on_error": plan.steps[sid].continue_on_error
        }
        if attempts:
            data["attempts"] = attempts
        return self.event(run, "step.failed", step=sid, data=data)

    async def _run_call(
        self, run: RunState, plan: RunbookPlan, sid: str, step: CallStep, *, recorded: bool
    ) -> dict[str, Any]:
        """Run a call step to its end; returns its outcome event (not yet recorded)."""
        state = run.steps[sid]
        try:
            spec = self.actions.lookup(step.uses)
        except LookupError as exc:
            return self._failed_event(run, plan, sid, str(exc), state.attempts)
        first = state.attempts if recorded else state.attempts + 1
        context = build_context(run)
        policy = step.retry or NO_RETRY

        async def on_retry(attempt: int, error: str, delay: float) -> None:
            self.record_now(run, "step.retrying", step=sid,
                            data={"attempt": attempt, "error": error, "delay": round(delay, 3)})

        async def on_attempt(attempt: int) -> None:
            if recorded and attempt == first:
                return
            self.record_now(run, "step.started", step=sid,
                            data={"attempt": attempt, "uses": step.uses,
                                  "idempotency_key": f"{run.id}:{sid}"})

        try:
            if step.for_each is not None:
                items = for_each_items(step.for_each, context)
                output, attempts = await self._run_items(run, sid, step, spec, items, policy)
            else:
                args = render_args(step.with_, context)
                if self.dry_run and spec.mutating:
                    output, attempts = await self._dry_call(run, sid, spec, args), first
                else:
                    call = self._call_plan(run, sid, step, spec, args, f"{run.id}:{sid}", policy)
                    output, attempts = await self.calls.attempts(
                        call, first_attempt=first, context=context,
                        on_retry=on_retry, on_attempt=on_attempt,
                    )
        except StepFailure as failure:
            return self._failed_event(run, plan, sid, failure.message,
                                      failure.attempts or state.attempts)
        return self.event(run, "step.succeeded", step=sid,
                          data={"output": output, "attempts": attempts})

    def _call_plan(
        self, run: RunState, sid: str, step: CallStep, spec: Any, args: dict[str, Any],
        key: str, policy: RetryPolicy,
    ) -> CallPlan:
        return CallPlan(
            ref=step.uses, spec=spec, args=args, timeout=step.timeout, retry=policy,
            until=step.until, poll=step.poll, run_id=run.id, step_id=sid, idempotency_key=key,
        )

    async def _run_items(
        self, run: RunState, sid: str, step: CallStep, spec: Any, items: list[Any],
        policy: RetryPolicy,
    ) -> tuple[list[Any], int]:
        state = run.steps[sid]
        semaphore = asyncio.Semaphore(step.max_parallel)
        most = 1

        async def one(index: int, item: Any) -> None:
            nonlocal most
            if index in state.items:
                return
            async with semaphore:
                context = build_context(run, item=item, index=index)
                args = render_args(step.with_, context)
                if self.dry_run and spec.mutating:
                    output, attempts = await self._dry_call(run, sid, spec, args), 1
                else:
                    call = self._call_plan(
                        run, sid, step, spec, args, f"{run.id}:{sid}:{index}", policy
                    )

                    async def retry(attempt: int, error: str, delay: float) -> None:
                        self.record_now(
                            run, "step.retrying", step=sid,
                            data={"attempt": attempt, "index": index,
                                  "error": f"item {index}: {error}", "delay": round(delay, 3)},
                        )

                    output, attempts = await self.calls.attempts(
                        call, first_attempt=1, context=context, on_retry=retry
                    )
                most = max(most, attempts)
                txn = self.begin()
                try:
                    txn.add(self.event(run, "step.item_succeeded", step=sid,
                                       data={"index": index, "output": output}),
                            max_bytes=MAX_RECORD_BYTES)
                except AuditError as exc:
                    raise StepFailure(f"its output cannot be recorded: {exc}", attempts) from None
                self.commit(txn)

        tasks = [asyncio.create_task(one(i, item)) for i, item in enumerate(items)]
        try:
            await _gather_fail_fast(tasks)
        except StepFailure as failure:
            raise StepFailure(f"item {_failed_index(tasks)}: {failure.message}", most) from None
        return [state.items.get(i) for i in range(len(items))], most

    async def _dry_call(self, run: RunState, sid: str, spec: Any, args: dict[str, Any]) -> Any:
        from bot.engine.dryrun import Placeholder

        try:
            description = self.actions.describe(spec, args)
        except RunbookBotError as exc:
            raise StepFailure(str(exc)) from None
        self.record_now(run, "step.dry_run", step=sid,
                        data={"uses": spec.ref, "args": args, "request": description})
        return Placeholder(f"steps.{sid}.output")

    async def _run_notify(
        self, run: RunState, plan: RunbookPlan, sid: str, step: NotifyStep
    ) -> dict[str, Any]:
        context = build_context(run)
        refs: list[Any] = []
        try:
            items = for_each_items(step.for_each, context) if step.for_each else [None]
            channel = step.notify.channel or self.view(run).channel
            for index, item in enumerate(items):
                extra = {"item": item, "index": index} if step.for_each else {}
                try:
                    text = str(render_string(step.notify.text, build_context(run, **extra)))
                except TemplateError as exc:
                    raise StepFailure(f"text: {exc.message}") from None
                text = REDACTOR.text(text)
                if self.dry_run:
                    self.record_now(run, "step.dry_run", step=sid,
                                    data={"notify": {"channel": channel, "text": text}})
                    refs.append({"channel": channel, "ts": None})
                    continue
                try:
                    ref = await self.chat.notify(
                        run, sid, text, channel, step.notify.thread, self.view(run)
                    )
                except ChatError as exc:
                    raise StepFailure(f"chat: {exc}") from None
                refs.append(ref or {"channel": channel, "ts": None})
        except StepFailure as failure:
            return self._failed_event(run, plan, sid, failure.message, 1)
        output: Any = refs if step.for_each else refs[0]
        return self.event(run, "step.succeeded", step=sid, data={"output": output, "attempts": 1})

    # -- cancellation, compensation ----------------------------------------------------------------------

    async def _wind_down(self, run: RunState) -> None:
        """After a cancel: close what is open, compensate, finish."""
        live = self._live_of(run.id)
        if run.ended or live.finishing:
            return
        live.finishing = True
        txn = self.begin()
        changed = []
        for sid in run.step_ids:
            state = run.steps[sid]
            if state.running and sid not in live.tasks:
                txn.add(self.event(run, "step.cancelled", step=sid,
                                   data={"reason": "run cancelled"}))
            elif state.waiting:
                gates.close_in(self, run, sid, txn, "step.cancelled", {"reason": "run cancelled"})
                changed.append(sid)
        self.commit(txn)
        await self._follow(run, FollowUp(changed_gates=changed, compensate=True))

    async def _compensate(self, run: RunState) -> None:
        plan = self.plan_of(run)
        for sid in compensation_order(run, plan):
            step = plan.steps[sid].step
            assert isinstance(step, CallStep) and step.compensate is not None
            state = run.steps[sid]
            targets: list[tuple[int | None, Any]] = [(None, None)]
            if step.for_each is not None and isinstance(state.output, list):
                try:
                    source = for_each_items(step.for_each, build_context(run))
                except StepFailure:
                    source = []
                targets = [
                    (i, source[i] if i < len(source) else None)
                    for i in reversed(range(len(state.output)))
                ]
            for index, item in targets:
                if index is not None and index in state.compensated_items:
                    continue
                await self._compensate_one(run, sid, step, index, item)

    async def _compensate_one(
        self, run: RunState, sid: str, step: CallStep, index: int | None, item: Any
    ) -> None:
        comp = step.compensate
        assert comp is not None
        extra = {"item": item, "index": index} if index is not None else {}
        data: dict[str, Any] = {"uses": comp.uses}
        if index is not None:
            data["item"] = index
        self.record_now(run, "compensation.started", step=sid, data=data)
        context = build_context(run, **extra)
        try:
            spec = self.actions.lookup(comp.uses)
            args = render_args(comp.with_, context)
            if self.dry_run and spec.mutating:
                await self._dry_call(run, sid, spec, args)
                output: Any = None
            else:
                suffix = f":{index}" if index is not None else ""
                call = CallPlan(
                    ref=comp.uses, spec=spec, args=args, timeout=comp.timeout,
                    retry=comp.retry or NO_RETRY, until=None, poll=None, run_id=run.id,
                    step_id=sid, idempotency_key=f"{run.id}:{sid}:compensate{suffix}",
                )

                async def quiet(attempt: int, error: str, delay: float) -> None:
                    return None

                output, _ = await self.calls.attempts(
                    call, first_attempt=1, context=context, on_retry=quiet
                )
        except (StepFailure, LookupError) as exc:
            message = exc.message if isinstance(exc, StepFailure) else str(exc)
            self.record_now(run, "compensation.failed", step=sid, data={**data, "error": message})
            return
        self.record_now(run, "compensation.succeeded", step=sid, data={**data, "output": output})

    # -- crash recovery ------------------------------------------------------------------------------

    async def _recover_interrupted(self, run: RunState, plan: RunbookPlan, live: _Live) -> None:
        """Steps running when the process died: run again if safe, else ask a person."""
        for sid in plan.order:
            state = run.steps[sid]
            if not state.running or sid in live.tasks:
                continue
            step = plan.steps[sid].step
            safe = True
            if isinstance(step, CallStep):
                try:
                    safe = self.actions.lookup(step.uses).safe_to_repeat
                except LookupError:
                    safe = False
            if state.between_attempts or safe or isinstance(step, NotifyStep):
                self._spawn_step(run, sid, recorded=False)
            else:
                txn = self.begin()
                gates.request_recovery(self, run, plan, sid, txn)
                self.commit(txn)
                await gates.post(self, run, sid)
        for sid in plan.order:
            state = run.steps[sid]
            if state.compensation == "started":
                await self._recover_compensation(run, plan, sid)

    async def _recover_compensation(self, run: RunState, plan: RunbookPlan, sid: str) -> None:
        step = plan.steps[sid].step
        assert isinstance(step, CallStep) and step.compensate is not None
        try:
            safe = self.actions.lookup(step.compensate.uses).safe_to_repeat
        except LookupError:
            safe = False
        if not safe:
            self.record_now(
                run, "compensation.failed", step=sid,
                data={"uses": step.compensate.uses,
                      "error": f"interrupted by a restart; not repeated because "
                               f"{step.compensate.uses} is not idempotent — check it by hand"},
            )

    async def fire_due(self, run_id: str | None = None) -> None:
        """Fire gate deadlines and escalations that are due (all runs, or one)."""
        runs = [self.store.world.runs[run_id]] if run_id else list(self.store.world.active_runs())
        for run in runs:
            if not run.ended:
                await gates.fire_due(self, run)

    # -- chat helpers ------------------------------------------------------------------------------

    async def _chat_started(self, run: RunState) -> None:
        try:
            ref = await self.chat.run_started(run, self.view(run))
        except ChatError as exc:
            log.warning("run %s: could not post the run's thread: %s", run.id, exc)
            return
        if ref:
            self.record_now(run, "chat.posted", data={"purpose": "thread", **ref})

    async def _chat_progress(self, run: RunState) -> None:
        try:
            ref = await self.chat.run_progress(run, self.view(run))
        except ChatError as exc:
            log.warning("run %s: could not update its status message: %s", run.id, exc)
            return
        if ref and run.status_message is None:
            self.record_now(run, "chat.posted", data={"purpose": "status", **ref})


def _dependents(
    plan: RunbookPlan, run: RunState, live: _Live, changed: Iterable[str], engine: Engine
) -> list[str]:
    ids = {dep for sid in changed for dep in plan.steps[sid].dependents}
    return sorted(
        (sid for sid in ids if engine._undecided(run, live, sid)),
        key=lambda sid: plan.steps[sid].index,
    )


def _trigger_actor(trigger: Mapping[str, Any]) -> str:
    kind = trigger.get("kind")
    if kind == "alert":
        return f"alert:{trigger.get('source', 'unknown')}"
    if kind == "schedule":
        return "schedule"
    return "system"


async def _gather_fail_fast(tasks: list[asyncio.Task[None]]) -> None:
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        raise


def _failed_index(tasks: list[asyncio.Task[None]]) -> int:
    for index, task in enumerate(tasks):
        if task.done() and not task.cancelled() and task.exception() is not None:
            return index
    return -1
