"""Run state as a fold over audit records (pure).

The audit log is the journal: every transition is one record, and the state
of every run is rebuilt by applying records in order with :func:`apply`. The
engine applies each record right after it is durable, so live state and
state rebuilt after a crash are the same by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """How a step ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class RunStatus(StrEnum):
    """Where a run is."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.REJECTED, RunStatus.CANCELLED}
)
GATE_OUTCOMES = {
    "step.approved": "approved",
    "step.rejected": "rejected",
    "step.expired": "expired",
}
STEP_END_EVENTS = {
    "step.succeeded": Outcome.SUCCEEDED,
    "step.failed": Outcome.FAILED,
    "step.skipped": Outcome.SKIPPED,
    "step.approved": Outcome.APPROVED,
    "step.rejected": Outcome.REJECTED,
    "step.expired": Outcome.EXPIRED,
    "step.cancelled": Outcome.CANCELLED,
}


@dataclass(slots=True)
class Decision:
    """One accepted approval decision."""

    by: str
    decision: str
    at: str
    comment: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class GateState:
    """A waiting (or decided) approval gate."""

    prompt: str
    channel: str | None
    users: list[str]
    groups: list[str]
    open_to_all: bool
    min_approvals: int
    allow_requester: bool
    requested_at: str
    deadline: str | None
    on_timeout: str
    escalate_at: str | None
    escalate_users: list[str]
    escalate_groups: list[str]
    fields: dict[str, Any]
    recovery: bool = False
    escalated: bool = False
    # The prompt with the data in it escaped for chat markup (``&``, ``<``, ``>``);
    # None for gates requested before it was recorded.
    markup_prompt: str | None = None
    decisions: list[Decision] = field(default_factory=list)
    message: dict[str, Any] | None = None
    open: bool = True

    @property
    def approvals(self) -> list[Decision]:
        return [d for d in self.decisions if d.decision == "approve"]


@dataclass(slots=True)
class StepState:
    """One step of a run."""

    outcome: Outcome | None = None
    running: bool = False
    attempts: int = 0
    output: Any = None
    error: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    items: dict[int, Any] = field(default_factory=dict)
    between_attempts: bool = False
    gate: GateState | None = None
    completed: int | None = None  # order of completion, for compensation
    # started | succeeded | failed | items; None: not begun, or paused between attempts
    compensation: str | None = None
    compensated_items: set[int] = field(default_factory=set)  # for_each items undone
    compensating_item: int | None = None  # the item whose compensation is in progress
    reason: str | None = None
    passed_over: bool = False  # skipped by a person at a recovery gate: the run goes on

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    @property
    def waiting(self) -> bool:
        return self.gate is not None and self.gate.open and self.outcome is None


@dataclass(slots=True)
class RunState:
    """One run, as far as its records say."""

    id: str
    runbook: str
    digest: str
    inputs: dict[str, Any]
    requester: str | None
    trigger: dict[str, Any]
    alert: Any
    started_at: str
    step_ids: list[str]
    seq: int
    title: str = ""
    sandbox: bool = False
    concurrency_key: str | None = None
    status: RunStatus = RunStatus.PENDING
    ended_at: str | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    failure: bool = False
    rejected: bool = False
    cancelled_by: str | None = None
    error: str | None = None
    version: int = 0
    completions: int = 0
    thread: dict[str, Any] | None = None
    status_message: dict[str, Any] | None = None
    audit_offset: int | None = None
    started_any: bool = False
    running_count: int = 0
    waiting_count: int = 0

    @property
    def ended(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def waiting_gates(self) -> list[str]:
        return [sid for sid in self.step_ids if self.steps[sid].waiting]

    @property
    def running_steps(self) -> list[str]:
        return [sid for sid in self.step_ids if self.steps[sid].running]

    def summary(self) -> dict[str, Any]:
        """The row of ``runbook runs --json``."""
        return {
            "id": self.id,
            "runbook": self.runbook,
            "status": str(self.status),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "requester": self.requester,
        }

    def document(self) -> dict[str, Any]:
        """The document of ``runbook status --json`` (steps in document order)."""
        steps = {}
        for sid in self.step_ids:
            step = self.steps[sid]
            steps[sid] = {
                "outcome": str(step.outcome) if step.outcome else None,
                "attempts": step.attempts,
                "output": step.output,
                "error": step.error,
                "started_at": step.started_at,
                "ended_at": step.ended_at,
            }
            if step.waiting and step.gate is not None:
                steps[sid]["waiting"] = {
                    "approvals": len(step.gate.approvals),
                    "required": step.gate.min_approvals,
                    "deadline": step.gate.deadline,
                    "recovery": step.gate.recovery,
                }
        return {
            "id": self.id,
            "runbook": self.runbook,
            "status": str(self.status),
            "inputs": self.inputs,
            "requester": self.requester,
            "trigger": self.trigger,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "sandbox": self.sandbox,
            "steps": steps,
        }


@dataclass(slots=True)
class DedupEntry:
    run_id: str
    until: str


@dataclass(slots=True)
class World:
    """Everything the journal says: runs, dedup windows, schedule firings."""

    runs: dict[str, RunState] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)  # archived runs only
    dedup: dict[str, DedupEntry] = field(default_factory=dict)
    schedules: dict[str, str] = field(default_factory=dict)
    idempotency: dict[str, str] = field(default_factory=dict)
    seq: int = 0
    last_hash: str = "0" * 64
    finished: list[str] = field(default_factory=list)

    def active_runs(self) -> list[RunState]:
        return [run for run in self.runs.values() if not run.ended]

    def summary_rows(self) -> list[dict[str, Any]]:
        """Summaries of every run known (archived and in memory), newest first."""
        rows = dict(self.summaries)
        for run in self.runs.values():
            rows[run.id] = run.summary()
        return sorted(rows.values(), key=lambda r: (r["started_at"], r["id"]), reverse=True)


def dedup_slot(runbook: str, key: str, sandbox: bool = False) -> str:
    """The dedup window a run occupies: sandbox and real runs never share one."""
    slot = f"{runbook}\x00{key}"
    return f"{slot}\x00sandbox" if sandbox else slot


def idempotency_slot(key: str, sandbox: bool = False) -> str:
    """Where an idempotency key is kept: sandbox and real runs never share one."""
    return f"sandbox\x00{key}" if sandbox else key


def derive_status(run: RunState) -> RunStatus:
    """Status of an unfinished run from its step counters (see RunStatus)."""
    if not run.started_any:
        return RunStatus.PENDING
    if run.running_count:
        return RunStatus.RUNNING
    if run.waiting_count:
        return RunStatus.WAITING
    return RunStatus.RUNNING


def _set_running(run: RunState, step: StepState, running: bool) -> None:
    if step.running != running:
        run.running_count += 1 if running else -1
        step.running = running


def _close_gate(run: RunState, step: StepState) -> None:
    if step.gate is not None and step.gate.open:
        step.gate.open = False
        run.waiting_count -= 1


def _gate_from(data: dict[str, Any], ts: str) -> GateState:
    return GateState(
        prompt=data.get("prompt", ""),
        markup_prompt=data.get("markup_prompt"),
        channel=data.get("channel"),
        users=list(data.get("users", [])),
        groups=list(data.get("groups", [])),
        open_to_all=bool(data.get("open_to_all", False)),
        min_approvals=int(data.get("min_approvals", 1)),
        allow_requester=bool(data.get("allow_requester", False)),
        requested_at=ts,
        deadline=data.get("deadline"),
        on_timeout=data.get("on_timeout", "reject"),
        escalate_at=data.get("escalate_at"),
        escalate_users=list(data.get("escalate_users", [])),
        escalate_groups=list(data.get("escalate_groups", [])),
        fields=dict(data.get("fields", {})),
        recovery=bool(data.get("recovery", False)),
    )


def apply(world: World, record: dict[str, Any], offset: int | None = None) -> RunState | None:
    """Fold one audit record into the world; returns the run it touched, if any."""
    world.seq = record["seq"]
    world.last_hash = record["hash"]
    event: str = record["event"]
    data: dict[str, Any] = record.get("data") or {}
    run_id = record.get("run_id")
    ts = record["ts"]
    if event == "run.started":
        run = RunState(
            id=run_id or "",
            runbook=record.get("runbook") or "",
            digest=data.get("digest", ""),
            inputs=data.get("inputs", {}),
            requester=data.get("requester"),
            trigger=data.get("trigger", {}),
            alert=data.get("alert"),
            started_at=ts,
            step_ids=list(data.get("steps", [])),
            seq=record["seq"],
            title=data.get("title", ""),
            sandbox=bool(data.get("sandbox", False)),
            concurrency_key=data.get("concurrency_key"),
            audit_offset=offset,
        )
        run.steps = {sid: StepState() for sid in run.step_ids}
        world.runs[run.id] = run
        dedup = data.get("dedup")
        if dedup:
            slot = dedup_slot(run.runbook, dedup["key"], run.sandbox)
            world.dedup[slot] = DedupEntry(run.id, dedup["until"])
        key = data.get("idempotency_key")
        if key:
            world.idempotency[idempotency_slot(key, run.sandbox)] = run.id
        schedule = data.get("trigger", {}).get("schedule_key")
        if schedule:
            fired = data["trigger"].get("scheduled_for", ts)
            if fired > world.schedules.get(schedule, ""):
                world.schedules[schedule] = fired
        run.version = 1
        return run
    if event in ("schedule.caught_up", "schedule.registered"):
        key = data.get("schedule_key")
        if key and data.get("scheduled_for", "") > world.schedules.get(key, ""):
            world.schedules[key] = data["scheduled_for"]
        return None
    if run_id is None or run_id not in world.runs:
        return None
    run = world.runs[run_id]
    run.version += 1
    step_id = record.get("step")
    step = run.steps.get(step_id) if step_id else None
    if event.startswith("step.") and step is not None:
        _apply_step(run, step, event, data, ts)
    elif event.startswith("approval.") and step is not None:
        _apply_approval(run, step, event, data, record.get("actor") or "", ts)
    elif event.startswith("compensation.") and step is not None:
        phase = event.split(".", 1)[1]
        item = data.get("item")
        if phase == "paused":
            # stopped between two attempts, nothing in flight: not "started" any
            # more, so the next start runs it again instead of calling it interrupted
            if item is None:
                step.compensation = None
            else:
                step.compensation = "items"
                step.compensating_item = None
        elif item is None:
            step.compensation = phase
        elif phase == "started":  # one item of a for_each step: the step is not done yet
            step.compensation = "started"
            step.compensating_item = int(item)
        else:
            step.compensated_items.add(int(item))
            step.compensation = "items"
            step.compensating_item = None
    elif event == "run.cancelled":
        run.cancelled_by = record.get("actor") or "system"
    elif event == "run.finished":
        run.status = RunStatus(data.get("status", "failed"))
        run.ended_at = ts
        run.error = data.get("error")
        run.running_count = run.waiting_count = 0
        world.finished.append(run.id)
    elif event == "chat.posted":
        purpose = data.get("purpose")
        ref = {"channel": data.get("channel"), "ts": data.get("ts")}
        if purpose == "thread":
            run.thread = ref
        elif purpose == "status":
            run.status_message = ref
        elif purpose == "gate" and step is not None and step.gate is not None:
            step.gate.message = ref
    if not run.ended:
        run.status = derive_status(run)
    return run


def _apply_step(run: RunState, step: StepState, event: str, data: dict[str, Any], ts: str) -> None:
    if event == "step.started":
        run.started_any = True
        _set_running(run, step, True)
        step.between_attempts = False
        step.attempts = max(step.attempts, int(data.get("attempt", step.attempts + 1)))
        if step.started_at is None:
            step.started_at = ts
        return
    if event == "step.retrying":
        # Between two attempts no call is in flight — unless this is one item of a
        # for_each step, whose other items may well be mid-call.
        if data.get("index") is None:
            step.between_attempts = True
        step.error = data.get("error")
        return
    if event == "step.item_succeeded":
        step.items[int(data["index"])] = data.get("output")
        return
    if event == "step.paused":
        # the engine stopped it between two calls (a shutdown): nothing was in
        # flight, so the next start carries it on without a recovery gate
        step.between_attempts = True
        if "attempts" in data:  # stopped before an announced attempt was made
            step.attempts = int(data["attempts"])
        return
    if event == "step.resumed":
        # a recovery gate said: run it again. The closed gate stays, so its
        # message can still be updated and late clicks are told it ended.
        _close_gate(run, step)
        _set_running(run, step, False)
        step.outcome = None
        return
    outcome = STEP_END_EVENTS.get(event)
    if outcome is None:
        return
    run.started_any = True
    step.outcome = outcome
    _set_running(run, step, False)
    _close_gate(run, step)
    step.between_attempts = False
    step.ended_at = ts
    step.reason = data.get("reason")
    step.passed_over = bool(data.get("passed_over"))
    if "attempts" in data:
        step.attempts = int(data["attempts"])
    if outcome in (Outcome.SUCCEEDED, Outcome.APPROVED, Outcome.REJECTED, Outcome.EXPIRED):
        step.output = data.get("output")
    if outcome is Outcome.SUCCEEDED:
        step.error = None
        run.completions += 1
        step.completed = run.completions
    if outcome is Outcome.FAILED:
        step.error = data.get("error")
        if not data.get("continue_on_error", False):
            run.failure = True
    if outcome is Outcome.CANCELLED and data.get("error"):
        step.error = data.get("error")
    if outcome in (Outcome.REJECTED, Outcome.EXPIRED):
        run.rejected = True


def _apply_approval(
    run: RunState, step: StepState, event: str, data: dict[str, Any], actor: str, ts: str
) -> None:
    if event == "approval.requested":
        run.started_any = True
        _close_gate(run, step)
        step.gate = _gate_from(data, ts)
        run.waiting_count += 1
        _set_running(run, step, False)
        if step.started_at is None:
            step.started_at = ts
        return
    gate = step.gate
    if gate is None:
        return
    if event == "approval.decided":
        gate.decisions.append(
            Decision(
                by=actor,
                decision=data.get("decision", "approve"),
                at=ts,
                comment=data.get("comment"),
                fields=dict(data.get("fields") or {}),
            )
        )
    elif event == "approval.escalated":
        gate.escalated = True
