"""Alert intake, the JSON API and schedules, as service extensions."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.service import Extension


def extensions(settings: Settings) -> list[Extension]:
    """Extensions for alerts (``/alerts/{source}``), the API (``/api``) and schedules."""
    from bot.triggers.schedules import Schedules
    from bot.web.alerts import AlertIntake
    from bot.web.api import Api
    from bot.web.health import DataDirHealth

    return [AlertIntake(settings), Api(settings), Schedules(), DataDirHealth(settings)]
