"""Commands about runs: run, approve, resume, cancel, runs, status, report, audit."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from pathlib import Path
from typing import Any, TextIO

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
from bot.engine.state import RunState, RunStatus
from bot.errors import (
    ConfigError,
    ConflictError,
    DataDirLocked,
    EngineStopping,
    InputError,
    NotFoundError,
    PermissionDenied,
    RunbookLoadError,
    StoreError,
)
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
    if command != "demo":  # the demo keeps its data in a directory of its own
        check_data_dir(ctx)
    if getattr(ctx.args, "sandbox", False) and command in ("run", "approve", "resume", "cancel"):
        from bot.sandbox import Sandbox, sandbox_notice

        with Sandbox() as sandbox:
            ctx.sandbox = sandbox
            print(
                "runbook: sandbox: runs started here are sandbox runs; "
                + sandbox_notice(ctx.registry.names(), ctx.configured, sandbox.url),
                file=sys.stderr,
            )
            return _dispatch_runs(ctx, command)
    return _dispatch_runs(ctx, command)


def _dispatch_runs(ctx: CliContext, command: str) -> int:
    from bot.cli.stopping import interruptible

    foreground_commands = {
        "run": cmd_run,
        "approve": cmd_approve,
        "resume": cmd_resume,
        "cancel": cmd_cancel,
    }
    if command in foreground_commands:
        return asyncio.run(interruptible(ctx, foreground_commands[command]))
    if command in ("runs", "status", "report", "audit"):
        from bot.cli import inspect_commands

        return int(getattr(inspect_commands, f"cmd_{command}")(ctx))
    from bot.cli import service_commands

    return int(getattr(service_commands, f"cmd_{command}")(ctx))


def check_data_dir(ctx: CliContext) -> None:
    """A data path that is (or lies under) a file is a usage error, said in one line.

    Raises:
        ConfigError: naming the path.
    """
    path = Path(ctx.settings.data_dir)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "is" if candidate == path else f"is under {candidate}, which is"
                raise ConfigError(f"data directory {path} {where} not a directory (see --data)")
            return


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
            f"runbook: warning: {files} other runbook file{'s have' if files != 1 else ' has'} "
            "errors (see `runbook validate`)",
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
    terminal (or `runbook approve`/`cancel`) can decide; the answer re-takes it.
    A decision or cancel made elsewhere, or the gate's deadline, ends the
    question without anyone typing (see :mod:`bot.cli.waiting`).
    """
    identity = f"cli:{user}"
    while True:
        engine = session.engine
        assert engine is not None
        try:
            run = await engine.wait_settled(run_id)
        except (EngineStopping, StoreError):
            # interrupted, or the data directory failed: the calls in flight end
            # (and are recorded when the store can), then the directory is released
            await session.close()
            raise
        if run.ended:
            await session.close()
            return _finish(ctx, run)
        gate_id, _gate = _askable_gate(run, identity, _member_of(ctx, identity))
        if gate_id is None or not sys.stdin.isatty():
            await session.close()
            return _waiting_exit(ctx, run)
        await session.close()  # release the data directory while we wait for the person
        code = await _while_released(ctx, session, run, identity)
        if code is not None:
            return code


async def _while_released(
    ctx: CliContext, session: EngineSession, run: RunState, identity: str
) -> int | None:
    """Ask the person, or follow what others do, until this process owns the data again.

    Returns None once the session is open again (the run resumed, the answer
    given), or the exit code when the run's fate was settled elsewhere.
    """
    from bot.chat.console import PromptInterrupted
    from bot.cli.waiting import POLL_SECONDS, RunWatcher, is_due

    watcher = RunWatcher(ctx, run, session.timeline)
    member_of = _member_of(ctx, identity)
    told_owner = False
    while True:
        run = watcher.run
        if run.ended:
            return _finish(ctx, run)
        answer: tuple[str, str | None] | None = None
        asked = None
        gate_id, gate = _askable_gate(run, identity, member_of)
        if gate_id is not None and not is_due(run):
            pause = getattr(session.timeline, "pause", None)
            if pause is not None:
                pause()
            try:
                answer = await _ask(
                    run,
                    gate_id,
                    gate,
                    identity,
                    watch=watcher.prompt_watch(gate_id),
                    stream=session.timeline.stream,
                )
                asked = gate_id
            except PromptInterrupted as stop:
                if stop.reason == "due":
                    session.timeline.write("")  # the deadline's records follow the question
                run = watcher.run
                if run.ended:
                    return _finish(ctx, run)
            except _NoAnswer:
                return _waiting_exit(ctx, run)
        elif gate_id is None and run.status is RunStatus.WAITING and not is_due(run):
            return _waiting_exit(ctx, run)  # nobody here can answer what it waits for now
        patience = 10.0 if answer is not None else 0.0
        try:
            await _retake(session, patience)
        except DataDirLocked as exc:
            if answer is not None:
                watcher.refresh()
                if asked is not None and watcher.run.steps[asked].waiting:
                    raise  # the answer cannot be recorded: say who owns the directory
                print(
                    f"runbook: step {asked!r} was settled elsewhere; your answer is not recorded",
                    file=sys.stderr,
                )
                answer = None
            if not told_owner:
                print(f"runbook: {exc}; following run {run.id}", file=sys.stderr)
                told_owner = True
            await asyncio.sleep(POLL_SECONDS)
            watcher.refresh()
            continue
        watcher.drain()
        engine = session.engine
        assert engine is not None
        session.timeline.follow = {run.id}
        await engine.resume_run(run.id)
        if answer is not None and asked is not None:
            decision, comment = answer
            result = await engine.decide(run.id, asked, identity, decision, comment=comment)
            if result.verdict is not Verdict.ACCEPTED:
                print(f"runbook: {result.reason}", file=sys.stderr)
        return None


