"""``runbook run --dry-run`` (SPEC §3): every step renders, even downstream of a call not made.

Read-only calls are made for real, so the connectors point at the sandbox's
fake vendor APIs; mutating calls are only printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.sandbox import Sandbox

pytestmark = pytest.mark.slow

SHIPPED = Path(__file__).resolve().parents[2] / "runbooks"

EICAR_SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"

# the inputs each shipped runbook needs (its required ones, and some that take other branches)
SHIPPED_INPUTS: dict[str, list[str]] = {
    "alert-escalation": ["host=web-1", "severity=90", "title=Reverse shell"],
    "critical-patch-rollout": ["hosts=web-1,web-2", "advisory=CVE-2024-3094"],
    "defender-isolate-and-collect": ["host=web-1"],
    "isolate-host": ["host=web-1", "reason=beaconing"],
    "phishing-triage": [
        "user=alice@example.com",
        f"hashes={EICAR_SHA256}",
        "domains=evil.example",
        "clicked=yes",
    ],
}

EDGE = """
name: edge
steps:
  - id: contain
    uses: crowdstrike.contain_host
    with: {device_id: 0123456789abcdef0123456789abcdef}
    compensate:
      uses: crowdstrike.lift_containment
      with: {device_id: "{{ steps.contain.output.device_id }}"}
  - id: lift_whole
    uses: crowdstrike.lift_containment
    with: {device_id: "{{ steps.contain.output.device_id }}"}
  - id: lift_text
    uses: crowdstrike.lift_containment
    with: {device_id: "x{{ steps.contain.output.device_id }}"}
  - id: launch
    uses: awx.launch_job
    with: {template_id: 7}
  - id: watch
    uses: awx.get_job
    with: {job_id: "{{ steps.launch.output.job_id }}", require_success: true}
    until: output.finished
    poll: {every: 1s, timeout: 30s}
  - id: when
    if: steps.contain.output.status == 'contained'
    uses: core.echo
    with: {n: "{{ steps.contain.output.count }}"}
  - id: when_not
    if: not steps.contain.output.found
    uses: core.echo
    with: {n: 1}
  - id: each
    for_each: steps.contain.output.hosts
    uses: core.echo
    with: {h: "{{ item }}", i: "{{ index }}"}
  - id: each_mutating
    for_each: steps.contain.output.hosts
    uses: crowdstrike.contain_host
    with: {device_id: "{{ item.id }}"}
  - id: each_note
    for_each: steps.contain.output.hosts
    notify: {text: "host {{ item }}"}
  - id: poll_real
    uses: core.echo
    with: {status: pending}
    until: output.status == 'contained'
    poll: {every: 10s, timeout: 10m}
  - id: boom
    needs: [poll_real]
    if: inputs.fail
    uses: core.fail
    with: {message: boom}
inputs:
  fail: {type: boolean, default: false}
"""

BAD = """
name: bad
steps:
  - id: launch
    uses: awx.launch_job
    with: {template_id: 5}
  - id: watch
    uses: awx.get_job
    with: {job_id: "{{ steps.launch.output.job_id }}", require_success: "{{ 'maybe' }}"}
