"""Connectors: named groups of actions that reach the outside world.

Built-in connectors are listed in :data:`BUILTIN`; others are found through
the entry point group ``runbook_bot.connectors`` (see ``docs/connectors.md``).
"""

from __future__ import annotations

BUILTIN: dict[str, str] = {
    "core": "connectors.core:Core",
}
