"""The README's two set-up commands, as written, on a fresh clone of the repository.

``make run`` runs in the background until ``/healthz`` answers and a signed
sample alert has produced a finished run; then ``make test``. Inside the
clone, ``make test`` runs a quick subset (PYTEST_ADDOPTS) so the suite does
not run twice, and this test does not run itself again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NESTED = "RUNBOOK_CLONE_TEST_NESTED"
PORT = 3000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get(NESTED) == "1", reason="already inside the clone test"),
    pytest.mark.skipif(
        shutil.which("make") is None or shutil.which("git") is None, reason="needs make and git"
    ),
    pytest.mark.timeout(900),
]


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, object] | list[object]]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (urllib.error.URLError, OSError):
        return 0, {}  # not listening yet


def _wait(predicate, limit: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def test_readme_commands_work_on_a_fresh_clone(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    secret = "clone-test-alert-secret-0123456789"
    token = "clone-test-api-token-0123456789"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RUNBOOK_", "SLACK_", "VIRTUAL_ENV", "PYTEST"))
    }
    env.update(
        {
            NESTED: "1",
            "RUNBOOK_ALERT_SECRET_CROWDSTRIKE": secret,
            "RUNBOOK_API_TOKENS": f"clone:{token}",
        }
    )
    server = subprocess.Popen(
        ["make", "run"],
        cwd=clone,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{PORT}"
    try:
        _wait(
            lambda: server.poll() is not None or _get(f"{base}/healthz")[0] == 200,
            600,
            "make run to serve /healthz",
        )
        assert server.poll() is None, "make run exited early"
        body = json.dumps(
            {
                "display_name": "Clone test",
                "severity": 75,
                "status": "new",
                "composite_id": "clone:1",
                "device": {"hostname": "web-2"},
            }
        ).encode()
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            f"{base}/alerts/crowdstrike",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Runbook-Signature": f"sha256={signature}",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 202
            runs = json.loads(answer.read())["runs"]
        assert runs, "the sample alert started no run"
        run_id = runs[0]["id"]

        def finished() -> bool:
            status, doc = _get(f"{base}/api/runs/{run_id}", token)
            return (
                status == 200
                and isinstance(doc, dict)
                and doc.get("status") in ("succeeded", "failed", "rejected", "cancelled")
            )

        _wait(finished, 120, "the alert's run to finish")
        assert _get(f"{base}/api/runs/{run_id}", token)[1]["status"] == "succeeded"  # type: ignore[index]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        assert server.stdout is not None
        server.stdout.close()
    env["PYTEST_ADDOPTS"] = (
        "-q -k 'test_configuration_reference or test_records_follow_the_contract'"
    )
    tested = subprocess.run(
        ["make", "test"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-3000:]
    assert "passed" in tested.stdout
