"""``runbook run --dry-run``: render every step, call only read-only actions, record nothing."""

from __future__ import annotations

import json
import sys

from bot.chat.console import ConsoleChat
from bot.cli import EXIT_FAILED, EXIT_OK
from bot.cli.context import CliContext
from bot.cli.session import EngineSession
from bot.engine.catalog import RunbookCatalog
from bot.engine.dryrun import dry_run_engine
from bot.engine.engine import StaticGroups
from bot.engine.state import Outcome
from bot.redact import REDACTOR
from bot.store.memory import MemoryStore
from connectors.registry import ConnectorPool


async def dry_run(
    ctx: CliContext, session: EngineSession, name: str, inputs: dict[str, str], requester: str
) -> int:
    store = MemoryStore()
    loaded = session.runbooks()
    pool = ConnectorPool(
        ctx.registry, ctx.env, register_secret=REDACTOR.add, sandbox_env=ctx.sandbox_env
    )
    engine = dry_run_engine(
        store,
        RunbookCatalog(loaded.runbooks, ctx.registry, store.load_definition),
        pool,
        chat=ConsoleChat(session.timeline),
        groups=StaticGroups(ctx.settings.groups),
    )
    engine.listeners.append(session.timeline)
    session.timeline.write(
        f"dry run of {name}: mutating calls are shown, not made; "
        "gates count as approved; nothing is recorded"
    )
    try:
        result = await engine.start_run(
            name, inputs, requester=requester, trigger={"kind": "cli"}, from_text=True
        )
        run = await engine.wait_settled(result.run.id)
    finally:
        await engine.close()
        await pool.aclose()
    if ctx.args.json:
        print(json.dumps(REDACTOR.value(run.document()), indent=2, default=str))
    failed = [sid for sid in run.step_ids if run.steps[sid].outcome is Outcome.FAILED]
    if failed:
        print(f"runbook: dry run: {', '.join(failed)} did not render or failed", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK
