"""``runbook demo`` end to end, its approval question answered on standard input."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def demo(answer: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOK_", "SLACK_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", "demo"],
        input=answer,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )


def test_demo_approved_contains_the_host_and_verifies_the_audit_log() -> None:
    proc = demo("y\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "SANDBOX" in out
    assert "202 accepted" in out and "isolate-host" in out
    assert "Approve the containment? [y/n]: y" in out
    assert "✓ approve approved by cli:" in out
    assert "fake Falcon now reports web-1 as: contained" in out
    assert "hash chain verified" in out
    assert "stopped the service and the fake vendors" in out
    assert "Traceback" not in proc.stderr


def test_demo_rejected_contains_nothing_and_exits_1() -> None:
    proc = demo("n\n")
    assert proc.returncode == 1
    assert "rejected" in proc.stdout
    assert "fake Falcon now reports web-1 as: normal" in proc.stdout
    assert "stopped the service and the fake vendors" in proc.stdout
