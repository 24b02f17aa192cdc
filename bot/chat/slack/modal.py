"""The modal that asks an approver for a gate's ``fields`` (pure), and reading it back.

Each field becomes an input block (``field:<name>``): a select for ``enum``
and ``boolean`` fields, a number input for numbers, text otherwise; an
optional comment comes last. The gate travels in ``private_metadata``
(:class:`~bot.chat.slack.ids.ModalMeta`); who submits is taken from the
signed payload, as for clicks.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from bot.chat.slack import mrkdwn as md
from bot.chat.slack.blocks import Block, plain, section
from bot.chat.slack.ids import (
    COMMENT_BLOCK,
    FIELD_BLOCK_PREFIX,
    FIELDS_VIEW,
    VALUE_ACTION,
    ModalMeta,
)


def fields_modal(
    meta: ModalMeta, step_title: str, prompt: str, fields: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The modal asking an approver for the gate's ``fields``."""
    blocks: list[Block] = [section(f"*{md.escape(step_title)}*\n{md.no_broadcasts(prompt)}")]
    for name, spec in fields.items():
        blocks.append(_field_input(name, spec))
    blocks.append(
        {
            "type": "input",
            "block_id": COMMENT_BLOCK,
            "optional": True,
            "label": plain("Comment", 2000),
            "element": {
                "type": "plain_text_input",
                "action_id": VALUE_ACTION,
                "multiline": True,
                "max_length": 2000,
            },
        }
    )
    return {
        "type": "modal",
        "callback_id": FIELDS_VIEW,
        "title": plain("Approve", 24),
        "submit": plain("Approve", 24),
        "close": plain("Cancel", 24),
        "private_metadata": meta.dump(),
        "blocks": blocks[:100],
    }


def _field_input(name: str, spec: Mapping[str, Any]) -> Block:
    kind = spec.get("type", "string")
    required = spec.get("required")
    if required is None:
        required = "default" not in spec
    default = spec.get("default")
    element: dict[str, Any]
    if spec.get("enum"):
        options = [{"text": plain(str(v)), "value": json.dumps(v)} for v in spec["enum"]][:100]
        element = {"type": "static_select", "action_id": VALUE_ACTION, "options": options}
        initial = next(
            (o for o in options if "default" in spec and o["value"] == json.dumps(default)), None
        )
        if initial:
            element["initial_option"] = initial
    elif kind == "boolean":
        options = [{"text": plain("yes"), "value": "true"}, {"text": plain("no"), "value": "false"}]
        element = {"type": "static_select", "action_id": VALUE_ACTION, "options": options}
        if isinstance(default, bool):
            element["initial_option"] = options[0] if default else options[1]
    elif kind in ("integer", "number"):
        element = {
            "type": "number_input",
            "action_id": VALUE_ACTION,
            "is_decimal_allowed": kind == "number",
        }
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            element["initial_value"] = str(default)
    else:
        element = {"type": "plain_text_input", "action_id": VALUE_ACTION}
        if kind in ("list", "object"):
            element["placeholder"] = plain("JSON" + (", or a,b,c" if kind == "list" else ""), 150)
        if isinstance(default, str):
            element["initial_value"] = default
    block: Block = {
        "type": "input",
        "block_id": FIELD_BLOCK_PREFIX + name,
        "optional": not required,
        "label": plain(name, 2000),
        "element": element,
    }
    if spec.get("description"):
        block["hint"] = plain(str(spec["description"]), 2000)
    return block


def modal_values(view: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The field values and the comment a submitted fields modal carries."""
    values = (view.get("state") or {}).get("values") or {}
    fields: dict[str, Any] = {}
    comment: str | None = None
    for block_id, actions in values.items():
        if not isinstance(actions, dict):
            continue
        element = actions.get(VALUE_ACTION) or {}
        raw: Any = element.get("value")
        selected = element.get("selected_option")
        if isinstance(selected, dict):
            raw = selected.get("value")
            if block_id.startswith(FIELD_BLOCK_PREFIX) and isinstance(raw, str):
                with contextlib.suppress(ValueError):
                    raw = json.loads(raw)
        if block_id == COMMENT_BLOCK:
            comment = raw if isinstance(raw, str) and raw.strip() else None
        elif block_id.startswith(FIELD_BLOCK_PREFIX) and raw not in (None, ""):
            fields[block_id[len(FIELD_BLOCK_PREFIX) :]] = raw
    return fields, comment
