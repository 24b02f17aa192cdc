"""Repairs of a damaged data directory, through the real command in real processes.

A torn last line of the run index or archive is set aside and the runs it held
come back from the audit log; a snapshot ahead of the audit log (records cut
from its end) stops every state-changing command until an operator accepts
the gap, which is then recorded in the log for good; a full or read-only data
directory at start is one clear line, and leaves nothing behind.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.errors import StoreError
from bot.store.lock import DataDirLock
from tests.cli.test_cli_read_commands import run
from tests.plugins.install import install_testkit, pythonpath

pytestmark = pytest.mark.slow

RUNBOOKS = {
    "two.yaml": """\
name: two
steps:
  - id: a
    uses: core.noop
  - id: b
    uses: core.noop
""",
    "gate.yaml": """\
name: gate
steps:
  - id: a
    uses: core.noop
  - id: ok
    approval: {prompt: "go?", approvers: {users: [nobody]}}
  - id: b
    uses: core.noop
""",
}


def rb(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    proc = run("--runbooks", "rb", "--data", "data", *args, cwd=tmp_path)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def base(tmp_path: Path) -> tuple[Path, str, str]:
    """A data directory with one archived run (``two``) and one waiting run (``gate``)."""
    (tmp_path / "rb").mkdir()
    for name, text in RUNBOOKS.items():
        (tmp_path / "rb" / name).write_text(text, encoding="utf-8")
    code, _out, err = rb(tmp_path, "run", "two", "--as", "t", "--json")
    assert code == 0, err
    code, _out, err = rb(tmp_path, "run", "gate", "--as", "t", "--json")
    assert code == 5, err
    ids = [row["id"] for row in json.loads(rb(tmp_path, "runs", "--json")[1])]
    gate_id, two_id = ids  # newest first
    return tmp_path / "data", two_id, gate_id


def ids_listed(tmp_path: Path) -> set[str]:
    code, out, err = rb(tmp_path, "runs", "--json")
    assert code == 0, err
    return {row["id"] for row in json.loads(out)}


@pytest.mark.parametrize("name", ["index.jsonl", "archive.jsonl"])
def test_a_torn_last_line_of_the_run_files_hides_no_run(
    base: tuple[Path, str, str], name: str
) -> None:
    data, two_id, gate_id = base
    tmp_path = data.parent
    path = data / "runs" / name
    with open(path, "r+b") as handle:  # a crash mid-append: the last line lost its end
        handle.truncate(path.stat().st_size - 30)

    # read-only commands: the damaged line is skipped with a warning, the audit log fills in
    assert ids_listed(tmp_path) == {two_id, gate_id}
    code, out, err = rb(tmp_path, "status", two_id)
    assert code == 0, err
    assert f"run {two_id}  two  succeeded" in out
    code, out, err = rb(tmp_path, "report", two_id)
    assert code == 0, err
    assert "**Outcome:** succeeded" in out

    # the next state-changing command sets the torn bytes aside and repairs the files
    code, _out, err = rb(tmp_path, "cancel", gate_id, "--as", "t")
    assert code == 0, err
    assert f"set aside in {name}.torn" in err
    assert (data / "runs" / f"{name}.torn").read_bytes().endswith(b"\n")
    for file in ("index.jsonl", "archive.jsonl"):
        lines = (data / "runs" / file).read_bytes().splitlines(keepends=True)
        assert all(line.endswith(b"\n") for line in lines)
        assert all(isinstance(json.loads(line), dict) for line in lines)  # nothing glued
    rows = [json.loads(line) for line in (data / "runs" / "index.jsonl").read_bytes().splitlines()]
    assert {row["id"] for row in rows} == {two_id, gate_id}
    code, out, err = rb(tmp_path, "status", two_id)
    assert (code, err) == (0, ""), err  # no fallback needed any more
    assert "succeeded" in out
    code, out, _err = rb(tmp_path, "status", gate_id)
    assert "cancelled" in out
    assert rb(tmp_path, "audit", "verify")[0] == 0


CRASH_BEFORE_REARCHIVE = """\
import os, sys
from bot.store.store import DataStore

def crash(self):  # the process dies once the torn line is set aside, before the re-archive
    os._exit(9)

