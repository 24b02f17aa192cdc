"""Who may decide a gate, and what a decision does (pure).

Identities look like ``slack:U024BE7LH``, ``cli:alice``, ``api:ci``. An
``approvers.users`` entry matches the part after the colon (or the whole
identity when written with its prefix). Groups are checked by the caller
(Slack user groups, or ``RUNBOOK_GROUPS``) and passed in as the set of the
gate's groups the person belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.engine.state import GateState


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    NOT_WAITING = "not_waiting"


@dataclass(frozen=True, slots=True)
class DecisionCheck:
    """The outcome of checking one decision.

    Attributes:
        verdict: accepted, refused (audited), or not waiting.
        reason: why, for the person (privately).
        ends_gate: the decision ends the gate (quorum reached, or a rejection).
        approvals: distinct approvals after this decision.
    """

    verdict: Verdict
    reason: str = ""
    ends_gate: bool = False
    approvals: int = 0


def user_part(identity: str) -> str:
    return identity.split(":", 1)[1] if ":" in identity else identity


def listed(identity: str, users: list[str]) -> bool:
    """Whether an approvers.users list names this identity."""
    short = user_part(identity)
    return any(entry in (short, identity) for entry in users)


def gate_groups(gate: GateState) -> list[str]:
    """Groups whose members may decide now (escalation adds its groups)."""
    groups = list(gate.groups)
    if gate.escalated:
        groups += [g for g in gate.escalate_groups if g not in groups]
    return groups


def eligible_without_groups(gate: GateState, identity: str) -> bool:
    """Whether the person may decide without asking about groups (open gate, or listed)."""
    if gate.open_to_all:
        return True
    return listed(identity, gate.users) or (
        gate.escalated and listed(identity, gate.escalate_users)
    )


def needs_groups(gate: GateState, identity: str) -> bool:
    """Whether deciding who this person is needs their group membership.

    ``users`` (and an open gate) are checked first, so a listed person is
    never held up by a group look-up, and only someone not otherwise eligible
    costs one.
    """
    return bool(gate_groups(gate)) and not eligible_without_groups(gate, identity)


def is_eligible(gate: GateState, identity: str, member_of: set[str]) -> bool:
    """Whether the person may decide at all (ignoring the four-eyes rule)."""
    if eligible_without_groups(gate, identity):
        return True
    return bool(member_of & set(gate_groups(gate)))


def check_decision(
    gate: GateState,
    *,
    identity: str,
    requester: str | None,
    decision: str,
    member_of: set[str],
    groups_unknown: str | None = None,
) -> DecisionCheck:
    """Decide whether ``identity`` may make ``decision`` on ``gate`` now.

    ``groups_unknown`` says why the person's group membership could not be
    determined (then ``member_of`` holds only what is known): someone not
    otherwise eligible is refused with that reason, never accepted on a guess.
    """
    approvals = {d.by for d in gate.approvals}
    if not gate.open:
        return DecisionCheck(Verdict.NOT_WAITING, "this step is no longer waiting for a decision")
    if decision == "skip" and not gate.recovery:
        return DecisionCheck(Verdict.REFUSED, "skip is only offered at a recovery gate")
    if decision not in ("approve", "reject", "skip"):
        return DecisionCheck(Verdict.REFUSED, f"unknown decision {decision!r}")
    if any(d.by == identity for d in gate.decisions):
        return DecisionCheck(
            Verdict.REFUSED, "you have already decided this step; a second decision does not count"
        )
    if not is_eligible(gate, identity, member_of):
        if groups_unknown:
            return DecisionCheck(
                Verdict.REFUSED,
                "you are not an approver for this step as far as could be checked: your "
                f"group membership could not be checked ({groups_unknown})",
            )
        return DecisionCheck(Verdict.REFUSED, "you are not an approver for this step")
    if (
        decision == "approve"
        and requester is not None
        and identity == requester
        and not gate.allow_requester
        and not gate.recovery
    ):
        return DecisionCheck(
            Verdict.REFUSED,
            "you started this run, so you may not approve it yourself (four-eyes); you may reject",
        )
    if decision in ("reject", "skip"):
        return DecisionCheck(Verdict.ACCEPTED, ends_gate=True, approvals=len(approvals))
    count = len(approvals | {identity})
    return DecisionCheck(Verdict.ACCEPTED, ends_gate=count >= gate.min_approvals, approvals=count)
