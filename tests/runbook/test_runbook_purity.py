"""The runbook language core is pure: no adapter, network or storage imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import bot.runbook

PACKAGE = Path(bot.runbook.__file__).parent
FORBIDDEN = ("httpx", "slack_bolt", "slack_sdk", "tinydb", "apscheduler", "starlette", "uvicorn")
FORBIDDEN_OURS = ("bot.engine", "bot.store", "bot.audit", "bot.web", "bot.chat", "connectors")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_module_of_bot_runbook_imports_an_adapter() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        for module in imported_modules(path):
            top = module.split(".")[0]
            assert top not in FORBIDDEN, f"{path.name} imports {module}"
            assert not module.startswith(FORBIDDEN_OURS), f"{path.name} imports {module}"


def test_loading_a_runbook_pulls_in_no_adapter() -> None:
    code = (
        "import sys, bot.runbook.loader, bot.runbook.templates, bot.runbook.inputs\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