DataStore._rearchive_from_audit_log = crash
DataStore(sys.argv[1]).open({"command": "crash test"})
"""


@pytest.mark.parametrize("name", ["index.jsonl", "archive.jsonl"])
def test_a_crash_between_setting_aside_and_re_archiving_loses_no_run(
    base: tuple[Path, str, str], name: str
) -> None:
    data, two_id, gate_id = base
    tmp_path = data.parent
    path = data / "runs" / name
    with open(path, "r+b") as handle:  # a crash mid-append: the last line lost its end
        handle.truncate(path.stat().st_size - 30)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_BEFORE_REARCHIVE, str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert crashed.returncode == 9, crashed.stderr
    assert (data / "runs" / f"{name}.torn").exists()
    assert path.read_bytes()[-1:] in (b"", b"\n")  # set aside: the file looks clean now

    # readers still find the run (the repair is known to be unfinished)
    assert ids_listed(tmp_path) == {two_id, gate_id}
    code, out, err = rb(tmp_path, "status", two_id)
    assert code == 0, err
    assert f"run {two_id}  two  succeeded" in out

    # the next state-changing command finishes the repair
    code, _out, err = rb(tmp_path, "cancel", gate_id, "--as", "t")
    assert code == 0, err
    rows = [json.loads(line) for line in (data / "runs" / "index.jsonl").read_bytes().splitlines()]
    assert {row["id"] for row in rows} == {two_id, gate_id}
    assert not list((data / "runs").glob("*.due"))
    code, out, err = rb(tmp_path, "status", two_id)
    assert (code, err) == (0, ""), err  # no fallback needed any more
    assert "succeeded" in out
    code, _out, err = rb(tmp_path, "run", "two", "--as", "t")  # the repair is not done again
    assert code == 0, err
    assert "set aside" not in err
    after = (data / "runs" / "index.jsonl").read_bytes().splitlines()
    assert len(after) == len(rows) + 1


def test_report_falls_back_to_the_audit_log_when_the_archive_lacks_the_run(
    base: tuple[Path, str, str],
) -> None:
    data, two_id, _gate_id = base
    (data / "runs" / "archive.jsonl").write_bytes(b"")  # lost, index still pointing at it

    code, out, err = rb(data.parent, "report", two_id)

    assert code == 0, err
    assert f"# two — run {two_id}" in out
    assert "**Outcome:** succeeded" in out
    assert rb(data.parent, "report", "r-unknown")[0] == 2


def cut_log(data: Path, keep: int) -> None:
    lines = (data / "audit.jsonl").read_bytes().splitlines(keepends=True)
    (data / "audit.jsonl").write_bytes(b"".join(lines[:keep]))


def test_a_snapshot_ahead_of_the_log_is_refused_until_the_gap_is_accepted(
    base: tuple[Path, str, str],
) -> None:
    data, two_id, gate_id = base
    tmp_path = data.parent
    records = (data / "audit.jsonl").read_bytes().splitlines()
    two_records = [json.loads(line) for line in records if json.loads(line)["run_id"] == two_id]
    assert two_records[-1]["event"] == "run.finished"
    cut_log(data, len(two_records) - 1)  # run.finished of `two` and all of `gate` removed
    snapshot = (data / "state.json").read_bytes()

    code, _out, err = rb(tmp_path, "audit", "verify")
    assert code == 1
    assert "records were removed from its end" in err
    for command in (["resume"], ["run", "two", "--as", "t"], ["cancel", gate_id]):
        code, _out, err = rb(tmp_path, *command)
        assert code == 2, (command, err)
        assert len(err.strip().splitlines()) == 1
        assert "snapshot state.json saw seq" in err
        assert "runbook audit accept-gap" in err
    # nothing changed: the evidence is still there, and read-only commands work
    assert (data / "state.json").read_bytes() == snapshot
    assert len((data / "audit.jsonl").read_bytes().splitlines()) == len(two_records) - 1
    assert rb(tmp_path, "audit", "verify")[0] == 1
    assert rb(tmp_path, "runs")[0] == 0

    code, out, err = rb(tmp_path, "audit", "accept-gap", "--as", "olga")
    assert code == 0, err
    kept = sorted(data.glob("state.json.ahead-*"))
    assert len(kept) == 1
    assert kept[0].read_bytes() == snapshot
    assert kept[0].name in out
    assert f"runs ended before the gap (recorded as ended; not run again): {two_id}" in out
    assert f"no longer in the log (not resumed): {gate_id}" in out
    after = [json.loads(line) for line in (data / "audit.jsonl").read_bytes().splitlines()]
    (last,) = [record for record in after if record["event"] == "audit.gap"]
    assert after[len(two_records) - 1] == last  # the first record after the cut
    # it takes the seq after the last one ever issued: no seq is issued twice
    assert last["seq"] == len(records) + 1
    assert last["prev"] == two_records[-2]["hash"]  # and still links to the last record kept
    assert last["actor"] == "cli:olga"
    assert last["data"] == {
        "expected_seq": len(records),
        "found_seq": len(two_records) - 1,
        "snapshot_kept": kept[0].name,
    }

    code, out, err = rb(tmp_path, "audit", "verify", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["ok"] is True
    assert [gap["seq"] for gap in result["gaps"]] == [last["seq"]]
    code, out, _err = rb(tmp_path, "audit", "verify")
    assert f"recorded gap at seq {last['seq']}" in out
    assert "accepted by cli:olga" in out

    code, _out, err = rb(tmp_path, "resume")  # carries on from the log
    assert code == 0, err
    assert rb(tmp_path, "audit", "verify")[0] == 0
    assert kept[0].exists()  # never deleted automatically
    assert "recorded gap" in rb(tmp_path, "audit", "verify")[1]


def test_accept_gap_without_a_gap_changes_nothing(base: tuple[Path, str, str]) -> None:
    data, _two_id, _gate_id = base
    before = (data / "audit.jsonl").read_bytes()

    code, out, err = rb(data.parent, "audit", "accept-gap", "--as", "olga")

    assert code == 0, err
    assert "nothing to accept" in out
    assert (data / "audit.jsonl").read_bytes() == before
    assert not list(data.glob("state.json.ahead-*"))


def test_a_read_only_data_directory_at_start_is_one_clear_line(
    base: tuple[Path, str, str],
) -> None:
    data, _two_id, _gate_id = base
    if os.geteuid() == 0:
        pytest.skip("root writes to a directory without write permission")
    (data / "lock").unlink()
    data.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        code, _out, err = rb(data.parent, "run", "two", "--as", "t")
    finally:
        data.chmod(stat.S_IRWXU)
    assert code == 1
    assert err.startswith(f"runbook: cannot write {data / 'lock'}: permission denied")
    assert "internal error" not in err


def test_the_owner_note_is_private_and_a_full_disk_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = DataDirLock(tmp_path)
    lock.acquire({"command": "runbook test"})
    assert stat.S_IMODE((tmp_path / "owner.json").stat().st_mode) == 0o600
    lock.release()

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("bot.store.lock.os.write", full)
    with pytest.raises(StoreError, match=r"owner\.json: the disk is full"):
        lock.acquire({"command": "runbook test"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lock"]
    assert not lock.held  # released: the next command is not blocked


def test_a_read_only_file_system_at_start_is_one_clear_line_with_exit_1(
    base: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    data, _two_id, _gate_id = base
    real_open = os.open

    def read_only(path: object, flags: int, *args: int) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr("bot.store.lock.os.open", read_only)
    code = main(["--runbooks", str(data.parent / "rb"), "--data", str(data), "resume"])

    err = capsys.readouterr().err
    assert code == 1
    assert err == (
        f"runbook: cannot write {data / 'lock'}: the file system is read-only; nothing was "
        "changed — fix the data directory and run the command again (read-only commands "
        "still work)\n"
    )


TESTKIT_RUNBOOKS = {
    "tick.yaml": """\
