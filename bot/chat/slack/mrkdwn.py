"""Slack mrkdwn helpers (pure): escaping, Markdown conversion, mentions, dates, limits."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from bot.engine.clock import parse_iso

SECTION_LIMIT = 3000
HEADER_LIMIT = 150
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC = re.compile(r"(?<![*\w])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![*\w])")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+")
_BROADCAST = re.compile(r"<!(channel|here|everyone)(\|[^>]*)?>")


def escape(text: str) -> str:
    """Escape the three characters Slack gives meaning to (``&``, ``<``, ``>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """Undo Slack's escaping of ``&``, ``<`` and ``>`` (slash command text arrives escaped)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def code(value: Any, limit: int = 80) -> str:
    """A value shown inline as code, shortened."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = truncate(text.replace("`", "'").replace("\n", " "), limit)
    return f"`{escape(text)}`"


def no_broadcasts(text: str) -> str:
    """Defuse ``<!channel>``, ``<!here>`` and ``<!everyone>`` coming from data."""
    return _BROADCAST.sub(lambda m: f"@{m.group(1)}", text)


def markdown_to_mrkdwn(text: str) -> str:
    """Convert the Markdown of a runbook's step description to Slack mrkdwn.

    Bold, italics, links, headings and bullets are converted; code spans and
    fences are kept as they are (Slack reads them the same way).
    """
    out: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            out.append(line.strip())
            continue
        if fenced:
            out.append(escape(line))
            continue
        out.append(_convert_line(line))
    return "\n".join(out).strip()


def _convert_line(line: str) -> str:
    parts = re.split(r"(`[^`]*`)", line)
    converted = []
    for index, part in enumerate(parts):
        if index % 2 == 1:  # a code span
            converted.append(escape(part))
            continue
        part = escape(part)
        part = _LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", part)
        part = _BOLD.sub(lambda m: "\x00" + m.group(2) + "\x00", part)
        part = _ITALIC.sub(lambda m: "_" + m.group(1) + "_", part)
        converted.append(part.replace("\x00", "*"))
    result = "".join(converted)
    heading = _HEADING.match(result)
    if heading:
        return f"*{heading.group(1).strip('*')}*"
    return _BULLET.sub(lambda m: m.group(1) + "• ", result)


def user_mention(user: str) -> str:
    """``<@U123>`` for a Slack user id, else the name as it is written."""
    short = user.split(":", 1)[1] if user.startswith("slack:") else user
    if _USER_ID.match(short):
        return f"<@{short}>"
    return escape(user)


def group_mention(handle: str, group_ids: Mapping[str, str]) -> str:
    """``<!subteam^S123>`` when the group's id is known, else ``@handle``."""
    gid = group_ids.get(handle) or (handle if _GROUP_ID.match(handle) else None)
    if gid:
        return f"<!subteam^{gid}>"
    return "@" + escape(handle)


def people(users: Iterable[str], groups: Iterable[str], group_ids: Mapping[str, str]) -> str:
    """Users and groups as mentions, comma-separated."""
    parts = [user_mention(u) for u in users] + [group_mention(g, group_ids) for g in groups]
    return ", ".join(parts)


def identity(who: str | None) -> str:
    """A person as Slack should show them: a mention for ``slack:``, else a plain name."""
    if not who:
        return "nobody"
    realm, _, name = who.partition(":")
    if realm == "slack" and name:
        return user_mention(name)
    if realm == "cli" and name:
        return f"{escape(name)} (terminal)"
    if realm == "api" and name:
        return f"{escape(name)} (API)"
    return escape(who)


def date(ts: str | None, style: str = "{date_short_pretty} {time}") -> str:
    """An ISO timestamp as a Slack date token (shown in the reader's time zone)."""
    if not ts:
        return "—"
    try:
        when = parse_iso(ts)
    except ValueError:
        return escape(ts)
    fallback = when.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(when.timestamp())}^{style}|{fallback}>"
