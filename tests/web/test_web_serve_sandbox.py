"""``runbook serve`` and the sandbox: what it says at start, and runs of the other setting."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from web_harness import (
    ALERT_SECRET,
    OTHER_TOKEN,
    RUNBOOK,
    WAIT,
    ServeProcess,
    base_env,
    post_alert,
    write_runbooks,
)

ROOT = Path(__file__).resolve().parents[2]
GATED = """
name: gated
steps:
  - id: ask
    approval: {prompt: "go?", approvers: {users: [bob]}}
  - id: after
    uses: core.echo
    with: {done: web-1}
"""


def test_the_sandbox_start_calls_no_simulated_connector_unconfigured(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "runbooks", tmp_path / "runbooks")
    env = base_env(
        tmp_path, RUNBOOK_API_TOKENS="ci:short", RUNBOOK_ALERT_SECRET_CROWDSTRIKE=ALERT_SECRET
    )
    with ServeProcess(tmp_path, env, "--sandbox") as serve, serve.client(token=None) as client:
        assert serve.logs is not None
        serve.logs.wait_for(lambda r: str(r["message"]).startswith("SANDBOX:"))
        messages = serve.logs.messages()
        # docs/alerts.md's signed example starts the shipped runbooks it names
        docs = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
        body = re.search(r"^body='(.*)'$", docs, re.M)
        assert body is not None
        answer = post_alert(client, "crowdstrike", json.loads(body.group(1)))
    assert answer.status_code == 202
    started = answer.json()
    assert "errors" not in started and started["matched"] == 2, started
    assert sorted(run["runbook"] for run in started["runs"]) == ["alert-escalation", "isolate-host"]
    assert not [m for m in messages if "is not configured" in m], messages
    ready = next(m for m in messages if m.startswith("ready:"))
    assert re.fullmatch(r"ready: \d+ runbooks, 0 unfinished runs restored \(sandbox\)", ready)
    warning = next(m for m in messages if "API token of 'ci'" in m)
    assert "has 5 characters (minimum 16): easy to guess" in warning


def test_serve_without_the_sandbox_leaves_a_sandbox_run_alone(tmp_path: Path) -> None:
    write_runbooks(tmp_path / "runbooks", {"gated": GATED})
    env = base_env(tmp_path)
    started = subprocess.run(
        [RUNBOOK, "run", "gated", "--as", "alice", "--sandbox"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert started.returncode == 5, started.stderr
    run_id = started.stdout.strip().splitlines()[-1]
    with ServeProcess(tmp_path, env) as serve, serve.client(token=OTHER_TOKEN) as bob:
        assert serve.logs is not None
        left = serve.logs.wait_for(lambda r: "left alone" in str(r["message"]))
        assert f"run {run_id} is a sandbox run" in str(left["message"])
        assert "ready: 1 runbook, 1 unfinished run restored" in serve.logs.messages()
        answer = bob.post(f"/api/runs/{run_id}/steps/ask/decision", json={"decision": "approve"})
        assert answer.status_code == 409
        assert "continue it with --sandbox / serve --sandbox" in answer.json()["error"]
        assert bob.post(f"/api/runs/{run_id}/cancel").status_code == 409
        document = bob.get(f"/api/runs/{run_id}").json()
    assert document["status"] == "waiting" and document["sandbox"] is True
    assert document["steps"]["after"]["outcome"] is None