name: tick
steps:
  - id: a
    uses: testkit.ticket
    with: {key: a}
  - id: b
    uses: testkit.read
    with: {key: b}
""",
    "gated.yaml": """\
name: gated
steps:
  - id: a
    uses: testkit.ticket
    with: {key: a}
  - id: ok
    approval: {prompt: "go?", approvers: {users: [nobody]}}
  - id: b
    uses: testkit.read
    with: {key: b}
""",
}


@pytest.fixture
def kit(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """``runbook`` in tmp_path with the testkit connector (effects logged to effects.log)."""
    (tmp_path / "rb").mkdir()
    for name, text in TESTKIT_RUNBOOKS.items():
        (tmp_path / "rb" / name).write_text(text, encoding="utf-8")
    env = {
        "PYTHONPATH": pythonpath(install_testkit(tmp_path_factory.mktemp("site"))),
        "RUNBOOK_TESTKIT_LOG": str(tmp_path / "effects.log"),
    }

    def call(*args: str) -> tuple[int, str, str]:
        proc = run("--runbooks", "rb", "--data", "data", *args, cwd=tmp_path, env=env)
        return proc.returncode, proc.stdout, proc.stderr

    return call


def tickets(tmp_path: Path) -> list[str]:
    path = tmp_path / "effects.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line for line in lines if line.startswith("ticket ")]


def cut_after_run_started(data: Path, run_id: str) -> None:
    """Cut the log right after the run's ``run.started`` (its later records are lost)."""
    lines = (data / "audit.jsonl").read_bytes().splitlines(keepends=True)
    keep = next(
        number
        for number, line in enumerate(lines, 1)
        if json.loads(line)["run_id"] == run_id and json.loads(line)["event"] == "run.started"
    )
    cut_log(data, keep)


