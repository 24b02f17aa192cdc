"""How runs stop, with real processes: SIGTERM to ``serve``, Ctrl-C / SIGTERM to a
foreground ``runbook run``, and an audit log that hits a full disk.

The ``testkit.hold`` action is a vendor call that stays in flight until the
test creates a release file; it logs ``begin``/``end`` effects and signals
``begin`` on a FIFO, so the tests wait for observable facts, never for time.
Once stopping begins nothing new may start; the call in flight ends and is
recorded; the next start carries the run on without a recovery gate.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.audit.verify import verify
from tests.plugins.install import PLUGINS, install_testkit, pythonpath
from tests.web.web_harness import ServeProcess, base_env

pytestmark = pytest.mark.slow

WAIT = 30.0
TWO = """
name: two
steps:
  - id: first
    uses: testkit.hold
    with: {key: first}
  - id: second
    uses: testkit.ticket
    with: {key: second}
"""
SWEEP = """
name: sweep
steps:
  - id: sweep
    uses: testkit.hold
    for_each: "['h1', 'h2', 'h3']"
    max_parallel: 1
    with: {key: "sweep-{{ item }}"}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_testkit(tmp_path_factory.mktemp("site"))


@dataclass
class Workdir:
    path: Path
    site: Path
    reader: int
    writer: int

    @property
    def release(self) -> Path:
        return self.path / "release"

    @property
    def data(self) -> Path:
        return self.path / "data"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
        env.update(
            {
                "PYTHONPATH": pythonpath(self.site),
                "RUNBOOK_TESTKIT_LOG": str(self.path / "effects.log"),
                "RUNBOOK_TESTKIT_SIGNAL": str(self.path / "signal.fifo"),
                "RUNBOOK_TESTKIT_RELEASE": str(self.release),
                **extra,
            }
        )
        return env

    def cli(self, *args: str, program: list[str] | None = None) -> list[str]:
        head = program or [sys.executable, "-m", "bot"]
        return [*head, "--runbooks", str(self.path / "runbooks"), "--data", str(self.data), *args]

    def wait_begun(self, count: int = 1) -> None:
        """Wait until ``count`` calls have begun (one FIFO byte each)."""
        deadline = time.monotonic() + WAIT
        seen = 0
        while seen < count:
            ready, _, _ = select.select(
                [self.reader], [], [], max(0.0, deadline - time.monotonic())
            )
            if not ready:
                raise AssertionError(f"only {seen} of {count} calls began")
            seen += len(os.read(self.reader, 64))

    def effects(self) -> list[tuple[str, str]]:
        path = self.path / "effects.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [(line.split()[0], line.split()[3]) for line in lines]

    def records(self) -> list[dict[str, Any]]:
        text = (self.data / "audit.jsonl").read_text()
        return [json.loads(line) for line in text.splitlines()]

    def resume(self, run_id: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.cli("--json", "resume", run_id),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=WAIT,
        )


@pytest.fixture
def work(tmp_path: Path, site: Path) -> Iterator[Workdir]:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "two.yaml").write_text(TWO, encoding="utf-8")
    (tmp_path / "runbooks" / "sweep.yaml").write_text(SWEEP, encoding="utf-8")
    fifo = tmp_path / "signal.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(fifo, os.O_WRONLY)  # so reads wait rather than see EOF
    try:
        yield Workdir(tmp_path, site, reader, writer)
    finally:
        os.close(reader)
        os.close(writer)


