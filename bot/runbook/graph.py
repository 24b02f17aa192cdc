"""The step graph: ids, ``needs``, cycles and ancestry.

Written iteratively: a runbook may chain thousands of steps, and Python's
recursion limit must not decide whether a file loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.runbook.checks import suggest
from bot.runbook.source import SourceMap

if TYPE_CHECKING:
    from bot.runbook.structure import Report


def check_ids(raw_steps: list[Any], smap: SourceMap, report: Report) -> dict[int, str]:
    """Step ids by index, reporting each duplicate at its second occurrence."""
    ids: dict[int, str] = {}
    seen: set[str] = set()
    for index, raw in enumerate(raw_steps):
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            continue
        step_id = raw["id"]
        if step_id in seen:
            report.error(smap.value(("steps", index, "id")), f"duplicate step id {step_id!r}")
            continue
        seen.add(step_id)
        ids[index] = step_id
    return ids


def effective_needs(raw_steps: list[Any], ids: dict[int, str]) -> dict[str, list[str]]:
    """What each step needs: its ``needs`` (known ids only), else the step before it."""
    needs: dict[str, list[str]] = {}
    previous: str | None = None
    for index, raw in enumerate(raw_steps):
        step_id = ids.get(index)
        if step_id is not None and isinstance(raw, dict):
            given = raw.get("needs")
            if isinstance(given, list):
                needs[step_id] = [n for n in given if isinstance(n, str) and n in ids.values()]
            else:
                needs[step_id] = [previous] if previous is not None else []
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            previous = raw["id"]
    return needs


def check_needs(raw_steps: list[Any], ids: dict[int, str], smap: SourceMap, report: Report) -> None:
    """Report unknown, self and repeated entries of ``needs``, each at the entry."""
    known = set(ids.values())
    for index, raw in enumerate(raw_steps):
        if not isinstance(raw, dict) or not isinstance(raw.get("needs"), list):
            continue
        seen: set[str] = set()
        for pos_index, need in enumerate(raw["needs"]):
            if not isinstance(need, str):
                continue
            where = smap.value(("steps", index, "needs", pos_index))
            if need == raw.get("id"):
                report.error(where, f"step {need!r} cannot need itself")
            elif need not in known:
                report.error(where, f"unknown step {need!r} in needs{suggest(need, known)}")
            elif need in seen:
                report.error(where, f"{need!r} is listed twice in needs")
            seen.add(need)


def check_cycles(
    needs: dict[str, list[str]], ids: dict[int, str], smap: SourceMap, report: Report
) -> bool:
    """Report each cycle of ``needs`` once, naming its steps; True if there is one.

    Iterative (a runbook may chain thousands of steps); a step that needs
    itself is reported by the needs check, not here.
    """
    index_of = {step_id: index for index, step_id in ids.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    reported: set[frozenset[str]] = set()
    found = False
    for root in ids.values():
        if root in state:
            continue
        trail = [root]
        state[root] = 1
        pending = [iter(needs.get(root, []))]
        while pending:
            dep = next(pending[-1], None)
            if dep is None:
                state[trail.pop()] = 2
                pending.pop()
                continue
            if dep == trail[-1]:
                continue
            seen = state.get(dep)
            if seen is None:
                state[dep] = 1
                trail.append(dep)
                pending.append(iter(needs.get(dep, [])))
            elif seen == 1:
                cycle = trail[trail.index(dep) :]
                members = frozenset(cycle)
                if members in reported:
                    continue
                reported.add(members)
                found = True
                # start at the step written first; show it in the direction "x needs y"
                first = min(cycle, key=lambda step_id: index_of[step_id])
                start = cycle.index(first)
                ordered = [*cycle[start:], *cycle[:start], first]
                report.error(
                    smap.value(("steps", index_of[first], "id")),
                    "steps form a cycle: " + " → ".join(ordered) + " (each needs the next)",
                )
    return found


def ancestors(needs: dict[str, list[str]], ids: dict[int, str]) -> dict[str, set[str]]:
    """Every step each step runs after, directly or not (``needs`` has no cycle)."""
    memo: dict[str, set[str]] = {}
    for root in ids.values():
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            node, ready = stack.pop()
            if node in memo:
                continue
            deps = [dep for dep in needs.get(node, []) if dep != node]
            if ready:
                result: set[str] = set(deps)
                for dep in deps:
                    result |= memo[dep]
                memo[node] = result
                continue
            stack.append((node, True))
            stack.extend((dep, False) for dep in deps if dep not in memo)
    return memo
