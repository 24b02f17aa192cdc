"""Identifiers Slack sends back to us: action ids, button values, modal metadata (pure).

A button's ``value`` (and a modal's ``private_metadata``) only *finds* the
gate: who decides is always taken from the signed payload's user id, never
from anything the bot put into the message. Values are versioned so that a
message posted by an older release still finds its gate::

    v1:<run id>:<step id>          e.g. v1:r-0ab3…:approve
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ActionId(StrEnum):
    """``action_id`` of the buttons on an approval message (SPEC §5)."""

    APPROVE = "approval_approve"
    REJECT = "approval_reject"
    SKIP = "approval_skip"

    @property
    def decision(self) -> str:
        """The engine's decision word for this button."""
        return {"approval_approve": "approve", "approval_reject": "reject"}.get(self, "skip")


FIELDS_VIEW = "approval_fields"
"""``callback_id`` of the modal that asks an approver for the gate's ``fields``."""

FIELD_BLOCK_PREFIX = "field:"
COMMENT_BLOCK = "comment"
VALUE_ACTION = "value"

_VALUE = re.compile(r"^v1:(r-[0-9a-z]{1,40}):([a-z_][a-z0-9_]{0,63})$")


@dataclass(frozen=True, slots=True)
class GateRef:
    """Which gate a button or modal belongs to."""

    run_id: str
    step_id: str


def gate_value(run_id: str, step_id: str) -> str:
    """The ``value`` of an approval button."""
    return f"v1:{run_id}:{step_id}"


def parse_gate_value(value: object) -> GateRef | None:
    """The gate a button value names, or None when it is not one of ours."""
    if not isinstance(value, str):
        return None
    match = _VALUE.match(value)
    if match is None:
        return None
    return GateRef(match.group(1), match.group(2))


@dataclass(frozen=True, slots=True)
class ModalMeta:
    """What the fields modal carries between the click and the submission.

    Attributes:
        gate: the gate.
        decision: the decision the click asked for.
        channel: where the approval message is (for private answers).
        message_ts: the approval message.
    """

    gate: GateRef
    decision: str
    channel: str | None
    message_ts: str | None

    def dump(self) -> str:
        return json.dumps(
            {
                "gate": gate_value(self.gate.run_id, self.gate.step_id),
                "decision": self.decision,
                "channel": self.channel,
                "ts": self.message_ts,
            },
            separators=(",", ":"),
        )


def parse_modal_meta(text: object) -> ModalMeta | None:
    """Read a modal's ``private_metadata``; None when it is not ours."""
    if not isinstance(text, str):
        return None
    try:
        data: Any = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    gate = parse_gate_value(data.get("gate"))
    decision = data.get("decision")
    if gate is None or decision not in ("approve", "reject", "skip"):
        return None
    channel, ts = data.get("channel"), data.get("ts")
    return ModalMeta(
        gate,
        decision,
        channel if isinstance(channel, str) else None,
        ts if isinstance(ts, str) else None,
    )
