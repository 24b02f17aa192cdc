"""A question open in one terminal ends when the gate is settled without it (SPEC §3, §1.4).

The foreground ``run`` asks in a real pseudo-terminal and releases the data
directory meanwhile; a second terminal decides or cancels, or the gate's
timeout comes. Nobody types in the first terminal: it must notice by itself
and end with the run's exit code.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

RUNBOOKS = {
    "open.yaml": """
name: open
steps:
  - id: ok
    approval: {prompt: "Go ahead?"}
  - id: after
    uses: core.echo
    with: {done: true}
""",
    "quorum.yaml": """
name: quorum
steps:
  - id: ok
    approval:
      prompt: "Go ahead?"
      approvers: {users: [alice, bob, carol]}
      min_approvals: 2
  - id: after
    uses: core.echo
    with: {done: true}
""",
    "timeout.yaml": """
name: timeout
steps:
  - id: ok
    approval: {prompt: "Go ahead?", timeout: 2s}
  - id: after
    uses: core.echo
    with: {done: true}
""",
    "escalate.yaml": """
name: escalate
steps:
  - id: ok
    approval:
      prompt: "Go ahead?"
      approvers: {users: [alice]}
      escalate: {after: 2s, to: {users: [bob]}}
  - id: after
    uses: core.echo
    with: {done: true}
""",
}


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    clean["TERM"] = "dumb"
    clean["COLUMNS"] = "120"
    return clean


class Terminal:
    """``runbook`` in a pseudo-terminal; ``screen`` is everything it printed."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        folder = tmp_path / "runbooks"
        if not folder.exists():
            folder.mkdir()
            for name, text in RUNBOOKS.items():
                (folder / name).write_text(text, encoding="utf-8")
        self.tmp_path = tmp_path
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", *self.base(), *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env(),
            close_fds=True,
        )
        os.close(slave)
        self.screen = b""

    def base(self) -> list[str]:
        return [
            "--runbooks",
            str(self.tmp_path / "runbooks"),
            "--data",
            str(self.tmp_path / "data"),
        ]

    def read_until(self, needle: bytes, limit: float = 30.0, *, times: int = 1) -> bytes:
        deadline = time.monotonic() + limit
        while self.screen.count(needle) < times:
            remaining = deadline - time.monotonic()
            assert remaining > 0, self.screen.decode(errors="replace")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.screen += chunk
        return self.screen

    def wait(self, limit: float) -> int:
        """The exit code, within ``limit`` seconds (reading the terminal meanwhile)."""
        deadline = time.monotonic() + limit
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, self.screen.decode(errors="replace")
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                with contextlib.suppress(OSError):
                    self.screen += os.read(self.master, 4096)
        return self.proc.returncode

    def run_id(self) -> str:
        match = re.search(rb"r-[0-9a-z]{16}", self.screen)
        assert match, self.screen.decode(errors="replace")
        return match.group().decode()

    def other(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A command in a second terminal (no terminal: stdin is not a tty)."""
        return subprocess.run(
            [sys.executable, "-m", "bot", *self.base(), *args],
            env=env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminals(tmp_path: Path) -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def start(*args: str) -> Terminal:
        term = Terminal(tmp_path, *args)
        opened.append(term)
        return term

    yield start
    for term in opened:
        term.close()


def test_cancel_from_a_second_terminal_ends_the_question_with_exit_4(
    terminals: Callable[..., Terminal],
) -> None:
    first = terminals("run", "open", "--as", "zed")
    first.read_until(b"Reject? [y/N]")
    cancel = first.other("cancel", first.run_id(), "--as", "zed")
    assert cancel.returncode == 0, cancel.stderr
    started = time.monotonic()
    assert first.wait(limit=15) == 4
    assert time.monotonic() - started < 10
    assert b"cancelled by cli:zed" in first.screen


def test_approval_from_a_second_terminal_carries_the_first_on(
    terminals: Callable[..., Terminal],
) -> None:
    first = terminals("run", "open", "--as", "zed")
    first.read_until(b"Reject? [y/N]")
    approve = first.other("approve", first.run_id(), "ok", "--as", "bob")
    assert approve.returncode == 0, approve.stderr
    assert first.wait(limit=15) == 0
    screen = first.screen
    assert b"cli:bob approved (1/1)" in screen  # what the other terminal did is shown here
    assert b"succeeded" in screen
    status = first.other("status", first.run_id(), "--json")
    assert '"status": "succeeded"' in status.stdout


def test_a_vote_short_of_the_quorum_keeps_the_question_open(
    terminals: Callable[..., Terminal],
) -> None:
    first = terminals("run", "quorum", "--as", "alice")
    first.read_until(b"Reject? [y/N]")
    vote = first.other("approve", first.run_id(), "ok", "--as", "bob")
    assert vote.returncode == 5, vote.stderr
    first.read_until(b"cli:bob approved (1/2)")
    first.read_until(b"Reject? [y/N]: ", limit=10, times=2)  # asked again, still open
    assert first.proc.poll() is None
    # the second approval completes the quorum from a third terminal
    assert first.other("approve", first.run_id(), "ok", "--as", "carol").returncode == 0
    assert first.wait(limit=15) == 0


def test_the_gate_timeout_fires_while_the_question_is_open(
    terminals: Callable[..., Terminal],
) -> None:
    first = terminals("run", "timeout", "--as", "zed")
    first.read_until(b"Reject? [y/N]")
    assert first.wait(limit=15) == 3  # on_timeout: reject -> expired, run rejected
    assert b"expired" in first.screen
    status = first.other("status", first.run_id(), "--json")
    assert '"status": "rejected"' in status.stdout


def test_an_escalation_fires_while_the_question_is_open(terminals: Callable[..., Terminal]) -> None:
    first = terminals("run", "escalate", "--as", "alice")
    first.read_until(b"Reject? [y/N]")
    first.read_until(b"escalated to bob", limit=15)
    first.read_until(b"Reject? [y/N]", limit=10, times=2)  # asked again after it
    # bob, eligible only since the escalation, decides from a second terminal
    assert first.other("approve", first.run_id(), "ok", "--as", "bob").returncode == 0
    assert first.wait(limit=15) == 0


def test_end_of_input_leaves_the_run_waiting_and_prints_its_id(
    terminals: Callable[..., Terminal],
) -> None:
    first = terminals("run", "open", "--as", "zed")
    first.read_until(b"Reject? [y/N]")
    os.write(first.master, b"\x04")  # ^D
    assert first.wait(limit=15) == 5
    assert first.screen.rstrip().endswith(first.run_id().encode())


HOLD = """
import sys, time
from pathlib import Path
from bot.store.lock import DataDirLock
lock = DataDirLock(Path(sys.argv[1]))
lock.acquire({"command": "holder"})
print("held", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
"""


def test_an_answer_given_while_another_process_briefly_owns_the_data_is_recorded(
    terminals: Callable[..., Terminal],
) -> None:
    first = terminals("run", "open", "--as", "bob")
    first.read_until(b"Reject? [y/N]")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(first.tmp_path / "data"), "2"],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        os.write(first.master, b"y\n")
        assert first.wait(limit=20) == 3  # waited for the holder to go, then rejected
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert b"cli:bob rejected (0/1)" in first.screen
