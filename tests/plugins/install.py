"""Make the test connector discoverable through the entry point group, as an installed
distribution would: a ``*.dist-info`` with ``entry_points.txt`` on ``sys.path``."""

from __future__ import annotations

from pathlib import Path

PLUGINS = Path(__file__).resolve().parent


def install_testkit(site: Path) -> Path:
    """Write a dist-info for the testkit plugin into ``site``; return ``site``."""
    info = site / "runbook_bot_testkit-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: runbook-bot-testkit\nVersion: 0.0.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[runbook_bot.connectors]\ntestkit = testkit_connector:Testkit\n", encoding="utf-8"
    )
    return site


def pythonpath(site: Path) -> str:
    """PYTHONPATH for a subprocess that should see the plugin."""
    return f"{site}:{PLUGINS}"
