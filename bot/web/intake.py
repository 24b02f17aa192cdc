"""Alert intake, the JSON API and schedules, as service extensions."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.service import Extension


def extensions(settings: Settings) -> list[Extension]:
    """Extensions for alerts (``/alerts/{source}``), the API (``/api``) and schedules."""
    return []
