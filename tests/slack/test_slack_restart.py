"""`runbook serve` killed while a gate waits; a click to the new process finishes the run."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_harness import (
    ALICE,
    BOB,
    CAROL,
    SOC,
    actions_of,
    approval_posts,
    audit_records,
    click_body,
    command_body,
    slack_env,
    text_of,
    write_runbooks,
)

from bot.sandbox import Sandbox

pytestmark = pytest.mark.slow

GATED = """
name: gated
title: Needs two people
channel: "#soc-incidents"
steps:
  - id: before
    uses: core.echo
    with: {ready: true}
  - id: ask
    approval:
      prompt: "Go ahead?"
      approvers: {users: [U0BOB, U0CAROL]}
      min_approvals: 2
      timeout: 2h
  - id: after
    uses: core.echo
    with: {done: true}
"""


class Serve:
    """One `runbook serve --port 0` process; its URL is read from its log."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", "0"],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = self._wait_for_url()
        self._wait_healthy()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            self.lines.put(line)

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=deadline - time.monotonic())
            except queue.Empty:
                break
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                return found.group(1)
        raise AssertionError("runbook serve did not start:\n" + "".join(self.log))

    def _wait_healthy(self) -> None:
        for _ in range(1000):  # bounded: /healthz answers 503 until runs are restored
            if httpx.get(self.url + "/healthz").status_code == 200:
                return
            time.sleep(0.02)
        raise AssertionError("never healthy:\n" + "".join(self.log))

    def post(self, sandbox: Sandbox, body: bytes) -> httpx.Response:
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sandbox.slack.sign(body)}
        return httpx.post(self.url + "/slack/events", content=body, headers=headers, timeout=10)

    def kill(self) -> None:
        self.proc.kill()
        self._reap(10)

    def terminate(self) -> int:
        """SIGTERM: a graceful stop (uvicorn re-raises the signal once it is done)."""
        self.proc.send_signal(signal.SIGTERM)
        return self._reap(40)

    def _reap(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code


def test_restart_while_a_gate_waits(sandbox: Sandbox, tmp_path: Path) -> None:
    fake = sandbox.slack
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOK_", "SLACK_"))}
    env.update(
        slack_env(
            sandbox, write_runbooks(tmp_path / "runbooks", {"g.yaml": GATED}), tmp_path / "data"
        )
    )
    first = Serve(env, tmp_path)
    second: Serve | None = None
    try:
        body, _ = command_body(sandbox, "run gated", user=ALICE)
        assert first.post(sandbox, body).status_code == 200
        fake.wait_until(lambda: len(approval_posts(fake)) == 1, 20)
        value = actions_of(approval_posts(fake)[0].args["blocks"])[0]["value"]
        gate_ts = next(m["ts"] for m in fake.messages(SOC) if actions_of(m.get("blocks")))

        assert (
            first.post(
                sandbox,
                click_body(sandbox, "approval_approve", value, user=BOB, message_ts=gate_ts),
            ).status_code
            == 200
        )
        fake.wait_until(lambda: "1 more approval needed" in text_of(message(fake, gate_ts)), 20)

        first.kill()  # no goodbye: the gate must survive in the data directory
        second = Serve(env, tmp_path)
        assert "Slack is on" in "".join(second.log)
        assert (
            second.post(
                sandbox,
                click_body(sandbox, "approval_approve", value, user=CAROL, message_ts=gate_ts),
            ).status_code
            == 200
        )
        fake.wait_until(
            lambda: "Approved* by <@U0BOB>, <@U0CAROL>" in text_of(message(fake, gate_ts)), 20
        )
        assert actions_of(message(fake, gate_ts)) == []
        thread_ts = next(m["ts"] for m in fake.messages(SOC) if "thread_ts" not in m)
        fake.wait_until(
            lambda: any(
                m.get("thread_ts") == thread_ts and "succeeded in" in m.get("text", "")
                for m in fake.messages(SOC)
            ),
            20,
        )
        assert second.terminate() in (0, -signal.SIGTERM)
        assert "Finished server process" in "".join(second.log)
        second = None
    finally:
        for proc in (first, second):
            if proc is not None and proc.proc.poll() is None:
                proc.kill()
    finished = audit_records(tmp_path / "data", "run.finished")
    assert [r["data"]["status"] for r in finished] == ["succeeded"]
    decided = audit_records(tmp_path / "data", "approval.decided")
    assert [r["actor"] for r in decided] == ["slack:U0BOB", "slack:U0CAROL"]
    # one root message and one approval message across both processes
    assert len([m for m in fake.messages(SOC) if "thread_ts" not in m]) == 1
    assert len(approval_posts(fake)) == 1


def message(fake: Any, ts: str) -> list[dict[str, Any]]:
    found = next((m for m in fake.messages(SOC) if m["ts"] == ts), {})
    return list(found.get("blocks") or [])
