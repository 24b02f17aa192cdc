"""What the engine does once a transaction is durable (acted on by :mod:`bot.engine.effects`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class FollowUp:
    """What to do once a transaction is durable."""

    spawn: list[str] = field(default_factory=list)
    gates: list[str] = field(default_factory=list)
    changed_gates: list[str] = field(default_factory=list)
    compensate: bool = False
    finished: bool = False
