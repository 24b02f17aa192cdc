"""Answering ``/runbook``: within Slack's 3 seconds, with the slow part afterwards.

:meth:`SlashCommands.answer` runs while Slack waits. It only reads what is in
memory (the catalog, run state) and checks inputs (pure), then returns the
acknowledgement's text; starting and cancelling runs go to background tasks
that answer privately when they are done. The requester is always the user
id of the signed payload.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.chat.slack import blocks
from bot.chat.slack import mrkdwn as md
from bot.chat.slack.commands import (
    Command,
    CommandError,
    Verb,
    help_text,
    inputs_help,
    list_text,
    parse_command,
)
from bot.chat.slack.replies import Audience, Replier
from bot.errors import (
    ChatError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDenied,
    RunbookBotError,
    StoreError,
)
from bot.runbook.inputs import coerce_inputs

if TYPE_CHECKING:
    from bot.engine.engine import Engine

log = logging.getLogger("runbook.slack")

Spawn = Callable[[Coroutine[Any, Any, None], str], None]
STARTING = ":hourglass_flowing_sand: Runbook Bot is starting up; try again in a few seconds."


@dataclass(frozen=True, slots=True)
class Answer:
    """The acknowledgement's content (shown only to the person who typed the command)."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def ack_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"text": self.text, "response_type": "ephemeral"}
        if self.blocks:
            args["blocks"] = self.blocks
        return args


