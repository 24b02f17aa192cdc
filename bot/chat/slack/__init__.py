"""Slack: the chat adapter, slash commands and interactive approvals (``/slack/events``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.service import Extension


def extension(settings: Settings) -> Extension | None:
    """The Slack extension, or None when Slack is off (no credentials)."""
    return None
