"""A start with a known idempotency key answers only once the run it names is durable."""

from __future__ import annotations

import asyncio

from tests.engine.harness import make_engine


async def test_idempotent_start_answers_before_durable(tmp_path):
    h = make_engine("name: q\nsteps:\n  - id: a\n    uses: core.noop\n", data_dir=tmp_path)
    first = asyncio.create_task(
        h.engine.start_run("q", {}, requester="api:ci", idempotency_key="api:ci:K")
    )
    for _ in range(3):
        await asyncio.sleep(0)
        if h.store._pending_lines:
            break
    assert h.store._pending_lines, "first start is waiting for its fsync"
    second = await h.engine.start_run("q", {}, requester="api:ci", idempotency_key="api:ci:K")
    on_disk = (tmp_path / "audit.jsonl").read_text() if (tmp_path / "audit.jsonl").exists() else ""
    await first
    assert second.run.id in on_disk