class SlashCommands:
    """The slash command's logic (see the module docstring)."""

    def __init__(self, engine: Callable[[], Engine | None], replier: Replier, spawn: Spawn) -> None:
        self._engine = engine
        self.replier = replier
        self.spawn = spawn

    def answer(self, body: Mapping[str, Any]) -> Answer:
        """What to acknowledge with; schedules the slow work. Never raises for bad input."""
        engine = self._engine()
        if engine is None:
            return Answer(STARTING)
        name = str(body.get("command") or "/runbook")
        user = str(body.get("user_id") or "")
        catalog = engine.catalog

        def command_word(word: str) -> str | None:
            found = catalog.by_command(word)
            return found.name if found is not None else None

        try:
            command = parse_command(str(body.get("text") or ""), command_word)
        except CommandError as exc:
            text = f":warning: {exc.message}"
            if exc.runbook and exc.runbook in catalog.loaded:
                text += "\n\n" + inputs_help(catalog.loaded[exc.runbook].runbook, name)
            elif exc.show_help:
                text += "\n\n" + help_text(name, self._words(engine))
            return Answer(text)
        audience = Audience(user, _str(body.get("channel_id")), _str(body.get("response_url")))
        if command.verb is Verb.HELP:
            return Answer(help_text(name, self._words(engine)))
        if command.verb is Verb.LIST:
            return Answer(list_text(catalog.loaded.values(), name))
        if command.verb is Verb.STATUS:
            return self._status(engine, command)
        if command.verb is Verb.CANCEL:
            return self._cancel(engine, command, audience)
        return self._run(engine, command, audience, body, name)

    @staticmethod
    def _words(engine: Engine) -> list[str]:
        return [word for lr in engine.catalog.loaded.values() for word, _ in lr.commands]

    # -- run --------------------------------------------------------------------------------

    def _run(
        self,
        engine: Engine,
        command: Command,
        audience: Audience,
        body: Mapping[str, Any],
        name: str,
    ) -> Answer:
        assert command.runbook is not None
        try:
            loaded = engine.catalog.get(command.runbook)
        except NotFoundError:
            known = ", ".join(f"`{n}`" for n in engine.catalog.names()) or "none"
            return Answer(
                f":warning: There is no runbook {md.code(command.runbook)}. Runbooks: {known}"
            )
        try:
            coerce_inputs(loaded.runbook.inputs, command.inputs, from_text=True)
        except InputError as exc:
            return Answer(
                f":warning: {md.escape(str(exc))}\n\n" + inputs_help(loaded.runbook, name)
            )
        trigger_id = _str(body.get("trigger_id"))
        self.spawn(
            self._start(engine, loaded.name, dict(command.inputs), audience, trigger_id),
            f"slack-run:{loaded.name}",
        )
        return Answer(
            f":hourglass_flowing_sand: Starting *{md.escape(loaded.runbook.display_title)}*"
            f" (`{loaded.name}`)…"
        )

    async def _start(
        self,
        engine: Engine,
        runbook: str,
        inputs: dict[str, str],
        audience: Audience,
        trigger_id: str | None,
    ) -> None:
        trigger: dict[str, Any] = {"kind": "slack"}
        if audience.channel:
            trigger["channel"] = audience.channel
        try:
            result = await engine.start_run(
                runbook,
                inputs,
                requester=f"slack:{audience.user}",
                trigger=trigger,
                from_text=True,
                idempotency_key=f"slack:{trigger_id}" if trigger_id else None,
            )
        except InputError as exc:
            text = f":warning: {md.escape(str(exc))}\n\n" + inputs_help(
                engine.catalog.get(runbook).runbook
            )
        except PermissionDenied:
            text = f":no_entry: You may not start `{runbook}`: its `run_by` does not include you."
        except (ChatError, RunbookBotError) as exc:
            text = f":warning: Could not start `{runbook}`: {md.escape(str(exc))}"
        else:
            run = result.run
            if result.deduplicated:
                text = f":information_source: Run `{run.id}` was already started for this request."
            else:
                where = self._where(engine, run)
                text = f":arrow_forward: Started run `{run.id}` of `{runbook}`{where}."
        await self.replier.ephemeral(audience, text, prefer_response_url=True)

    @staticmethod
    def _where(engine: Engine, run: Any) -> str:
        try:
            channel = engine.view(run).channel
        except RunbookBotError:
            return ""
        if channel:
            return (
                f"; follow it in {md.escape(channel if channel.startswith('#') else '#' + channel)}"
            )
        return (
            f". Its runbook has no Slack channel, so it has no thread here: see it with "
            f"`/runbook status {run.id}`, and decide its approvals with the API "
            f"(`POST /api/runs/{run.id}/steps/STEP/decision`) or the terminal "
            f"(`runbook approve {run.id} STEP`)"
        )

    # -- status, cancel ------------------------------------------------------------------------

    def _status(self, engine: Engine, command: Command) -> Answer:
        assert command.run_id is not None
        try:
            engine.store.flush_now()  # show only what is durable
        except StoreError:
            return Answer(":warning: The bot cannot write its data directory; see its log.")
        run = engine.store.get_run(command.run_id)
        if run is None:
            return Answer(f":warning: There is no run `{command.run_id}`.")
        try:
            message = blocks.run_status(run, engine.view(run))
        except RunbookBotError:
            return Answer(f"Run `{run.id}` ({run.runbook}): {run.status}")
        extra = blocks.context(
            f"Run `{run.id}` of `{run.runbook}` · started by {blocks.started_by(run)} "
            f"{md.date(run.started_at)}"
        )
        return Answer(message.text, [*message.blocks, extra])

    def _cancel(self, engine: Engine, command: Command, audience: Audience) -> Answer:
        assert command.run_id is not None
        run = engine.store.get_run(command.run_id)
        if run is None:
            return Answer(f":warning: There is no run `{command.run_id}`.")
        if run.ended:
            return Answer(f":information_source: Run `{run.id}` already ended ({run.status}).")
        self.spawn(self._do_cancel(engine, run.id, audience), f"slack-cancel:{run.id}")
        return Answer(f":hourglass_flowing_sand: Cancelling run `{run.id}`…")

    async def _do_cancel(self, engine: Engine, run_id: str, audience: Audience) -> None:
        try:
            run = await engine.cancel(run_id, f"slack:{audience.user}")
        except PermissionDenied:
            text = (
                f":no_entry: You may not cancel run `{run_id}`: only its requester, the "
                "people who may run it, and its approvers may."
            )
        except (NotFoundError, ConflictError) as exc:
            text = f":information_source: {md.escape(str(exc))}"
        except (ChatError, RunbookBotError) as exc:
            text = f":warning: Could not cancel run `{run_id}`: {md.escape(str(exc))}"
        else:
            text = f":no_entry_sign: Run `{run_id}` is {run.status}."
        await self.replier.ephemeral(audience, text, prefer_response_url=True)


def _str(value: Any) -> str | None:
    return str(value) if isinstance(value, str) and value else None
