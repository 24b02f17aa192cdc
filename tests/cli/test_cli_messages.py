"""Arguments and messages of the command line (SPEC §3): --json in either position, one
``runbook:`` prefix, exit-5 output, gate field errors, the timeline's words, bad data paths."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.cli import build_parser
from bot.cli.run_commands import print_waiting
from bot.engine.state import GateState, RunState, RunStatus, StepState

RUNBOOKS = {
    "quorum.yaml": """
name: quorum
steps:
  - id: ok
    approval:
      prompt: "Go?"
      approvers: {users: [alice, bob, carol]}
      min_approvals: 2
      fields:
        n: {type: integer, required: false}
  - id: after
    uses: core.echo
    with: {done: true}
""",
}

# every command, with the arguments it needs
COMMANDS = [
    ["validate"],
    ["list"],
    ["graph", "quorum"],
    ["connectors"],
    ["run", "quorum"],
    ["approve", "r-x", "ok", "--as", "bob"],
    ["resume"],
    ["resume", "r-x"],
    ["runs"],
    ["status", "r-x"],
    ["cancel", "r-x"],
    ["report", "r-x"],
    ["audit", "verify"],
    ["audit", "export", "--run", "r-x"],
    ["serve"],
    ["demo"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv[:2]))
def test_json_is_taken_before_and_after_the_command(argv: list[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["--json", *argv]).json is True
    assert parser.parse_args([*argv, "--json"]).json is True
    assert parser.parse_args(argv).json is False


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "runbooks").mkdir()
    for name, text in RUNBOOKS.items():
        (tmp_path / "runbooks" / name).write_text(text, encoding="utf-8")
    return tmp_path


def runbook(
    workdir: Path, *args: str, data: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "--runbooks",
            str(workdir / "runbooks"),
            "--data",
            str(data or workdir / "data"),
            *args,
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def last_line(text: str) -> str:
    return text.rstrip("\n").rsplit("\n", 1)[-1]


@pytest.mark.slow
def test_audit_verify_and_export_take_json_after_the_command(workdir: Path) -> None:
    assert runbook(workdir, "run", "quorum", "--as", "alice").returncode == 5
    verify = runbook(workdir, "audit", "verify", "--json")
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["ok"] is True
    export = runbook(workdir, "audit", "export", "--json")
    assert export.returncode == 0, export.stderr
    records = [json.loads(line) for line in export.stdout.splitlines()]
    assert records[0]["event"] == "run.started"


@pytest.mark.slow
def test_argument_errors_have_one_prefix(workdir: Path) -> None:
    proc = runbook(workdir, "runs", "--bogus")
    assert proc.returncode == 2
    assert proc.stderr.startswith("runbook: ") and "runbook: runbook" not in proc.stderr
    proc = runbook(workdir, "status")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("runbook: status: the following arguments are required: RUN_ID")
    proc = runbook(workdir, "--json", "status")
    assert json.loads(proc.stdout)["error"].startswith("status: ")


@pytest.mark.slow
def test_a_vote_short_of_the_quorum_exits_5_with_the_run_id_last(workdir: Path) -> None:
    started = runbook(workdir, "run", "quorum", "--as", "alice")
    assert started.returncode == 5
    run_id = last_line(started.stdout)
    assert run_id.startswith("r-")
    vote = runbook(workdir, "approve", run_id, "ok", "--as", "bob")
    assert vote.returncode == 5, vote.stderr
    assert last_line(vote.stdout) == run_id
    assert "approve recorded: 1 of 2 approvals" in vote.stderr
    assert f"runbook approve {run_id} ok --as USER" in vote.stderr
    # --json: the document instead of the bare id
    rejected = runbook(workdir, "approve", run_id, "ok", "--as", "carol", "--reject", "--json")
    assert rejected.returncode == 3
    assert json.loads(rejected.stdout)["status"] == "rejected"


@pytest.mark.slow
def test_the_timeline_says_rejected(workdir: Path) -> None:
    run_id = last_line(runbook(workdir, "run", "quorum", "--as", "alice").stdout)
    proc = runbook(workdir, "approve", run_id, "ok", "--as", "bob", "--reject", "--comment", "no")
    assert proc.returncode == 3
    assert "cli:bob rejected (0/2): no" in proc.stdout
    assert "rejectd" not in proc.stdout


@pytest.mark.slow
def test_a_bad_field_value_names_the_field(workdir: Path) -> None:
    run_id = last_line(runbook(workdir, "run", "quorum", "--as", "alice").stdout)
    proc = runbook(workdir, "approve", run_id, "ok", "--as", "bob", "--field", "n=abc")
    assert proc.returncode == 2
    assert proc.stderr.startswith("runbook: field 'n': "), proc.stderr
    assert "input" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [["runs"], ["status", "r-x"], ["audit", "verify"], ["report", "r-x"], ["run", "quorum"]],
    ids=lambda argv: argv[0],
)
def test_a_data_path_that_is_a_file_is_a_usage_error(workdir: Path, argv: list[str]) -> None:
    afile = workdir / "afile"
    afile.write_text("not a directory", encoding="utf-8")
    for data, expected in (
        (afile, f"runbook: data directory {afile} is not a directory (see --data)"),
        (afile / "sub", f"is under {afile}, which is not a directory"),
    ):
        proc = runbook(workdir, *argv, data=data)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert expected in proc.stderr
        assert "internal error" not in proc.stderr


def _waiting_run(*, recovery: bool) -> RunState:
    gate = GateState(
        prompt="Run it again?",
        channel=None,
        users=[],
        groups=[],
        open_to_all=True,
        min_approvals=1,
        allow_requester=True,
        requested_at="2026-01-01T00:00:00Z",
        deadline=None,
        on_timeout="reject",
        escalate_at=None,
        escalate_users=[],
        escalate_groups=[],
        fields={},
        recovery=recovery,
    )
    return RunState(
        id="r-0000000000000001",
        runbook="x",
        digest="d",
        inputs={},
        requester="cli:alice",
        trigger={"kind": "cli"},
        alert=None,
        started_at="2026-01-01T00:00:00Z",
        step_ids=["launch"],
        seq=1,
        status=RunStatus.WAITING,
        steps={"launch": StepState(gate=gate)},
    )


@pytest.mark.parametrize("recovery", [True, False])
def test_the_exit_5_hint_offers_skip_at_a_recovery_gate(
    recovery: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = SimpleNamespace(args=argparse.Namespace(json=False))
    print_waiting(ctx, _waiting_run(recovery=recovery))  # type: ignore[arg-type]
    out, err = capsys.readouterr()
    assert out == "r-0000000000000001\n"
    hint = "runbook approve r-0000000000000001 launch --as USER"
    assert hint + (" [--reject|--skip]" if recovery else " [--reject]") in err


@pytest.mark.slow
def test_left_out_files_are_counted_in_good_english(workdir: Path) -> None:
    (workdir / "runbooks" / "bad.yaml").write_text("name: bad\nsteps: 3\n", encoding="utf-8")
    proc = runbook(workdir, "list")
    assert "warning: 1 runbook file has errors and is left out" in proc.stderr, proc.stderr
    (workdir / "runbooks" / "worse.yaml").write_text("name: worse\nsteps: 3\n", encoding="utf-8")
    proc = runbook(workdir, "list")
    assert "warning: 2 runbook files have errors and are left out" in proc.stderr
    proc = runbook(workdir, "run", "quorum")
    assert "warning: 2 other runbook files have errors" in proc.stderr
