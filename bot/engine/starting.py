"""Starting runs: inputs, dedup windows, idempotency keys, the ``run.started`` record."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from bot.engine.clock import iso
from bot.engine.defaults import new_run_id
from bot.engine.state import RunState
from bot.errors import ConflictError
from bot.runbook.model import Runbook
from bot.runbook.templates import TemplateError, render_string

if TYPE_CHECKING:
    from bot.engine.engine import Engine


async def dedup_join(engine: Engine, slot: str) -> RunState | None:
    inflight = engine.dedup_inflight.get(slot)
    if inflight is not None:
        try:
            return await asyncio.shield(inflight)
        except Exception:
            return None
    entry = engine.store.world.dedup.get(slot)
    if entry is not None and entry.until > iso(engine.clock.now()):
        return engine.store.get_run(entry.run_id)
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