"""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as fakes:
        yield fakes


def runbook(
    sandbox: Sandbox, runbooks: Path, data: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    env.pop("SLACK_BOT_TOKEN", None)
    env.update(sandbox.env)
    env["RUNBOOK_GROUPS"] = "soc=alice;ops=alice"
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "--runbooks", str(runbooks), "--data", str(data), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_every_shipped_runbook_is_covered() -> None:
    names = set()
    for path in SHIPPED.iterdir():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("name: "):
                names.add(line.split(":", 1)[1].strip())
                break
    assert names == set(SHIPPED_INPUTS)


@pytest.mark.parametrize("name", sorted(SHIPPED_INPUTS))
def test_shipped_runbook_dry_runs_to_exit_0(sandbox: Sandbox, tmp_path: Path, name: str) -> None:
    args = ["run", name, "--dry-run", "--as", "alice"]
    for assignment in SHIPPED_INPUTS[name]:
        args += ["-i", assignment]
    proc = runbook(sandbox, SHIPPED, tmp_path / "data", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "would call" in proc.stdout
    assert "✗" not in proc.stdout and "did not render" not in proc.stderr
    assert not (tmp_path / "data" / "audit.jsonl").exists()


def test_critical_patch_rollout_watches_the_job_it_did_not_launch(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    proc = runbook(
        sandbox,
        SHIPPED,
        tmp_path / "data",
        "run",
        "critical-patch-rollout",
        "--dry-run",
        "--as",
        "alice",
        "-i",
        "hosts=web-1",
        "-i",
        "advisory=CVE-2024-3094",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "succeeded"
    steps = doc["steps"]
    assert steps["watch"]["outcome"] == "succeeded"
    assert steps["watch"]["output"] == "<steps.watch.output…>"
    assert steps["page"]["outcome"] == "skipped"  # no failure, so nobody is paged
    assert 'would call awx.get_job {"job_id": "<steps.launch.output.job_id…>"' in proc.stderr


def test_placeholders_flow_into_typed_arguments_ifs_loops_and_polls(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    books = tmp_path / "runbooks"
    books.mkdir()
    (books / "edge.yaml").write_text(EDGE, encoding="utf-8")
    proc = runbook(sandbox, books, tmp_path / "data", "run", "edge", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = json.loads(proc.stdout)["steps"]
    assert {sid: step["outcome"] for sid, step in steps.items()} == {
        **{sid: "succeeded" for sid in steps},
        "boom": "skipped",
    }
    out = proc.stderr
    # typed and patterned arguments: printed with the placeholder, not refused
    assert 'lift_whole would call crowdstrike.lift_containment {"device_id": "<steps.contain' in out
    assert '"device_id": "x<steps.contain.output.device_id…>"' in out
    # a read-only call fed by a placeholder is printed too, and its until counts as true
    assert "watch would call awx.get_job" in out and "did not make" in out
    assert steps["watch"]["output"] == "<steps.watch.output…>"
    # an if over a placeholder runs the step (either way round)
    assert steps["when"]["outcome"] == steps["when_not"]["outcome"] == "succeeded"
    # a for_each over a placeholder has one placeholder item
    assert len(steps["each"]["output"]) == 1
    assert '"h": "<steps.contain.output.hosts[0]…>", "i": 0' in out
    assert len(steps["each_mutating"]["output"]) == 1
    assert "host <steps.contain.output.hosts[0]…>" in out
    # a real answer that is not yet what the step waits for is not polled for ten minutes
    assert "poll_real would poll until output.status == 'contained'" in out
    assert steps["poll_real"]["output"] == {"status": "pending"}


def test_compensation_using_its_steps_own_output_renders(sandbox: Sandbox, tmp_path: Path) -> None:
    books = tmp_path / "runbooks"
    books.mkdir()
    (books / "edge.yaml").write_text(EDGE, encoding="utf-8")
    proc = runbook(sandbox, books, tmp_path / "data", "run", "edge", "--dry-run", "-i", "fail=yes")
    # the run fails for real (core.fail is read-only and was called), but the compensation rendered
    assert proc.returncode == 1
    assert "compensating contain: crowdstrike.lift_containment" in proc.stdout
    assert "compensated contain" in proc.stdout
    assert "compensation of contain failed" not in proc.stdout
    assert "boom did not render or failed" in proc.stderr


def test_a_bad_argument_without_a_placeholder_still_fails(sandbox: Sandbox, tmp_path: Path) -> None:
    books = tmp_path / "runbooks"
    books.mkdir()
    (books / "bad.yaml").write_text(BAD, encoding="utf-8")
    proc = runbook(sandbox, books, tmp_path / "data", "run", "bad", "--dry-run")
    assert proc.returncode == 1
    assert "require_success: Input should be a valid boolean" in proc.stdout
    assert "job_id" not in proc.stdout.split("bad arguments", 1)[1]
    assert "watch did not render or failed" in proc.stderr
