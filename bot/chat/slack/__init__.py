"""Slack: the chat adapter, slash commands and interactive approvals (``/slack/events``).

Modules:

=================  ==============================================================
``feature``        the service extension (``SlackExtension``) that wires it together
``app``            slack-bolt AsyncApp: signature check, workspace check, retries
``slash``          ``/runbook`` (``commands``: reading it and its texts, pure)
``interactions``   approval buttons and the fields modal
``chat``           the engine's Chat port: thread, status, approvals, notices
``blocks``         Block Kit rendering (pure); ``modal``: the fields form (pure)
``mrkdwn``         text helpers: escaping, Markdown, mentions, dates (pure)
``ids``            action ids and button values (pure)
``groups``         Slack user groups (``usergroups.users.list``), cached
``api``            the Web API client (rate limits, errors)
``replies``        private answers (``chat.postEphemeral`` / ``response_url``)
=================  ==============================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.service import Extension


def extension(settings: Settings) -> Extension | None:
    """The Slack extension, or None when Slack is off (no credentials)."""
    if not settings.slack_enabled:
        return None
    from bot.chat.slack.feature import SlackExtension

    return SlackExtension(settings)
