"""Commands about runs: run, approve, resume, cancel, runs, status, report, audit."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any

from bot.chat.console import Timeline
from bot.cli import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    EXIT_WAITING,
    CliExit,
)
from bot.cli.context import CliContext, make_context
from bot.cli.session import EngineSession, open_readonly
from bot.engine import admission
from bot.engine.approvals import Verdict, is_eligible
from bot.engine.engine import Engine
from bot.engine.state import RunState, RunStatus
from bot.errors import ConflictError, NotFoundError, PermissionDenied, RunbookLoadError
from bot.redact import REDACTOR
from bot.runbook.inputs import parse_assignments

STATUS_EXIT = {
    RunStatus.SUCCEEDED: EXIT_OK,
    RunStatus.FAILED: EXIT_FAILED,
    RunStatus.REJECTED: EXIT_REJECTED,
    RunStatus.CANCELLED: EXIT_CANCELLED,
}


def dispatch(args: argparse.Namespace) -> int:
    ctx = make_context(args)
    command = args.command
    if command == "run":
        return asyncio.run(cmd_run(ctx))
    if command == "approve":
        return asyncio.run(cmd_approve(ctx))
    if command == "resume":
        return asyncio.run(cmd_resume(ctx))
    if command == "cancel":
        return asyncio.run(cmd_cancel(ctx))
    if command in ("runs", "status", "report", "audit"):
        from bot.cli import inspect_commands

        return int(getattr(inspect_commands, f"cmd_{command}")(ctx))
    from bot.cli import service_commands

    return int(getattr(service_commands, f"cmd_{command}")(ctx))


def cli_user(args: argparse.Namespace) -> str:
    return getattr(args, "as_user", None) or getpass.getuser()


def _timeline(ctx: CliContext) -> Timeline:
    stream = sys.stderr if ctx.args.json else sys.stdout
    if stream.isatty() and not ctx.args.json:
        from bot.chat.live import LiveTimeline

        return LiveTimeline(stream)
    return Timeline(stream)


def print_document(run: RunState) -> None:
    print(json.dumps(REDACTOR.value(run.document()), indent=2, default=str))


def exit_code(run: RunState) -> int:
    if run.ended:
        return STATUS_EXIT.get(run.status, EXIT_FAILED)
    return EXIT_WAITING


# -- run ------------------------------------------------------------------------------------


async def cmd_run(ctx: CliContext) -> int:
    args = ctx.args
    user = cli_user(args)
    inputs = parse_assignments(args.input)
    session = EngineSession(ctx, command=f"runbook run {args.name}", timeline=_timeline(ctx))
    loaded = session.runbooks()
    if args.name not in loaded.runbooks:
        mine = [d for d in loaded.errors if _file_names(d.path, args.name)]
        if mine:
            raise RunbookLoadError(mine)
        names = ", ".join(sorted(loaded.runbooks)) or "none"
        raise NotFoundError(f"unknown runbook {args.name!r} (runbooks: {names})")
    if loaded.errors:
        files = len({d.path for d in loaded.errors})
        print(
            f"runbook: warning: {files} other runbook file(s) have errors (see `runbook validate`)",
            file=sys.stderr,
        )
    if args.dry_run:
        from bot.cli.dryrun import dry_run

        return await dry_run(ctx, session, args.name, inputs, f"cli:{user}")
    engine = await session.open()
    try:
        describe = getattr(session.timeline, "describe", None)
        if describe is not None:
            view = engine.catalog.get(args.name).runbook
            describe(
                {s.id: s.title or s.id for s in view.steps},
                {s.id: engine.view_kind(view, s.id) for s in view.steps},
            )
        session.timeline.follow = None
        result = await engine.start_run(
            args.name, inputs, requester=f"cli:{user}", trigger={"kind": "cli"}, from_text=True
        )
        session.timeline.follow = {result.run.id}
        run_id = result.run.id
    except BaseException:
        await session.close()
        raise
    return await foreground(ctx, session, run_id, user)


def _file_names(path: str, name: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(65536)
    except OSError:
        return False
    return any(
        line.strip() in (f"name: {name}", f'name: "{name}"', f"name: '{name}'")
        for line in head.splitlines()
    )


async def foreground(ctx: CliContext, session: EngineSession, run_id: str, user: str) -> int:
    """Drive a run in this terminal until it ends, or waits for someone we cannot ask.

    While a question is open, the data directory is released so another
    terminal (or `runbook approve`) can decide; the answer re-takes it.
    """
    identity = f"cli:{user}"
    while True:
        engine = session.engine
        assert engine is not None
        run = await engine.wait_settled(run_id)
        if run.ended:
            await session.close()
            return _finish(ctx, run)
        gate_id, gate = _askable_gate(run, identity, engine)
        interactive = sys.stdin.isatty()
        if gate_id is None or not interactive:
            waiting = ", ".join(run.waiting_gates)
            await session.close()
            hint = run.waiting_gates[0] if run.waiting_gates else "STEP"
            print(
                f"run {run_id} is waiting for a decision at {waiting}; decide with:\n"
                f"  runbook approve {run_id} {hint} --as USER [--reject]",
                file=sys.stderr,
            )
            if ctx.args.json:
                print_document(run)
            else:
                print(run_id)
            return EXIT_WAITING
        await session.close()  # release the data directory while we wait for the person
        pause = getattr(session.timeline, "pause", None)
        if pause is not None:
            pause()
        answer = await _ask(run, gate_id, gate, identity)
        await session.open()
        engine = session.engine
        assert engine is not None
        session.timeline.follow = {run_id}
        await engine.resume_run(run_id)
        if answer is None:
            continue
        decision, comment = answer
        result = await engine.decide(run_id, gate_id, identity, decision, comment=comment)
        if result.verdict is not Verdict.ACCEPTED:
            print(f"runbook: {result.reason}", file=sys.stderr)


def _askable_gate(run: RunState, identity: str, engine: Engine) -> tuple[str | None, Any]:
    groups = getattr(engine.groups, "groups", {})
    member_of = {name for name, members in groups.items() if identity.split(":", 1)[1] in members}
    for sid in run.waiting_gates:
        gate = run.steps[sid].gate
        if (
            gate is not None
            and is_eligible(gate, identity, member_of)
            and not any(d.by == identity for d in gate.decisions)
        ):
            return sid, gate
    return None, None


async def _ask(run: RunState, sid: str, gate: Any, identity: str) -> tuple[str, str | None] | None:
    only_reject = identity == run.requester and not gate.allow_requester and not gate.recovery
    if gate.recovery:
        prompt = f"\n{gate.prompt}\n[a]pprove (run again) / [s]kip / [r]eject: "
    elif only_reject:
        prompt = (
            f"\n{gate.prompt}\nYou started this run, so you may only reject it "
            "(four-eyes). Reject? [y/N]: "
        )
    else:
        prompt = f"\n{gate.prompt}\nApprove? [y]es / [n]o (reject): "
    line = await asyncio.to_thread(_read_answer, prompt)
    if line is None:
        raise CliExit(EXIT_WAITING, f"no answer; run {run.id} is still waiting at {sid}")
    word = line.strip().lower()
    if only_reject:
        return ("reject", None) if word in ("y", "yes", "r", "reject") else None
    if word in ("y", "yes", "a", "approve"):
        return "approve", None
    if word in ("n", "no", "r", "reject"):
        return "reject", None
    if word in ("s", "skip") and gate.recovery:
        return "skip", None
    return None


def _read_answer(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None


def _finish(ctx: CliContext, run: RunState) -> int:
    if ctx.args.json:
        print_document(run)
    return exit_code(run)


# -- approve --------------------------------------------------------------------------------


async def cmd_approve(ctx: CliContext) -> int:
    args = ctx.args
    user = cli_user(args)
    identity = f"cli:{user}"
    decision = "reject" if args.reject else "skip" if args.skip else "approve"
    fields = parse_assignments(args.field)
    session = EngineSession(ctx, command="runbook approve", timeline=_timeline(ctx))
    engine = await session.open()
    try:
        run = engine.store.get_run(args.run_id)
        if run is None:
            raise NotFoundError(f"unknown run {args.run_id}")
        if args.step not in run.steps:
            raise NotFoundError(f"run {args.run_id} has no step {args.step!r}")
        session.timeline.follow = {args.run_id}
        await engine.resume_run(args.run_id)
        result = await engine.decide(
            args.run_id, args.step, identity, decision, comment=args.comment, fields=fields
        )
    except BaseException:
        await session.close()
        raise
    if result.verdict is not Verdict.ACCEPTED:
        await session.close()
        raise CliExit(EXIT_USAGE, result.reason)
    if result.gate_open:
        run = result.run
        await session.close()
        print(
            f"{decision} recorded: {result.approvals} of {result.required} approvals; "
            f"run {args.run_id} still waits at {args.step}",
            file=sys.stderr,
        )
        if args.json:
            print_document(run)
        return EXIT_WAITING
    return await foreground(ctx, session, args.run_id, user)


# -- resume ---------------------------------------------------------------------------------


async def cmd_resume(ctx: CliContext) -> int:
    args = ctx.args
    session = EngineSession(ctx, command="runbook resume", timeline=_timeline(ctx))
    engine = await session.open()
    try:
        world = engine.store.world
        if args.run_id:
            if engine.store.get_run(args.run_id) is None:
                raise NotFoundError(f"unknown run {args.run_id}")
            targets = [args.run_id]
        else:
            targets = [run.id for run in sorted(world.active_runs(), key=lambda r: r.seq)]
        session.timeline.follow = set(targets)
        for run_id in targets:
            await engine.resume_run(run_id)
        admission.admit(engine)
    except BaseException:
        await session.close()
        raise
    if args.run_id:
        return await foreground(ctx, session, args.run_id, cli_user(args))
    finals = []
    try:
        for run_id in targets:
            finals.append(await engine.wait_settled(run_id))
    finally:
        await session.close()
    if args.json:
        print(json.dumps([REDACTOR.value(run.document()) for run in finals], indent=2))
    elif not targets:
        print("no unfinished runs")
    else:
        for run in finals:
            print(f"{run.id}  {run.runbook}  {run.status}")
    bad = {RunStatus.FAILED, RunStatus.REJECTED, RunStatus.CANCELLED}
    return EXIT_FAILED if any(run.status in bad for run in finals) else EXIT_OK


# -- cancel ---------------------------------------------------------------------------------


async def cmd_cancel(ctx: CliContext) -> int:
    args = ctx.args
    identity = f"cli:{cli_user(args)}"
    session = EngineSession(ctx, command="runbook cancel", timeline=_timeline(ctx))
    engine = await session.open()
    try:
        session.timeline.follow = {args.run_id}
        run = engine.store.get_run(args.run_id)
        if run is None:
            raise NotFoundError(f"unknown run {args.run_id}")
        try:
            run = await engine.cancel(args.run_id, identity)
        except (ConflictError, PermissionDenied) as exc:
            raise CliExit(EXIT_USAGE, str(exc)) from None
        run = await engine.wait_settled(args.run_id)
    finally:
        await session.close()
    if args.json:
        print_document(run)
    return EXIT_OK


def readonly(ctx: CliContext) -> Any:
    return open_readonly(ctx)
