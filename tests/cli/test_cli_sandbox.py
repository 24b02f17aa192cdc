"""``--sandbox`` on the terminal's run commands: fake vendors, sandbox runs that stay sandbox runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_ONLY = (
    "sandbox run: its connector calls only go to the fake vendors; "
    "continue it with --sandbox / serve --sandbox"
)
GATED = """
name: gated
steps:
  - id: ok
    approval: {prompt: "go?", approvers: {users: [bob]}}
  - id: done
    uses: core.echo
    with: {done: web-1}
"""


def runbook(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOK_", "SLACK_"))}
    env["RUNBOOK_GROUPS"] = "soc=alice;soc-leads=bob"
    proc = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "runbooks", tmp_path / "runbooks")
    (tmp_path / "runbooks" / "gated.yaml").write_text(GATED, encoding="utf-8")
    return tmp_path


def test_a_sandbox_run_is_only_carried_on_with_the_sandbox(workdir: Path) -> None:
    started = runbook(
        workdir, "run", "isolate-host", "-i", "host=web-1", "--as", "alice", "--sandbox"
    )
    assert started.returncode == 5, started.stderr
    assert "simulated by fake vendor APIs" in started.stderr
    assert "nothing real is touched" in started.stderr
    assert "[sandbox]" in started.stdout
    assert "--as USER --sandbox" in started.stderr  # the hint says how to continue it
    run_id = started.stdout.strip().splitlines()[-1]

    for refused in (
        runbook(workdir, "approve", run_id, "approve", "--as", "bob"),
        runbook(workdir, "cancel", run_id, "--as", "alice"),
        runbook(workdir, "resume", run_id),
    ):
        assert refused.returncode == 2, refused.stderr
        assert SANDBOX_ONLY in refused.stderr
    status = json.loads(runbook(workdir, "status", run_id, "--json").stdout)
    assert status["status"] == "waiting" and status["sandbox"] is True
    assert status["steps"]["contain"]["outcome"] is None

    approved = runbook(workdir, "approve", run_id, "approve", "--as", "bob", "--sandbox")
    assert approved.returncode == 0, approved.stderr
    status = json.loads(runbook(workdir, "status", run_id, "--json").stdout)
    assert status["steps"]["contain"]["outcome"] == "succeeded"
    assert status["steps"]["ticket"]["output"]["key"] == "SEC-1"


def test_a_real_run_is_never_carried_on_against_the_fakes(workdir: Path) -> None:
    started = runbook(workdir, "run", "gated", "--as", "alice")
    assert started.returncode == 5, started.stderr
    run_id = started.stdout.strip().splitlines()[-1]
    refused = runbook(workdir, "approve", run_id, "ok", "--as", "bob", "--sandbox")
    assert refused.returncode == 2
    assert "is not a sandbox run" in refused.stderr and "without --sandbox" in refused.stderr
    assert runbook(workdir, "approve", run_id, "ok", "--as", "bob").returncode == 0


def test_resume_all_leaves_runs_of_the_other_setting_alone(workdir: Path) -> None:
    started = runbook(workdir, "run", "gated", "--as", "alice", "--sandbox")
    assert started.returncode == 5, started.stderr
    resumed = runbook(workdir, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert SANDBOX_ONLY in resumed.stderr and "left alone" in resumed.stderr
    run_id = started.stdout.strip().splitlines()[-1]
    cancelled = runbook(workdir, "cancel", run_id, "--as", "alice", "--sandbox")
    assert cancelled.returncode == 0, cancelled.stderr
    status = json.loads(runbook(workdir, "status", run_id, "--json").stdout)
    assert status["status"] == "cancelled"


def test_a_connector_with_real_settings_is_named_as_not_simulated(workdir: Path) -> None:
    (workdir / ".env").write_text("RUNBOOK_VIRUSTOTAL_API_KEY=vt-key-of-a-real-account-0123\n")
    started = runbook(workdir, "run", "gated", "--as", "alice", "--sandbox")
    assert started.returncode == 5, started.stderr
    notice = next(line for line in started.stderr.splitlines() if "sandbox:" in line)
    assert "virustotal has real settings and is NOT simulated" in notice
    assert "nothing real is touched" not in notice
    assert "vt-key-of-a-real-account" not in started.stderr