def test_accept_gap_does_not_run_again_a_run_that_had_ended(
    tmp_path: Path, kit: Callable[..., Any]
) -> None:
    data = tmp_path / "data"
    code, out, err = kit("--json", "run", "tick", "--as", "t")
    assert code == 0, err
    run_id = json.loads(out)["id"]
    assert len(tickets(tmp_path)) == 1
    cut_after_run_started(data, run_id)  # step records and run.finished lost; archived

    code, accepted, err = kit("audit", "accept-gap", "--as", "olga")
    assert code == 0, err
    code, out, err = kit("resume")
    assert code == 0, err

    assert len(tickets(tmp_path)) == 1  # the ticket was not opened again
    code, out, err = kit("runs", "--json")
    assert [(row["id"], row["status"]) for row in json.loads(out)] == [(run_id, "succeeded")]
    rows = [json.loads(line) for line in (data / "runs" / "index.jsonl").read_bytes().splitlines()]
    assert [row["id"] for row in rows] == [run_id]  # archived once
    assert len((data / "runs" / "archive.jsonl").read_bytes().splitlines()) == 1
    records = [json.loads(line) for line in (data / "audit.jsonl").read_bytes().splitlines()]
    (finished,) = [r for r in records if r["event"] == "run.finished"]
    assert finished["run_id"] == run_id
    assert finished["actor"] == "system"
    assert finished["data"] == {"status": "succeeded", "reason": "ended before the audit gap"}
    assert [r["event"] for r in records].index("audit.gap") < records.index(finished)
    assert kit("audit", "verify")[0] == 0
    assert f"runs ended before the gap (recorded as ended; not run again): {run_id}" in accepted
    (data / "state.json").unlink()  # a replay of the whole log takes the gap's seq jump
    code, out, err = kit("runs", "--json")
    assert (code, err) == (0, ""), err
    assert [(row["id"], row["status"]) for row in json.loads(out)] == [(run_id, "succeeded")]


def test_accept_gap_recovers_a_step_the_log_lost_like_a_crash_never_as_fresh(
    tmp_path: Path, kit: Callable[..., Any]
) -> None:
    data = tmp_path / "data"
    code, out, err = kit("--json", "run", "gated", "--as", "t")
    assert code == 5, err  # `a` opened its ticket; waiting at the approval
    run_id = json.loads(out)["id"]
    assert len(tickets(tmp_path)) == 1
    cut_after_run_started(data, run_id)  # the log no longer knows `a` ran

    code, accepted, err = kit("audit", "accept-gap", "--as", "olga")
    assert code == 0, err
    code, out, err = kit("--json", "resume", run_id)

    assert code == 5, err
    assert len(tickets(tmp_path)) == 1  # not opened a second time
    doc = json.loads(out)
    assert doc["steps"]["a"]["waiting"]["recovery"] is True  # a person decides
    records = [json.loads(line) for line in (data / "audit.jsonl").read_bytes().splitlines()]
    started = [r for r in records if r["event"] == "step.started" and r["step"] == "a"]
    assert [r["data"]["reason"] for r in started] == ["started before the audit gap"]
    assert kit("audit", "verify")[0] == 0
    assert "runs further along in the kept snapshot" in accepted
    assert run_id in accepted
