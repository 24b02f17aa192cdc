"""Crash safety with real processes: ``runbook run`` is killed with SIGKILL at random
points (seeded), then ``runbook resume`` carries the run on.

The runbook mixes read-only, idempotent and non-idempotent actions of the
``testkit`` connector (installed through a real entry point), which counts its
side effects in a log and signals each one on a FIFO, so the test waits for
"N effects happened" instead of sleeping. Assertions: every run completes, no
step is recorded ``succeeded`` twice, each crash causes at most one extra
execution and only of read-only or idempotent actions (a non-idempotent step
interrupted mid-call stops at a recovery gate), and the audit chain verifies.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bot.audit.verify import verify
from tests.plugins.install import install_testkit, pythonpath

pytestmark = pytest.mark.slow

RUNBOOK = """
name: crashy
steps:
  - id: look
    uses: testkit.read
    with: {key: look}
  - id: contain
    uses: testkit.touch
    with: {key: contain}
  - id: ticket
    uses: testkit.ticket
    with: {key: ticket}
  - id: sweep
    uses: testkit.touch
    for_each: "['h1', 'h2', 'h3']"
    max_parallel: 2
    with: {key: "sweep-{{ item }}"}
  - id: note
    uses: testkit.ticket
    with: {key: note}
  - id: verify
    uses: testkit.read
    with: {key: verify}
"""
EFFECTS = 8  # look, contain, ticket, 3 sweeps, note, verify
SAFE = {"look", "contain", "sweep", "verify"}
TRIALS = 22


def runbook_cmd(workdir: Path, *args: str, site: Path, fifo: Path | None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bot",
        "--runbooks",
        str(workdir / "runbooks"),
        "--data",
        str(workdir / "data"),
        *args,
    ]


def environment(workdir: Path, site: Path, fifo: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    env["PYTHONPATH"] = pythonpath(site)
    env["RUNBOOK_TESTKIT_LOG"] = str(workdir / "effects.log")
    if fifo is not None:
        env["RUNBOOK_TESTKIT_SIGNAL"] = str(fifo)
    return env


def effects(workdir: Path) -> list[list[str]]:
    path = workdir / "effects.log"
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_testkit(tmp_path_factory.mktemp("site"))


def run_until_done(workdir: Path, site: Path, run_id: str) -> dict[str, object]:
    """``runbook resume RUN``; at a recovery gate, skip the interrupted step."""
    env = environment(workdir, site, None)
    for _ in range(10):
        proc = subprocess.run(
            runbook_cmd(workdir, "--json", "resume", run_id, site=site, fifo=None),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        if proc.returncode == 5:
            doc = json.loads(proc.stdout)
            waiting = [sid for sid, step in doc["steps"].items() if step.get("waiting")]
            assert waiting and all(doc["steps"][s]["waiting"]["recovery"] for s in waiting)
            for sid in waiting:
                decided = subprocess.run(
                    runbook_cmd(
                        workdir,
                        "--json",
                        "approve",
                        run_id,
                        sid,
                        "--as",
                        "tester",
                        "--skip",
                        site=site,
                        fifo=None,
                    ),
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert decided.returncode in (0, 5), decided.stderr
            continue
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))
    raise AssertionError("the run did not finish")


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_then_resume(tmp_path: Path, site: Path, trial: int) -> None:
    rng = random.Random(1000 + trial)
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "crashy.yaml").write_text(RUNBOOK, encoding="utf-8")
    fifo = tmp_path / "signal.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(reader, True)
    keep_open = os.open(fifo, os.O_WRONLY)  # so reads block rather than see EOF
    kill_after = rng.randint(1, EFFECTS - 1)  # effects to wait for before the kill
    proc = subprocess.Popen(
        runbook_cmd(tmp_path, "run", "crashy", "--as", "tester", site=site, fifo=fifo),
        env=environment(tmp_path, site, fifo),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        seen = 0
        while seen < kill_after:
            seen += len(os.read(reader, 64))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(reader)
        os.close(keep_open)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    before = effects(tmp_path)
    run_ids = {line[1] for line in before}
    assert len(run_ids) == 1
    run_id = run_ids.pop()

    doc = run_until_done(tmp_path, site, run_id)
    assert doc["status"] == "succeeded"

    # the audit chain verifies and no step succeeded twice
    log = tmp_path / "data" / "audit.jsonl"
    assert verify(str(log)).ok
    records = [json.loads(line) for line in log.read_text().splitlines()]
    succeeded = Counter(r["step"] for r in records if r["event"] == "step.succeeded")
    assert all(count == 1 for count in succeeded.values()), succeeded
    items = Counter(
        (r["step"], r["data"]["index"]) for r in records if r["event"] == "step.item_succeeded"
    )
    assert all(count == 1 for count in items.values()), items

    # at most one extra execution (one crash), and only for safe actions
    counts = Counter((line[0], line[3]) for line in effects(tmp_path))
    for (kind, key), count in counts.items():
        if kind == "ticket":
            assert count == 1, (key, count)
        else:
            assert count <= 2, (key, count)
    extra = sum(count - 1 for count in counts.values())
    assert extra <= 1 + 1  # one crash; a for_each may have two items in flight
    # a step is only ever skipped because a person chose so at a recovery gate (or its
    # only need was skipped that way); a recovery gate only stops non-idempotent steps
    gates = [r for r in records if r["event"] == "approval.requested"]
    assert all(r["data"]["recovery"] and r["step"] in ("ticket", "note") for r in gates)
    for r in records:
        if r["event"] == "step.skipped":
            assert "after a restart" in r["data"]["reason"] or r["data"]["reason"].startswith(
                "every step it needs was skipped"
            ), r
