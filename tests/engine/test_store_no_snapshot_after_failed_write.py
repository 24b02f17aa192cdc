"""After a failed journal write, no snapshot records state the journal never got."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.store.fileops import FileOps
from bot.store.store import DataStore
from tests.engine.harness import make_engine

RB = """
name: durable
steps:
  - id: gate
    approval: {prompt: "ok?", approvers: {users: [alice]}}
  - id: after
    uses: core.noop
"""


class Fail(FileOps):
    def write(self, fd, data):
        raise OSError(errno.EIO, "io error")


async def test_snapshot_after_failed_write(tmp_path: Path):
    h = make_engine(RB, data_dir=tmp_path)
    run = await h.start("durable")
    assert run.status == "waiting"
    size = (tmp_path / "audit.jsonl").stat().st_size
    h.store.audit.fileops = Fail()  # only the journal fails (transient EIO)
    with pytest.raises(StoreError):
        await h.engine.decide(run.id, "gate", "cli:alice", "approve")
    await h.engine.close()
    await h.store.close()  # what EngineSession.close / Service.stop do
    assert (tmp_path / "audit.jsonl").stat().st_size == size  # nothing new on disk
    s = DataStore(tmp_path, readonly=True)
    s.open()
    r = s.get_run(run.id)
    # replay-from-scratch of the journal:
    s2 = DataStore(tmp_path, readonly=True)
    s2.snapshot.storage._data = {}  # force no snapshot
    if (tmp_path / "state.json").exists():
        os.rename(tmp_path / "state.json", tmp_path / "state.bak")
    s3 = DataStore(tmp_path, readonly=True)
    s3.open()
    r3 = s3.get_run(run.id)
    assert r.status == r3.status
