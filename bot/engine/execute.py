"""Executing steps: connector calls (with attempts, loops and polling), notifications, dry runs.

A step task runs its call to the end and hands its outcome event to
:meth:`Engine.step_ended`, which records it and advances the run in one
transaction. Retries, items and the first-attempt records are transactions
of their own.

Once the engine is stopping, a step starts no further attempt, poll or item:
the calls in flight end and are recorded, then the step is recorded
``step.paused`` (nothing in flight) and the next start carries it on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from bot.engine.clock import parse_iso
from bot.engine.context import build_context
from bot.engine.plan import RunbookPlan
from bot.engine.state import RunState
from bot.engine.steps import (
    MAX_OUTPUT_BYTES,
    CallPlan,
    CallStopped,
    StepFailure,
    for_each_items,
    render_args,
)
from bot.errors import AuditError, ChatError, RunbookBotError, StoreError
from bot.logs import run_id_var, step_id_var
from bot.redact import REDACTOR
from bot.runbook.model import CallStep, NotifyStep, RetryPolicy
from bot.runbook.templates import TemplateError, escape_markup, render_string

if TYPE_CHECKING:
    from bot.engine.engine import Engine
    from bot.engine.followup import FollowUp

log = logging.getLogger("runbook.engine")

NO_RETRY = RetryPolicy(attempts=1)
MAX_RECORD_BYTES = MAX_OUTPUT_BYTES + 4096  # an output plus its record's envelope


# -- executing steps ---------------------------------------------------------------------


async def run_step(engine: Engine, run: RunState, sid: str, *, recorded: bool) -> None:
    run_id_var.set(run.id)  # this task's log lines carry the run and step ids
    step_id_var.set(sid)
    live = engine.live_of(run.id)
    plan = engine.plan_of(run)
    step = plan.steps[sid].step
    follow: FollowUp | None = None
    try:
        if isinstance(step, CallStep):
            event = await run_call(engine, run, plan, sid, step, recorded=recorded)
        elif isinstance(step, NotifyStep):
            event = await run_notify(engine, run, plan, sid, step)
        else:  # pragma: no cover - gates have no task
            return
        if live.tasks.get(sid) is asyncio.current_task():
            del live.tasks[sid]
        follow = await engine.step_ended(run, sid, event)
    except asyncio.CancelledError:
        if not engine.closing and run.cancelled_by is not None and not run.steps[sid].ended:
            with contextlib.suppress(StoreError):
                await engine.record(
                    run,
                    "step.cancelled",
                    step=sid,
                    data={"reason": "run cancelled", "error": "cancelled"},
                )
        raise
    except CallStopped as stopped:
        # between two calls (or before the first), with nothing in flight: say so,
        # so that the next start carries it on without asking whether a call was cut off
        data: dict[str, Any] = {"reason": "the engine is stopping"}
        if stopped.attempts is not None:
            data["attempts"] = stopped.attempts  # the announced attempt was never made
        with contextlib.suppress(StoreError):
            await engine.record(run, "step.paused", step=sid, data=data)
    except StoreError as exc:
        log.error("run %s step %s: %s", run.id, sid, exc)
    except Exception:
        log.exception("run %s step %s: internal error", run.id, sid)
        with contextlib.suppress(StoreError):
            follow = await engine.step_ended(
                run, sid, engine.failed_event(run, plan, sid, "internal error (see logs)", 0)
            )
    finally:
        if live.tasks.get(sid) is asyncio.current_task():
            del live.tasks[sid]
    step_id_var.set(None)  # what follows concerns the run, not this step
    if follow is not None:
        try:
            await engine.follow(run, follow)
        except (CallStopped, StoreError) as exc:  # pragma: no cover - defensive
            # compensations record their own pause; a task must never die unhandled
            log.error("run %s: following up stopped: %s", run.id, exc or type(exc).__name__)
            engine.update_settled(run)
    else:
        engine.update_settled(run)


async def run_call(
    engine: Engine, run: RunState, plan: RunbookPlan, sid: str, step: CallStep, *, recorded: bool
) -> dict[str, Any]:
    """Run a call step to its end; returns its outcome event (not yet recorded)."""
    if run.cancelled_by is not None:  # cancelled before its call could start
        return engine.event(run, "step.cancelled", step=sid, data={"reason": "run cancelled"})
    state = run.steps[sid]
    try:
        spec = engine.actions.lookup(step.uses)
    except LookupError as exc:
        return engine.failed_event(run, plan, sid, str(exc), state.attempts)
    first = state.attempts if recorded else state.attempts + 1
    context = build_context(run)
    policy = step.retry or NO_RETRY

    async def on_retry(attempt: int, error: str, delay: float) -> None:
        await engine.record(
            run,
            "step.retrying",
            step=sid,
            data={"attempt": attempt, "error": error, "delay": round(delay, 3)},
        )

    async def on_attempt(attempt: int) -> None:
        if recorded and attempt == first:
            return
        await engine.record(
            run,
            "step.started",
            step=sid,
            data={"attempt": attempt, "uses": step.uses, "idempotency_key": f"{run.id}:{sid}"},
        )

    try:
        if step.for_each is not None:
            items = for_each_items(step.for_each, context)
            output, attempts = await run_items(engine, run, sid, step, spec, items, policy)
        else:
            args = render_args(step.with_, context)
            if engine.dry_run and spec.mutating:
                output, attempts = await dry_call(engine, run, sid, spec, args), first
            else:
                call = call_plan(engine, run, sid, step, spec, args, f"{run.id}:{sid}", policy)
                if not recorded and state.started_at is not None and step.poll is not None:
                    # resumed after a restart: the poll window began with the step,
                    # in the process that died; a restart does not grant a new one
                    call.poll_started_at = parse_iso(state.started_at)
                output, attempts = await engine.calls.attempts(
                    call,
                    first_attempt=first,
                    context=context,
                    on_retry=on_retry,
                    on_attempt=on_attempt,
                )
    except StepFailure as failure:
        return engine.failed_event(
            run, plan, sid, failure.message, failure.attempts or state.attempts
        )
    return engine.event(
        run, "step.succeeded", step=sid, data={"output": output, "attempts": attempts}
    )


def call_plan(
    engine: Engine,
    run: RunState,
    sid: str,
    step: CallStep,
    spec: Any,
    args: dict[str, Any],
    key: str,
    policy: RetryPolicy,
) -> CallPlan:
    return CallPlan(
        ref=step.uses,
        spec=spec,
        args=args,
        timeout=step.timeout,
        retry=policy,
        until=step.until,
        poll=step.poll,
        run_id=run.id,
        step_id=sid,
        idempotency_key=key,
    )


async def run_items(
    engine: Engine,
    run: RunState,
    sid: str,
    step: CallStep,
    spec: Any,
    items: list[Any],
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
            if engine.stopping:
                return  # no new item once stopping began
            context = build_context(run, item=item, index=index)
            args = render_args(step.with_, context)
            if engine.dry_run and spec.mutating:
                output, attempts = await dry_call(engine, run, sid, spec, args), 1
            else:
                call = call_plan(
                    engine, run, sid, step, spec, args, f"{run.id}:{sid}:{index}", policy
                )

                async def retry(attempt: int, error: str, delay: float) -> None:
                    await engine.record(
                        run,
                        "step.retrying",
                        step=sid,
                        data={
                            "attempt": attempt,
                            "index": index,
                            "error": f"item {index}: {error}",
                            "delay": round(delay, 3),
                        },
                    )

                try:
                    output, attempts = await engine.calls.attempts(
                        call, first_attempt=1, context=context, on_retry=retry
                    )
                except CallStopped:
                    return  # not its other items' business: they end as they will
            most = max(most, attempts)
            txn = engine.begin()
            try:
                txn.add(
                    engine.event(
                        run,
                        "step.item_succeeded",
                        step=sid,
                        data={"index": index, "output": output},
                    ),
                    max_bytes=None if engine.dry_run else MAX_RECORD_BYTES,
                )
            except AuditError as exc:
                raise StepFailure(f"its output cannot be recorded: {exc}", attempts) from None
            await engine.commit(txn)

    tasks = [asyncio.create_task(one(i, item)) for i, item in enumerate(items)]
    try:
        await _gather_fail_fast(tasks)
    except StepFailure as failure:
        raise StepFailure(f"item {_failed_index(tasks)}: {failure.message}", most) from None
    if engine.stopping and any(i not in state.items for i in range(len(items))):
        raise CallStopped  # items were left for the next start
    return [state.items.get(i) for i in range(len(items))], most


async def dry_call(engine: Engine, run: RunState, sid: str, spec: Any, args: dict[str, Any]) -> Any:
    from bot.engine.dryrun import Placeholder

    try:
        description = engine.actions.describe(spec, args)
    except RunbookBotError as exc:
        raise StepFailure(str(exc)) from None
    await engine.record(
        run,
        "step.dry_run",
        step=sid,
        data={"uses": spec.ref, "args": args, "request": description},
    )
    return Placeholder(f"steps.{sid}.output")


async def run_notify(
    engine: Engine, run: RunState, plan: RunbookPlan, sid: str, step: NotifyStep
) -> dict[str, Any]:
    context = build_context(run)
    refs: list[Any] = []
    try:
        items = for_each_items(step.for_each, context) if step.for_each else [None]
        channel = step.notify.channel or engine.view(run).channel
        for index, item in enumerate(items):
            extra = {"item": item, "index": index} if step.for_each else {}
            try:
                item_context = build_context(run, **extra)
                text = str(render_string(step.notify.text, item_context))
                # for chat markup: the author's formatting kept, links and mentions in data not
                markup = str(render_string(step.notify.text, item_context, escape=escape_markup))
            except TemplateError as exc:
                raise StepFailure(f"text: {exc.message}") from None
            text, markup = REDACTOR.text(text), REDACTOR.text(markup)
            if engine.dry_run:
                await engine.record(
                    run,
                    "step.dry_run",
                    step=sid,
                    data={"notify": {"channel": channel, "text": text}},
                )
                refs.append({"channel": channel, "ts": None})
                continue
            try:
                ref = await engine.chat.notify(
                    run, sid, text, channel, step.notify.thread, engine.view(run), markup=markup
                )
            except ChatError as exc:
                raise StepFailure(f"chat: {exc}") from None
            refs.append(ref or {"channel": channel, "ts": None})
    except StepFailure as failure:
        return engine.failed_event(run, plan, sid, failure.message, 1)
    output: Any = refs if step.for_each else refs[0]
    return engine.event(run, "step.succeeded", step=sid, data={"output": output, "attempts": 1})


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
