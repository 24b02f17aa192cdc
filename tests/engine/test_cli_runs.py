"""The run commands through the real ``runbook`` command (SPEC §3 exit codes and JSON)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

RUNBOOKS = {
    "gate.yaml": """
name: gate
inputs:
  host: {type: string, pattern: '^[a-z0-9.-]+$'}
steps:
  - id: find
    uses: core.echo
    with: {host: "{{ inputs.host }}"}
  - id: approve
    approval:
      prompt: "Contain {{ steps.find.output.host }}?"
      approvers: {users: [alice, bob], groups: [leads]}
      min_approvals: 2
  - id: contain
    uses: core.echo
    with: {contained: "{{ steps.find.output.host }}"}
    compensate: {uses: core.echo, with: {lift: yes}}
""",
    "ok.md": """---
name: ok
inputs:
  n: {type: integer, default: 2}
---
# A quick one

## Echo it
Says the number back.

```step
id: echo
uses: core.echo
with: {n: "{{ inputs.n }}"}
```
""",
    "bad.yaml": "name: broken\nsteps:\n  - id: x\n    uses: core.nope\n",
    "fails.yaml": """
name: fails
steps:
  - id: boom
    uses: core.fail
    with: {message: kaput}
""",
    "dry.yaml": """
name: dry
steps:
  - id: look
    uses: core.echo
    with: {host: web-1}
  - id: ok
    approval: {prompt: "go?"}
  - id: act
    uses: http.request
    with: {method: POST, url: "https://example.invalid/contain", json: {host: "{{ steps.look.output.host }}"}}
  - id: after
    uses: core.echo
    with: {result: "{{ steps.act.output.status }}"}
