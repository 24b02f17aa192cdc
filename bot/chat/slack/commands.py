"""The ``/runbook`` slash command: reading what was typed, and the texts it answers (pure).

::

    /runbook help
    /runbook list
    /runbook run NAME key=value reason="two words"
    /runbook WORD key=value ...        (a runbook's own ``command`` trigger word)
    /runbook status RUN_ID
    /runbook cancel RUN_ID

Words are split like a shell does (:mod:`shlex`), after undoing what Slack
does to typed text: ``&amp;``/``&lt;``/``&gt;`` escapes, ``<url|label>``
links, and curly quotes some keyboards type.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from bot.chat.slack import mrkdwn as md
from bot.runbook.loader import LoadedRunbook
from bot.runbook.model import InputSpec, Runbook

_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
_RUN_ID = re.compile(r"^r-[0-9a-z]{1,40}$")


class Verb(StrEnum):
    HELP = "help"
    LIST = "list"
    RUN = "run"
    STATUS = "status"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class Command:
    """What was asked.

    Attributes:
        verb: help, list, run, status or cancel.
        runbook: the runbook to run (``run`` or a command word).
        inputs: ``key=value`` words, values as typed (text).
        run_id: for ``status`` and ``cancel``.
    """

    verb: Verb
    runbook: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None


class CommandError(Exception):
    """Text that is not a command; ``runbook`` names the runbook when the inputs were wrong."""

    def __init__(self, message: str, *, runbook: str | None = None, show_help: bool = False):
        self.message = message
        self.runbook = runbook
        self.show_help = show_help
        super().__init__(message)


def clean_text(text: str) -> str:
    """Undo Slack's formatting of typed text: links, escapes, curly quotes."""

    def unlink(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target[:1] in ("@", "#", "!"):
            return label or target[1:].split("^")[0]
        return label if label is not None else target

    return md.unescape(_LINK.sub(unlink, text)).translate(_QUOTES)


def parse_command(text: str, command_word: Callable[[str], str | None]) -> Command:
    """Read the slash command's text.

    Args:
        text: the text after the command, as Slack sent it.
        command_word: the runbook a trigger word starts, or None.

    Raises:
        CommandError: what was wrong, for the person who typed it.
    """
    try:
        words = shlex.split(clean_text(text))
    except ValueError as exc:
        raise CommandError(
            f'could not read that: {exc} (quote values like reason="two words")', show_help=True
        ) from None
    if not words or words[0].lower() in ("help", "-h", "--help", "?"):
        return Command(Verb.HELP)
    head, rest = words[0], words[1:]
    verb = head.lower()
    if verb == "list":
        _no_more(rest, "list")
        return Command(Verb.LIST)
    if verb in ("status", "cancel"):
        if len(rest) != 1:
            raise CommandError(f"usage: `{verb} RUN_ID`", show_help=True)
        run_id = rest[0].strip("`")
        if not _RUN_ID.match(run_id):
            raise CommandError(f"{md.code(run_id)} is not a run id (they look like `r-0ab3…`)")
        return Command(Verb(verb), run_id=run_id)
    if verb == "run":
        if not rest:
            raise CommandError(
                "which runbook? usage: `run NAME key=value …` (see `list`)", show_help=True
            )
        return Command(Verb.RUN, runbook=rest[0], inputs=_assignments(rest[1:], rest[0]))
    runbook = command_word(head)
    if runbook is None:
        raise CommandError(f"unknown command {md.code(head)}", show_help=True)
    return Command(Verb.RUN, runbook=runbook, inputs=_assignments(rest, runbook))


def _no_more(rest: list[str], verb: str) -> None:
    if rest:
        raise CommandError(f"`{verb}` takes nothing after it", show_help=True)


def _assignments(words: Iterable[str], runbook: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CommandError(f"expected key=value, got {md.code(word)}", runbook=runbook)
        if key in values:
            raise CommandError(f"input {md.code(key)} is given twice", runbook=runbook)
        values[key] = value
    return values


# -- what the command answers ------------------------------------------------------------


def help_text(command: str = "/runbook", words: Iterable[str] = ()) -> str:
    shown = ", ".join(f"`{w}`" for w in sorted(words)[:10])
    lines = [
        "*Runbook Bot* runs runbooks and asks for approvals here.",
        f"• `{command} list` — the runbooks you can run",
        f"• `{command} run NAME key=value …` — start one; quote values with spaces: "
        'reason="two words"',
    ]
    if shown:
        lines.append(f"• `{command} WORD key=value …` — a runbook's own command word: {shown}")
    lines += [
        f"• `{command} status RUN_ID` — where a run is",
        f"• `{command} cancel RUN_ID` — cancel a run (its requester, the people who may run it, "
        "and its approvers may)",
        f"• `{command} help` — this text",
    ]
    return "\n".join(lines)


def list_text(runbooks: Iterable[LoadedRunbook], command: str = "/runbook") -> str:
    lines = []
    for loaded in sorted(runbooks, key=lambda item: item.name):
        book = loaded.runbook
        words = " · ".join(f"`{command} {word}`" for word, _ in loaded.commands)
        line = f"• `{book.name}` — {md.escape(book.display_title)}"
        if words:
            line += f" ({words})"
        if book.inputs:
            line += "\n      inputs: " + ", ".join(
                f"`{name}`" + ("" if spec.is_required else "?")
                for name, spec in book.inputs.items()
            )
        lines.append(line)
    if not lines:
        return "No runbooks are loaded."
    return "*Runbooks* (`?` = optional input)\n" + "\n".join(lines)


def describe_input(name: str, spec: InputSpec) -> str:
    parts = [f"`{md.escape(name)}` {spec.type}"]
    if spec.has_default:
        parts.append(f"default {md.code(spec.default, 40)}")
    elif spec.is_required:
        parts.append("*required*")
    else:
        parts.append("optional")
    if spec.enum:
        parts.append("one of " + ", ".join(md.code(v, 30) for v in spec.enum))
    if spec.pattern:
        parts.append(f"matching {md.code(spec.pattern, 60)}")
    text = ", ".join(parts)
    if spec.description:
        text += f" — {md.escape(spec.description)}"
    return text


def inputs_help(runbook: Runbook, command: str = "/runbook") -> str:
    """The runbook's inputs, as shown after an input error."""
    if not runbook.inputs:
        lines = [f"`{runbook.name}` takes no inputs."]
    else:
        lines = [f"*Inputs of `{runbook.name}`:*"]
        lines += [f"• {describe_input(name, spec)}" for name, spec in runbook.inputs.items()]
    example = " ".join(f"{name}=…" for name, spec in runbook.inputs.items() if spec.is_required)
    lines.append(f"Example: `{command} run {runbook.name}{' ' + example if example else ''}`")
    return "\n".join(lines)