class Lines:
    """Reads a text stream in a thread; tests wait for the line they need."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in iter(stream.readline, ""):
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_for(self, text: str) -> str:
        deadline = time.monotonic() + WAIT
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise AssertionError(f"{text!r} not seen in:\n" + "\n".join(self.lines))
                self._cond.wait(left)

    def text(self) -> str:
        self._thread.join(WAIT)
        return "\n".join(self.lines)


@contextlib.contextmanager
def running(
    work: Workdir, name: str, program: list[str] | None = None, **env: str
) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    """``runbook run NAME`` in a process; killed if the test leaves it running."""
    proc = subprocess.Popen(
        work.cli("run", name, "--as", "tester", program=program),
        env=work.env(**env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr, stdout = Lines(proc.stderr), Lines(proc.stdout)
    try:
        yield proc, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=WAIT)
        stderr.text(), stdout.text()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def run_id_of(work: Workdir) -> str:
    ids = {r["run_id"] for r in work.records() if r["event"] == "run.started"}
    assert len(ids) == 1, ids
    return ids.pop()


def assert_resumes_without_a_gate(work: Workdir, run_id: str) -> None:
    done = work.resume(run_id)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    records = work.records()
    assert not [r for r in records if r["event"] == "approval.requested"]
    assert [e for e in work.effects() if e[1] == "second"] == [("ticket", "second")]
    assert verify(str(work.data / "audit.jsonl")).ok


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_first_interrupt_lets_the_call_in_flight_end_and_starts_nothing_new(
    work: Workdir, signum: int, code: int
) -> None:
    with running(work, "two") as (proc, stderr):
        work.wait_begun()  # `first` is in flight
        proc.send_signal(signum)
        stderr.wait_for("runbook: stopping:")
        work.release.touch()  # the vendor answers only now, after the signal
        assert proc.wait(timeout=WAIT) == code
    run_id = run_id_of(work)
    assert f"carry on with `runbook resume {run_id}`" in stderr.text()
    # the call in flight ended and was recorded; the next step never started
    assert work.effects() == [("begin", "first"), ("end", "first")]
    events = [(r["event"], r["step"]) for r in work.records()]
    assert ("step.succeeded", "first") in events
    assert ("step.started", "second") not in events
    assert_resumes_without_a_gate(work, run_id)


def test_second_interrupt_stops_at_once(work: Workdir) -> None:
    with running(work, "two") as (proc, stderr):
        work.wait_begun()
        proc.send_signal(signal.SIGINT)
        stderr.wait_for("runbook: stopping:")
        proc.send_signal(signal.SIGINT)  # the release file never comes: only a force ends it
        assert proc.wait(timeout=WAIT) == 130
    assert "runbook: interrupted" in stderr.text()
    assert work.effects() == [("begin", "first")]
    # cut off mid-call: the next start asks a person, as after a crash
    run_id = run_id_of(work)
    waiting = work.resume(run_id)
    assert waiting.returncode == 5, waiting.stderr
    assert json.loads(waiting.stdout)["steps"]["first"]["waiting"]["recovery"]


def test_a_full_disk_ends_the_run_command_and_starts_no_further_item(work: Workdir) -> None:
    marker = work.path / "disk-full"
    program = [sys.executable, str(PLUGINS / "diskfull.py")]
    with running(work, "sweep", program, RUNBOOK_TEST_DISK_FULL=str(marker)) as (proc, stderr):
        work.wait_begun()  # item h1 is in flight
        marker.touch()  # the disk fills up: recording h1's outcome fails
        work.release.touch()  # and h2, h3 would go through at once if they started
        code = proc.wait(timeout=WAIT)
    assert code == 1
    text = stderr.text()
    assert "cannot write the audit log" in text and "the disk is full" in text, text
    assert "Traceback" not in text
    assert work.effects() == [("begin", "sweep-h1"), ("end", "sweep-h1")]
    # the data directory was released: the next command takes it at once, and asks
    # about h1, whose outcome could not be recorded
    run_id = run_id_of(work)
    waiting = work.resume(run_id)
    assert waiting.returncode == 5, waiting.stderr
    assert json.loads(waiting.stdout)["steps"]["sweep"]["waiting"]["recovery"]
    assert verify(str(work.data / "audit.jsonl")).ok


def test_serve_on_sigterm_lets_the_call_in_flight_end_and_starts_nothing_new(
    work: Workdir,
) -> None:
    env = base_env(work.path, **work.env())
    with ServeProcess(work.path, env) as serve:
        with serve.client() as client:
            answer = client.post("/api/runs", json={"runbook": "two", "inputs": {}})
        assert answer.status_code == 201, answer.text
        run_id = str(answer.json()["id"])
        work.wait_begun()
        assert serve.proc is not None and serve.logs is not None
        serve.proc.send_signal(signal.SIGTERM)
        serve.logs.wait_for(lambda r: str(r.get("message", "")).startswith("stopping:"))
        work.release.touch()
        assert serve.stop() == 0
    assert work.effects() == [("begin", "first"), ("end", "first")]
    events = [(r["event"], r["step"]) for r in work.records()]
    assert ("step.succeeded", "first") in events
    assert ("step.started", "second") not in events
    assert_resumes_without_a_gate(work, run_id)
