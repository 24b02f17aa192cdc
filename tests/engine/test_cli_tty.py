"""``runbook run`` in a real pseudo-terminal: the live timeline and the question asked in place."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

RUNBOOK = """
name: ask
steps:
  - id: look
    uses: core.echo
    with: {host: web-1}
  - id: approve
    approval:
      prompt: "Contain web-1?"
      approvers: {users: [alice, bob]}
      allow_requester: true
  - id: contain
    uses: core.echo
    with: {done: true}
"""


def read_until(fd: int, needle: bytes, limit: float = 30.0) -> bytes:
    """Read the terminal until ``needle`` shows up (bounded by ``limit`` seconds)."""
    seen = b""
    deadline = time.monotonic() + limit
    while needle not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, seen.decode(errors="replace")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    return seen


def start(tmp_path: Path, user: str) -> tuple[subprocess.Popen[bytes], int]:
    if not (tmp_path / "runbooks").exists():
        (tmp_path / "runbooks").mkdir()
        (tmp_path / "runbooks" / "ask.yaml").write_text(RUNBOOK, encoding="utf-8")
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    env["TERM"] = "xterm-256color"
    env["COLUMNS"] = "120"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot",
            "--runbooks",
            str(tmp_path / "runbooks"),
            "--data",
            str(tmp_path / "data"),
            "run",
            "ask",
            "--as",
            user,
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    return proc, master


def test_eligible_person_is_asked_in_the_terminal_and_the_run_finishes(tmp_path: Path) -> None:
    proc, master = start(tmp_path, "alice")
    try:
        screen = read_until(master, b"Approve? [y]es")
        assert b"Contain web-1?" in screen
        # while the question is open, the data directory is free for others
        status = subprocess.run(
            [sys.executable, "-m", "bot", "--data", str(tmp_path / "data"), "runs", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert '"waiting"' in status.stdout
        os.write(master, b"y\n")
        screen += read_until(master, b"succeeded")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert b"contain" in screen


def test_requester_who_may_only_reject_is_asked_to_reject(tmp_path: Path) -> None:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "ask.yaml").write_text(
        RUNBOOK.replace("allow_requester: true", "allow_requester: false"),
        encoding="utf-8",
    )
    proc, master = start(tmp_path, "alice")
    try:
        read_until(master, b"Reject? [y/N]")
        os.write(master, b"y\n")
        screen = read_until(master, b"rejected")
        assert proc.wait(timeout=60) == 3, screen
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_someone_who_is_not_eligible_gets_the_run_id_and_exit_5(tmp_path: Path) -> None:
    proc, master = start(tmp_path, "mallory")
    try:
        screen = read_until(master, b"runbook approve")
        assert proc.wait(timeout=60) == 5
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert b"r-" in screen
