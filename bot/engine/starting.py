"""Starting runs: inputs, dedup windows, idempotency keys, the ``run.started`` record."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from bot.engine import admission
from bot.engine.clock import iso
from bot.engine.defaults import new_run_id
from bot.engine.state import RunState, dedup_slot, idempotency_slot
from bot.errors import ConflictError, PermissionDenied
from bot.runbook.inputs import coerce_inputs
from bot.runbook.model import Runbook
from bot.runbook.templates import TemplateError, render_string

if TYPE_CHECKING:
    from bot.engine.engine import Engine


@dataclass(slots=True)
class StartResult:
    """What :meth:`Engine.start_run` did: started a run, or joined one within a dedup window."""

    run: RunState
    deduplicated: bool = False


async def dedup_join(engine: Engine, slot: str) -> RunState | None:
    """The run whose open dedup window ``slot`` a new start joins, or None.

    A run foreign to this engine (a sandbox run seen by a real service, or the
    other way round) never absorbs a new one: this engine would never act on it.
    """
    inflight = engine.dedup_inflight.get(slot)
    if inflight is not None:
        try:
            return await asyncio.shield(inflight)
        except Exception:
            return None
    entry = engine.store.world.dedup.get(slot)
    if entry is not None and entry.until > iso(engine.clock.now()):
        run = engine.store.get_run(entry.run_id)
        if run is None or engine.foreign(run) is not None:
            return None
        await engine.sync()  # the run it names is on disk before anyone hears of it
        return run
    return None


async def record_start(
    engine: Engine,
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
    now = engine.clock.now()
    concurrency_key = None
    if runbook.concurrency_key is not None:
        context = {
            "inputs": values,
            "alert": alert,
            "run": {
                "id": run_id,
                "runbook": runbook.name,
                "requester": requester,
                "trigger": trigger.get("kind"),
                "started_at": iso(now),
            },
        }
        try:
            concurrency_key = str(render_string(runbook.concurrency_key, context))
        except TemplateError as exc:
            raise ConflictError(f"concurrency_key: {exc.message}") from None
    if not engine.dry_run:
        await engine.store.save_definition(loaded.digest, loaded.form, loaded.source)
    data: dict[str, Any] = {
        "inputs": values,
        "requester": requester,
        "trigger": trigger,
        "alert": alert,
        "digest": loaded.digest,
        "title": runbook.display_title,
        "steps": runbook.step_ids,
        "sandbox": engine.sandbox,
        "concurrency_key": concurrency_key,
    }
    if dedup is not None:
        data["dedup"] = {"key": dedup[0], "until": iso(now + timedelta(seconds=dedup[1]))}
    if idempotency_key is not None:
        data["idempotency_key"] = idempotency_key
    await engine.record(
        None,
        "run.started",
        actor=requester or trigger_actor(trigger),
        data=data,
        run_id=run_id,
        runbook=runbook.name,
    )
    return engine.store.world.runs[run_id]


def trigger_actor(trigger: dict[str, Any]) -> str:
    """The audit actor of a run nobody started by hand."""
    kind = trigger.get("kind")
    if kind == "alert":
        return f"alert:{trigger.get('source', 'unknown')}"
    if kind == "schedule":
        return "schedule"
    return "system"


async def start_run(
    engine: Engine,
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

    The one way in for every channel (``Engine.start_run``). With ``dedup``
    (key, window seconds) a start within an open window joins the run that
    opened it; an ``idempotency_key`` seen before returns that run. Sandbox
    and real runs keep separate windows and keys: a run foreign to this engine
    is never joined (see :meth:`Engine.foreign`).

    Raises:
        NotFoundError: unknown runbook.
        InputError: inputs that do not fit.
        PermissionDenied: the requester may not start it (``run_by``).
    """
    if engine.fatal is not None:
        raise engine.fatal
    if not engine.accepting:
        raise ConflictError("the service is shutting down; try again shortly")
    loaded = engine.catalog.get(name)
    runbook = loaded.runbook
    if check_permission and requester is not None and runbook.run_by is not None:
        if not await engine.matches(requester, runbook.run_by):
            raise PermissionDenied(
                f"{requester} may not start runbook {name!r} (run_by limits who may)"
            )
    values = coerce_inputs(runbook.inputs, dict(inputs or {}), from_text=from_text)
    known = (
        engine.store.world.idempotency.get(idempotency_slot(idempotency_key, engine.sandbox))
        if idempotency_key is not None
        else None
    )
    if known is not None:
        existing = engine.store.get_run(known)
        # a run foreign to this engine (sandbox or not) never stands in for a new one
        if existing is not None and engine.foreign(existing) is None:
            await engine.sync()  # the run it names is on disk before anyone hears of it
            return StartResult(existing, deduplicated=True)
    slot = dedup_slot(name, dedup[0], engine.sandbox) if dedup else None
    if slot is not None:
        joined = await dedup_join(engine, slot)
        if joined is not None:
            return StartResult(joined, deduplicated=True)
        future: asyncio.Future[RunState] = asyncio.get_running_loop().create_future()
        engine.dedup_inflight[slot] = future
    try:
        run = await record_start(
            engine,
            loaded,
            values,
            requester,
            dict(trigger or {"kind": "manual"}),
            alert,
            dedup,
            idempotency_key,
        )
    except BaseException as exc:
        if slot is not None:
            pending = engine.dedup_inflight.pop(slot)
            pending.set_exception(exc if isinstance(exc, Exception) else RuntimeError("stop"))
            pending.exception()  # retrieved: nobody else may be waiting
        raise
    if slot is not None:
        engine.dedup_inflight.pop(slot).set_result(run)
    engine.queue.append(run.id)
    if admit:
        admission.admit(engine)
    return StartResult(run)
