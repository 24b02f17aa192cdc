"""Library noise never reaches the terminal (SPEC §3: errors are one line on stderr)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RUNBOOK = """
name: post-json
steps:
  - id: post
    uses: http.request
    with:
      method: POST
      url: http://127.0.0.1:9/x
      json: {amount: 100}
"""


def test_passing_json_to_http_request_prints_no_pydantic_warning(tmp_path: Path) -> None:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "post-json.yaml").write_text(RUNBOOK, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    env["PYTHONWARNINGS"] = "default"  # show every warning, as a plain terminal would
    argv = ["--runbooks", str(runbooks), "--data", str(tmp_path / "d")]
    proc = subprocess.run(
        [sys.executable, "-m", "bot", *argv, "run", "post-json", "--dry-run", "--as", "alice"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "post" in proc.stdout + proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    assert "warnings.warn" not in proc.stderr, proc.stderr
