"""Outputs are applied as JSON gives them back, so live state equals replayed state."""

from __future__ import annotations

from bot.store.store import DataStore
from tests.engine.harness import make_engine

RB = """
name: types
steps:
  - id: a
    uses: core.echo
    with: {pair: "{{ (1, 2) }}", byid: "{{ {7: 'x'} }}"}
  - id: gate
    approval: {prompt: "ok?"}
  - id: b
    if: "steps.a.output.byid[7] == 'x'"
    uses: core.noop
"""


async def test_replay_equals_live(tmp_path):
    h = make_engine(RB, data_dir=tmp_path)
    run = await h.start("types")
    live = run.steps["a"].output
    await h.engine.close()
    await h.store.close()
    s = DataStore(tmp_path, readonly=True)
    s.open()
    replayed = s.get_run(run.id).steps["a"].output
    h2 = make_engine(RB, data_dir=tmp_path)
    await h2.engine.start(resume=True)
    await h2.engine.decide(run.id, "gate", "cli:bob", "approve")
    after = await h2.settle(run.id)
    assert live == replayed == {"pair": [1, 2], "byid": {"7": "x"}}  # as JSON gives it back
    # so a template that only worked before a restart fails the same way live and after
    assert after.steps["b"].outcome == "failed"
    assert "element 7" in (after.steps["b"].error or "")
    await h2.close()
