"""Approval clicks and the fields modal: payload in, engine decision out.

Who decides is the signed payload's ``user.id`` — nothing else. The button
value only names the gate. Eligibility, four-eyes, quorum and repeated
deciders are the engine's business (:meth:`Engine.decide`, which audits
refusals); this module turns the verdict into a private answer.

A click on *Approve* at a gate that asks for ``fields`` opens a modal
(``views.open`` with the click's ``trigger_id``) after a quick eligibility
check, so nobody fills in a form only to be refused; people who may not
decide go straight to the engine, which refuses and audits. The modal is
validated on submission and its errors are shown in it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from bot.chat.slack import modal
from bot.chat.slack import mrkdwn as md
from bot.chat.slack.blocks import prompt_mrkdwn
from bot.chat.slack.ids import (
    FIELD_BLOCK_PREFIX,
    ActionId,
    GateRef,
    ModalMeta,
    parse_gate_value,
    parse_modal_meta,
)
from bot.chat.slack.replies import Audience, Replier
from bot.chat.slack.slash import Spawn
from bot.engine.approvals import Verdict, check_decision
from bot.engine.gates import membership
from bot.errors import ChatError, InputError, NotFoundError, RunbookBotError
from bot.runbook.inputs import coerce_value
from bot.runbook.model import InputSpec

if TYPE_CHECKING:
    from bot.engine.engine import Engine
    from bot.engine.state import GateState

log = logging.getLogger("runbook.slack")

NOT_OURS = (
    ":warning: This button does not belong to an approval Runbook Bot knows about "
    "(an old or edited message?). Nothing was recorded."
)
STARTING = ":hourglass_flowing_sand: Runbook Bot is starting up; click again in a few seconds."


class WebAPI(Protocol):
    async def call(self, method: str, args: dict[str, Any] | None = None) -> dict[str, Any]: ...


class Interactions:
    """Approval buttons and the fields modal (see the module docstring)."""

    def __init__(
        self, engine: Callable[[], Engine | None], api: WebAPI, replier: Replier, spawn: Spawn
    ) -> None:
        self._engine = engine
        self.api = api
        self.replier = replier
        self.spawn = spawn

    # -- clicks ---------------------------------------------------------------------------

    async def click(self, body: Mapping[str, Any]) -> None:
        """Handle one approval button click (after the acknowledgement)."""
        user = str((body.get("user") or {}).get("id") or "")
        audience = _audience(body, user)
        actions = body.get("actions") or [{}]
        action = actions[0] if isinstance(actions[0], dict) else {}
        try:
            decision = ActionId(str(action.get("action_id"))).decision
        except ValueError:
            return
        ref = parse_gate_value(action.get("value"))
        if ref is None or not user:
            await self.replier.ephemeral(audience, NOT_OURS)
            return
        engine = self._engine()
        if engine is None:
            await self.replier.ephemeral(audience, STARTING)
            return
        identity = f"slack:{user}"
        run = engine.store.get_run(ref.run_id)
        state = run.steps.get(ref.step_id) if run is not None else None
        gate = state.gate if state is not None else None
        if (
            decision == "approve"
            and gate is not None
            and gate.open
            and gate.fields
            and not gate.recovery
            and run is not None
        ):
            if await self._may_approve(engine, gate, identity, run.requester):
                await self._open_modal(engine, body, ref, gate, audience)
                return
        await self.decide(engine, ref, identity, decision, audience)

    async def _may_approve(
        self, engine: Engine, gate: GateState, identity: str, requester: str | None
    ) -> bool:
        member_of, unknown = await membership(engine, gate, identity)
        check = check_decision(
            gate,
            identity=identity,
            requester=requester,
            decision="approve",
            member_of=member_of,
            groups_unknown=unknown,
        )
        return check.verdict is Verdict.ACCEPTED

    async def _open_modal(
        self,
        engine: Engine,
        body: Mapping[str, Any],
        ref: GateRef,
        gate: GateState,
        audience: Audience,
    ) -> None:
        run = engine.store.get_run(ref.run_id)
        title = ref.step_id
        if run is not None:
            with contextlib.suppress(RunbookBotError):
                title = engine.view(run).step_title(ref.step_id)
        container = body.get("container") or {}
        meta = ModalMeta(ref, "approve", audience.channel, _s(container.get("message_ts")))
        view = modal.fields_modal(meta, title, prompt_mrkdwn(gate), gate.fields)
        try:
            await self.api.call("views.open", {"trigger_id": body.get("trigger_id"), "view": view})
        except ChatError as exc:
            await self.replier.ephemeral(
                audience,
                f":warning: Could not open the approval form ({exc.code or exc}); "
                "click *Approve* again.",
            )

    async def decide(
        self,
        engine: Engine,
        ref: GateRef,
        identity: str,
        decision: str,
        audience: Audience,
        *,
        comment: str | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        """Ask the engine; answer refusals privately."""
        try:
            result = await engine.decide(
                ref.run_id, ref.step_id, identity, decision, comment=comment, fields=fields
            )
        except NotFoundError:
            await self.replier.ephemeral(audience, NOT_OURS)
            return
        except InputError as exc:
            await self.replier.ephemeral(audience, f":warning: {md.escape(str(exc))}")
            return
        except ChatError as exc:
            await self.replier.ephemeral(audience, _groups_down(exc))
            return
        except RunbookBotError as exc:
            await self.replier.ephemeral(audience, f":warning: {md.escape(str(exc))}")
            return
        if result.verdict is Verdict.REFUSED:
            await self.replier.ephemeral(
                audience,
                f":no_entry: {md.escape(result.reason)}. "
                "Nothing was changed; this attempt is in the audit log.",
            )
        elif result.verdict is Verdict.NOT_WAITING:
            await self.replier.ephemeral(
                audience, f":information_source: {md.escape(result.reason)}."
            )

    async def refuse_foreign(self, body: Mapping[str, Any], team: str | None) -> None:
        """A click from another workspace: audit it when it names a live gate; answer privately."""
        user = str((body.get("user") or {}).get("id") or "")
        audience = _audience(body, user)
        engine = self._engine()
        actions = body.get("actions") or [{}]
        action = actions[0] if isinstance(actions[0], dict) else {}
        ref = parse_gate_value(action.get("value"))
        if engine is not None and ref is not None and user:
            run = engine.store.get_run(ref.run_id)
            if run is not None and not run.ended and ref.step_id in run.steps:
                try:
                    decision = ActionId(str(action.get("action_id"))).decision
                except ValueError:
                    decision = "unknown"
                engine.record_now(
                    run,
                    "approval.refused",
                    step=ref.step_id,
                    actor=f"slack:{user}",
                    data={
                        "decision": decision,
                        "reason": f"the click came from another Slack workspace ({team})",
                    },
                )
        await self.replier.ephemeral(
            audience,
            ":no_entry: This Runbook Bot belongs to another Slack workspace; nothing was done.",
        )

    async def _say(self, audience: Audience, text: str) -> None:
        await self.replier.ephemeral(audience, text)

    # -- the fields modal --------------------------------------------------------------------

    def submission(self, body: Mapping[str, Any]) -> dict[str, str] | None:
        """Check a submitted fields modal: errors for the modal, or None (then it closes)."""
        view = body.get("view") or {}
        meta = parse_modal_meta(view.get("private_metadata"))
        user = str((body.get("user") or {}).get("id") or "")
        engine = self._engine()
        if meta is None or not user:
            return None
        audience = Audience(user, meta.channel, None)
        if engine is None:
            self.spawn(self._say(audience, STARTING), "slack-reply")
            return None
        values, comment = modal.modal_values(view)
        run = engine.store.get_run(meta.gate.run_id)
        state = run.steps.get(meta.gate.step_id) if run is not None else None
        gate = state.gate if state is not None else None
        if gate is not None and gate.open:
            errors, values = check_fields(gate.fields, values)
            if errors:
                return errors
        self.spawn(
            self.decide(
                engine,
                meta.gate,
                f"slack:{user}",
                meta.decision,
                audience,
                comment=comment,
                fields=values,
            ),
            f"slack-decide:{meta.gate.run_id}",
        )
        return None


def check_fields(
    specs: Mapping[str, Any], given: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, Any]]:
    """Coerce modal values to the gate's field types; errors by block id."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name, raw in specs.items():
        spec = InputSpec.model_validate(raw)
        block = FIELD_BLOCK_PREFIX + name
        if name in given:
            try:
                values[name] = coerce_value(
                    name, spec, given[name], from_text=isinstance(given[name], str)
                )
            except InputError as exc:
                errors[block] = md.truncate(str(exc).split(": ", 1)[-1], 150)
        elif spec.is_required and not spec.has_default:
            errors[block] = "required"
    return errors, values


def _groups_down(exc: ChatError) -> str:
    return (
        f":warning: Could not check your Slack user groups right now ({exc.code or exc}); "
        "nothing was recorded. Try again in a moment."
    )


def _audience(body: Mapping[str, Any], user: str) -> Audience:
    container = body.get("container") or {}
    channel = _s(container.get("channel_id")) or _s((body.get("channel") or {}).get("id"))
    return Audience(user, channel, _s(body.get("response_url")))


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