async def _retake(session: EngineSession, patience: float) -> None:
    """Open the session again, waiting up to ``patience`` seconds for another owner to go.

    Raises:
        DataDirLocked: still owned by another process.
    """
    from bot.cli.waiting import POLL_SECONDS

    loop = asyncio.get_running_loop()
    until = loop.time() + patience
    while True:
        try:
            await session.open()
            return
        except DataDirLocked:
            await session.close()
            if loop.time() >= until:
                raise
            await asyncio.sleep(POLL_SECONDS)


def _waiting_exit(ctx: CliContext, run: RunState) -> int:
    """Exit 5: say how to decide, print the run id (or the document) last on stdout."""
    print_waiting(ctx, run)
    return EXIT_WAITING


def print_waiting(ctx: CliContext, run: RunState, *, intro: str | None = None) -> None:
    waiting = ", ".join(run.waiting_gates)
    hint = run.waiting_gates[0] if run.waiting_gates else "STEP"
    recovery = any(
        (gate := run.steps[sid].gate) is not None and gate.recovery for sid in run.waiting_gates
    )
    choice = "[--reject|--skip]" if recovery else "[--reject]"
    sandbox = " --sandbox" if run.sandbox else ""
    print(
        (intro or f"run {run.id} is waiting for a decision at {waiting}")
        + f"; decide with:\n  runbook approve {run.id} {hint} --as USER{sandbox} {choice}",
        file=sys.stderr,
    )
    if ctx.args.json:
        print_document(run)
    else:
        print(run.id)


def _member_of(ctx: CliContext, identity: str) -> set[str]:
    name = identity.split(":", 1)[1]
    return {group for group, members in ctx.settings.groups.items() if name in members}


def _askable_gate(run: RunState, identity: str, member_of: set[str]) -> tuple[str | None, Any]:
    for sid in run.waiting_gates:
        gate = run.steps[sid].gate
        if (
            gate is not None
            and is_eligible(gate, identity, member_of)
            and not any(d.by == identity for d in gate.decisions)
        ):
            return sid, gate
    return None, None


class _NoAnswer(Exception):
    """The terminal's input ended before an answer."""


async def _ask(
    run: RunState,
    sid: str,
    gate: Any,
    identity: str,
    *,
    watch: Any = None,
    stream: TextIO | None = None,
) -> tuple[str, str | None] | None:
    """The person's decision; None for an answer that decides nothing.

    Raises:
        PromptInterrupted: decided or cancelled elsewhere, or the deadline came.
        _NoAnswer: end of input.
    """
    from bot.chat.console import ask_line

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
    line = await ask_line(prompt, watch=watch, stream=stream)
    if line is None:
        raise _NoAnswer
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
        if not run.ended:
            _leave_foreign(engine, run)
        session.timeline.follow = {args.run_id}
        await engine.resume_run(args.run_id)
        try:
            result = await engine.decide(
                args.run_id, args.step, identity, decision, comment=args.comment, fields=fields
            )
        except InputError as exc:
            raise _as_field_error(exc) from None
    except BaseException:
        await session.close()
        raise
    if result.verdict is not Verdict.ACCEPTED:
        await session.close()
        raise CliExit(EXIT_USAGE, result.reason)
    if result.gate_open:
        run = result.run
        await session.close()
        print_waiting(
            ctx,
            run,
            intro=f"{decision} recorded: {result.approvals} of {result.required} approvals; "
            f"run {args.run_id} still waits at {args.step}",
        )
        return EXIT_WAITING
    return await foreground(ctx, session, args.run_id, user)


def _leave_foreign(engine: Any, run: RunState) -> None:
    """A sandbox run outside the sandbox (or the other way round) is a usage error."""
    reason = engine.foreign(run)
    if reason is not None:
        raise CliExit(EXIT_USAGE, reason)


def _as_field_error(exc: InputError) -> InputError:
    """A ``--field`` value that does not fit is a field of the gate, not a run input."""
    name = exc.input_name
    text = str(exc)
    prefix = f"input {name!r}: "
    if name and text.startswith(prefix):
        return InputError(f"field {name!r}: {text[len(prefix) :]}", input_name=name)
    return exc


# -- resume ---------------------------------------------------------------------------------


async def cmd_resume(ctx: CliContext) -> int:
    args = ctx.args
    session = EngineSession(ctx, command="runbook resume", timeline=_timeline(ctx))
    engine = await session.open()
    try:
        world = engine.store.world
        if args.run_id:
            run = engine.store.get_run(args.run_id)
            if run is None:
                raise NotFoundError(f"unknown run {args.run_id}")
            if not run.ended:
                _leave_foreign(engine, run)
            targets = [args.run_id]
        else:
            targets = []
            for run in sorted(world.active_runs(), key=lambda r: r.seq):
                reason = engine.foreign(run)
                if reason is None:
                    targets.append(run.id)
                else:
                    print(f"runbook: left alone: {reason}", file=sys.stderr)
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
