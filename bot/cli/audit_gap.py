"""``runbook audit accept-gap``: carry on after records were cut from the audit log's end.

When the snapshot saw records the audit log no longer holds, every command that
changes state refuses to start (the evidence would be overwritten). This
command is the operator's explicit decision: the snapshot is kept as
``state.json.ahead-<time>`` (never deleted automatically), state is rebuilt
from the log, and an ``audit.gap`` record naming both ends of the gap is
appended, so ``runbook audit verify`` reports the gap for good. State rebuilt
from the log is then reconciled with the run index, the archive and the kept
snapshot: runs they show ended are recorded as ended (never run again), steps
the snapshot shows started are recovered as a crash interrupted them; the
affected runs are listed.
"""

from __future__ import annotations

import asyncio
import json

from bot.cli import EXIT_OK
from bot.cli.context import CliContext
from bot.store.store import DataStore


def cmd_accept_gap(ctx: CliContext, user: str) -> int:
    store = DataStore(ctx.settings.data_dir)
    store.open({"command": "runbook audit accept-gap"}, accept_gap=f"cli:{user}")
    gap = store.accepted_gap
    runs = store.gap_runs
    asyncio.run(store.close())
    if ctx.args.json:
        print(json.dumps({"accepted": gap is not None, "record": gap, "runs": runs}))
    elif gap is None:
        print("no gap: the snapshot is not ahead of the audit log; nothing to accept")
    else:
        data = gap["data"]
        print(
            f"gap recorded as audit seq {gap['seq']}: the log ended at seq {data['found_seq']}, "
            f"the snapshot had seen seq {data['expected_seq']}; the snapshot is kept as "
            f"{data['snapshot_kept']} and state was rebuilt from the audit log"
        )
        for key, text in (
            ("ended", "ended before the gap (recorded as ended; not run again)"),
            (
                "interrupted",
                "further along in the kept snapshot (steps it shows started are recovered "
                "like after a crash: repeated only when safe, else a recovery gate)",
            ),
            ("not_in_log", "in the kept snapshot but no longer in the log (not resumed)"),
        ):
            if runs.get(key):
                print(f"runs {text}: {', '.join(runs[key])}")
    return EXIT_OK
