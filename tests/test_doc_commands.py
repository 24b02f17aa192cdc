"""The README's and the quickstart's terminal examples work as written on a fresh clone.

Every ``.venv/bin/runbook run|approve`` line in their shell blocks that says
``# exit N`` is run as a process, in a fresh directory holding only the
shipped runbooks, with the ``export`` lines before it and no connector
credentials; ``RUN_ID`` is the run id the previous command printed last.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.M | re.S)
EXIT = re.compile(r"#\s*exit (\d+)")


def documented(doc: str) -> list[tuple[str, int | None]]:
    """(command line, documented exit code or None for ``export`` lines), in order."""
    found: list[tuple[str, int | None]] = []
    for block in BLOCK.findall((ROOT / doc).read_text(encoding="utf-8")):
        for line in block.splitlines():
            command = line.partition("#")[0]
            command = command.strip()
            if command.startswith("export RUNBOOK_"):
                found.append((command, None))
            elif re.match(r"\.venv/bin/runbook (run|approve) ", command):
                code = EXIT.search(line)
                assert code is not None, f"{doc}: say the exit code of: {line}"
                found.append((command, int(code.group(1))))
    return found


@pytest.mark.parametrize("doc", ["README.md", "docs/quickstart.md"])
def test_documented_commands_exit_as_documented(tmp_path: Path, doc: str) -> None:
    commands = documented(doc)
    assert any(code is not None for _, code in commands), f"{doc} shows no runbook command"
    shutil.copytree(ROOT / "runbooks", tmp_path / "runbooks")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RUNBOOK_", "SLACK_")) and k != "VIRTUAL_ENV"
    }
    run_id = None
    for command, code in commands:
        words = shlex.split(command)
        if code is None:
            name, _, value = words[1].partition("=")
            env[name] = value
            continue
        assert words[0] == ".venv/bin/runbook"
        if "RUN_ID" in words:
            assert run_id is not None, f"{doc}: no run id before: {command}"
            words = [run_id if w == "RUN_ID" else w for w in words]
        proc = subprocess.run(
            [sys.executable, "-m", "bot", *words[1:]],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode == code, f"{command}\n{proc.stdout}\n{proc.stderr}"
        lines = proc.stdout.strip().splitlines()
        if code == 5:
            run_id = lines[-1]
            assert re.fullmatch(r"r-[0-9a-z]+", run_id), proc.stdout
        if words[1] == "approve" and code == 0:
            assert "succeeded" in lines[-1], proc.stdout