""",
}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "runbooks").mkdir()
    for name, text in RUNBOOKS.items():
        (tmp_path / "runbooks" / name).write_text(text, encoding="utf-8")
    return tmp_path


def runbook(
    workdir: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    env["RUNBOOK_GROUPS"] = "leads=dora"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "--runbooks",
            str(workdir / "runbooks"),
            "--data",
            str(workdir / "data"),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin or "",
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_run_succeeds_with_json_document(workdir: Path) -> None:
    proc = runbook(workdir, "run", "ok", "-i", "n=5", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "succeeded" and doc["runbook"] == "ok"
    assert doc["inputs"] == {"n": 5}
    step = doc["steps"]["echo"]
    assert step["outcome"] == "succeeded" and step["output"] == {"n": 5}
    assert step["attempts"] == 1 and step["error"] is None
    assert step["started_at"].endswith("Z") and step["ended_at"].endswith("Z")


def test_a_whole_decimal_is_an_integer_input_on_the_command_line(workdir: Path) -> None:
    # docs/runbooks.md: 4.0 is accepted as 4, 4.5 is not
    proc = runbook(workdir, "run", "ok", "-i", "n=4.0", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["inputs"] == {"n": 4}
    refused = runbook(workdir, "run", "ok", "-i", "n=4.5")
    assert refused.returncode == 2
    assert "input 'n': expected an integer, got '4.5'" in refused.stderr


def test_failed_run_exits_1_and_bad_input_exits_2(workdir: Path) -> None:
    assert runbook(workdir, "run", "fails").returncode == 1
    bad = runbook(workdir, "run", "gate", "-i", "host=NOT OK", "--json")
    assert bad.returncode == 2
    assert "input 'host'" in bad.stderr
    assert "input 'host'" in json.loads(bad.stdout)["error"]
    unknown = runbook(workdir, "run", "nope")
    assert unknown.returncode == 2 and "unknown runbook 'nope'" in unknown.stderr
    invalid = runbook(workdir, "run", "broken")
    assert invalid.returncode == 2 and "bad.yaml:4:11" in invalid.stderr


def test_gate_waits_then_approve_quorum_and_exit_codes(workdir: Path) -> None:
    first = runbook(workdir, "run", "gate", "-i", "host=web-1", "--as", "carol")
    assert first.returncode == 5
    run_id = first.stdout.strip().splitlines()[-1]
    assert run_id.startswith("r-")
    status = json.loads(runbook(workdir, "status", run_id, "--json").stdout)
    assert status["status"] == "waiting"
    assert list(status["steps"]) == ["find", "approve", "contain"]
    assert status["steps"]["contain"]["outcome"] is None

    refused = runbook(workdir, "approve", run_id, "approve", "--as", "mallory")
    assert refused.returncode == 2 and "not an approver" in refused.stderr
    one = runbook(workdir, "approve", run_id, "approve", "--as", "alice", "--comment", "yes")
    assert one.returncode == 5  # accepted, quorum not reached
    again = runbook(workdir, "approve", run_id, "approve", "--as", "alice")
    assert again.returncode == 2 and "already decided" in again.stderr
    done = runbook(workdir, "approve", run_id, "approve", "--as", "dora", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    late = runbook(workdir, "approve", run_id, "approve", "--as", "bob")
    assert late.returncode == 2
    assert runbook(workdir, "approve", "r-unknown", "approve", "--as", "bob").returncode == 2

    report = runbook(workdir, "report", run_id)
    assert report.returncode == 0
    as_json = json.loads(runbook(workdir, "report", run_id, "--json").stdout)
    assert as_json["id"] == run_id and as_json["markdown"].startswith("# ")
    assert "cli:alice** approved `approve` — “yes”" in report.stdout
    assert "cli:mallory** tried to approve `approve`: refused" in report.stdout
    refusals = [
        json.loads(line)
        for line in runbook(workdir, "audit", "export", "--run", run_id).stdout.splitlines()
        if '"approval.refused"' in line
    ]
    # a decision after the run ended is refused, but not appended after run.finished
    assert [r["actor"] for r in refusals] == ["cli:mallory", "cli:alice"]
    verify = runbook(workdir, "audit", "verify")
    assert verify.returncode == 0 and "intact" in verify.stdout


def test_reject_exits_3_and_cancel_exits_0_then_2(workdir: Path) -> None:
    run_id = runbook(workdir, "run", "gate", "-i", "host=a").stdout.strip().splitlines()[-1]
    rejected = runbook(workdir, "approve", run_id, "approve", "--as", "bob", "--reject")
    assert rejected.returncode == 3
    run_id = runbook(workdir, "run", "gate", "-i", "host=b", "--as", "carol").stdout.strip()
    run_id = run_id.splitlines()[-1]
    assert runbook(workdir, "cancel", run_id, "--as", "mallory").returncode == 0  # run_by unset
    assert runbook(workdir, "cancel", run_id, "--as", "carol").returncode == 2  # already ended
    assert runbook(workdir, "cancel", "r-nope").returncode == 2
    runs = json.loads(runbook(workdir, "runs", "--json").stdout)
    assert [r["status"] for r in runs][:2] == ["cancelled", "rejected"]
    assert set(runs[0]) == {"id", "runbook", "status", "started_at", "ended_at", "requester"}
    only = json.loads(runbook(workdir, "runs", "--status", "rejected", "--json").stdout)
    assert [r["id"] for r in only] == [runs[1]["id"]]


def test_terminal_answers_from_stdin_are_not_used_without_a_tty(workdir: Path) -> None:
    proc = runbook(workdir, "run", "gate", "-i", "host=c", "--as", "alice", stdin="y\n")
    assert proc.returncode == 5  # stdin is not a terminal: the run waits durably


def test_status_and_report_of_unknown_run_exit_2(workdir: Path) -> None:
    assert runbook(workdir, "status", "r-nope").returncode == 2
    assert runbook(workdir, "report", "r-nope").returncode == 2


def test_dry_run_calls_nothing_mutating_and_records_nothing(workdir: Path) -> None:
    proc = runbook(workdir, "run", "dry", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "would call http.request" in out and "example.invalid" in out
    assert "<steps.act.output.status…>" in out
    assert "approval counts as approved" in out
    assert not (workdir / "data" / "audit.jsonl").exists()
    assert json.loads(runbook(workdir, "runs", "--json").stdout) == []


def test_resume_with_nothing_to_do(workdir: Path) -> None:
    proc = runbook(workdir, "resume")
    assert proc.returncode == 0 and "no unfinished runs" in proc.stdout
