"""Structural validation: a runbook's data read into the model, every error positioned.

The header, each trigger and each step are validated separately, so one bad
part does not hide the errors of the others; a step with a bad key is
re-read without it (:func:`_salvage`) so the semantic checks still see it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ValidationError

from bot.errors import Diagnostic
from bot.runbook import semantics
from bot.runbook.checks import describe_errors, describe_value, suggest
from bot.runbook.model import (
    STEP_KINDS,
    AlertTrigger,
    CommandTrigger,
    Runbook,
    RunbookHeader,
    ScheduleTrigger,
)
from bot.runbook.source import Pos, SourceMap

if TYPE_CHECKING:
    from bot.runbook.loader import FileResult

TRIGGER_KINDS: dict[str, type[BaseModel]] = {
    "command": CommandTrigger,
    "alert": AlertTrigger,
    "schedule": ScheduleTrigger,
}


class ActionCatalog(Protocol):
    """What the loader needs to know about connectors."""

    def lookup(self, ref: str) -> Any:
        """The action's spec (with ``input_model``); LookupError with a message if unknown."""
        ...


class Report:
    """The diagnostics of one file, in the order found."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.items: list[Diagnostic] = []
        self._once: set[str] = set()

    def error(self, pos: Pos, message: str) -> None:
        self.items.append(Diagnostic(self.path, pos.line, pos.column, message))

    def warning(self, pos: Pos, message: str) -> None:
        self.items.append(Diagnostic(self.path, pos.line, pos.column, message, "warning"))

    def warning_once(self, key: str, pos: Pos, message: str) -> None:
        """A warning reported only at the first place it applies in the file."""
        if key not in self._once:
            self._once.add(key)
            self.warning(pos, message)


def validate(
    data: Any,
    smap: SourceMap,
    report: Report,
    catalog: ActionCatalog,
    defaults: dict[str, Any],
    configured: Callable[[str], bool] | None,
    result: FileResult,
) -> Runbook | None:
    """Check ``data`` against the model and the semantic rules; the runbook if it is sound.

    Everything found goes to ``report``; ``result`` learns the runbook's name
    and command words even when the runbook has errors (for checks across files).
    """
    if not isinstance(data, dict):
        what = "empty" if data is None else f"a {type(data).__name__}"
        report.error(
            smap.value(()),
            f"a runbook is a mapping of keys (name, steps, ...), but this document is {what}",
        )
        return None
    raw_header = {key: value for key, value in data.items() if key not in ("steps", "triggers")}
    if defaults.get("title") and "title" not in raw_header:
        raw_header["title"] = defaults["title"]
    header_ok = True
    try:
        header = RunbookHeader.model_validate(raw_header)
    except ValidationError as exc:
        header_ok = False
        for pos, message in describe_errors(exc, RunbookHeader, (), smap):
            report.error(pos, message)
        header = None
    if isinstance(data.get("name"), str):
        result.name = data["name"]
        result.name_pos = smap.value(("name",))
    triggers, triggers_ok = _validate_triggers(data.get("triggers"), smap, report, result)
    steps = _validate_steps(data, smap, report, defaults)
    if header is None:
        # still check what can be checked with what we have
        header = _partial_header(raw_header)
    semantics.check(
        header=header,
        triggers=triggers,
        steps=[(i, s.step if isinstance(s, Salvaged) else s) for i, s in steps],
        raw=data,
        smap=smap,
        report=report,
        catalog=catalog,
        configured=configured,
    )
    if not header_ok or not triggers_ok:
        return None
    if any(step is None or isinstance(step, Salvaged) for _, step in steps):
        return None
    if not steps:
        return None
    values = {name: getattr(header, name) for name in RunbookHeader.model_fields}
    values["triggers"] = [trigger for _, trigger in triggers]
    values["steps"] = [step for _, step in steps]
    fields_set = set(header.model_fields_set) | {"steps"}
    if triggers:
        fields_set.add("triggers")
    return Runbook.model_construct(_fields_set=fields_set, **values)


def _partial_header(raw: dict[str, Any]) -> RunbookHeader:
    """A header with the parts that validate, so later checks still run.

    Inputs are kept one by one: one bad input must not hide the others from
    the checks of templates and triggers.
    """
    keep: dict[str, Any] = {"name": "invalid"}
    for key in ("run_by", "channel", "concurrency_key"):
        if key in raw:
            try:
                RunbookHeader.model_validate({"name": "x", key: raw[key]})
            except ValidationError:
                continue
            keep[key] = raw[key]
    inputs = raw.get("inputs")
    if isinstance(inputs, dict):
        good: dict[str, Any] = {}
        for name, spec in inputs.items():
            for candidate in (spec, {"required": False}):  # else: declared, spec broken
                try:
                    RunbookHeader.model_validate({"name": "x", "inputs": {name: candidate}})
                except ValidationError:
                    continue
                good[name] = candidate
                break
        keep["inputs"] = good
    return RunbookHeader.model_validate(keep)


def _validate_triggers(
    raw: Any, smap: SourceMap, report: Report, result: FileResult
) -> tuple[list[tuple[int, Any]], bool]:
    """The triggers that validated (with their index), and whether all did."""
    if raw is None:
        return [], True
    if not isinstance(raw, list):
        report.error(
            smap.value(("triggers",)),
            f"'triggers' must be a list, got {describe_value(raw)}",
        )
        return [], False
    found: list[tuple[int, Any]] = []
    ok = True
    for index, item in enumerate(raw):
        path = ("triggers", index)
        kinds = [key for key in TRIGGER_KINDS if isinstance(item, dict) and key in item]
        if not isinstance(item, dict) or len(kinds) != 1:
            ok = False
            if isinstance(item, dict) and len(kinds) > 1:
                report.error(
                    smap.key((*path, kinds[1])),
                    f"a trigger has exactly one kind; found {kinds[0]!r} and {kinds[1]!r}",
                )
            elif isinstance(item, dict) and item:
                key = next(iter(item))
                report.error(
                    smap.key((*path, key)),
                    f"unknown trigger kind {key!r}{suggest(key, TRIGGER_KINDS)} "
                    "(use command, alert or schedule)",
                )
            else:
                report.error(smap.value(path), "a trigger is one of: command, alert, schedule")
            continue
        model = TRIGGER_KINDS[kinds[0]]
        try:
            trigger = model.model_validate(item)
        except ValidationError as exc:
            ok = False
            for pos, message in describe_errors(exc, model, path, smap):
                report.error(pos, message)
            continue
        if isinstance(trigger, CommandTrigger):
            result.commands.append((trigger.command, smap.value((*path, "command"))))
        found.append((index, trigger))
    return found, ok


def _validate_steps(
    data: dict[str, Any], smap: SourceMap, report: Report, defaults: dict[str, Any]
) -> list[tuple[int, Any]]:
    raw_steps = data.get("steps")
    if raw_steps is None:
        report.error(smap.value(()), "missing required key 'steps'")
        return []
    if not isinstance(raw_steps, list):
        report.error(smap.value(("steps",)), "'steps' must be a list of steps")
        return []
    if not raw_steps:
        report.error(smap.value(("steps",)), "a runbook needs at least one step")
        return []
    step_defaults: list[dict[str, str]] = defaults.get("steps", [])
    broken: set[int] = defaults.get("broken", set())
    results: list[tuple[int, Any]] = []
    for index, raw in enumerate(raw_steps):
        path = ("steps", index)
        if index in broken:
            results.append((index, None))
            continue
        if not isinstance(raw, dict):
            report.error(smap.value(path), "a step is a mapping of keys (id, uses, with, ...)")
            results.append((index, None))
            continue
        if index < len(step_defaults):
            raw = {**{k: v for k, v in step_defaults[index].items() if k not in raw}, **raw}
        id_pos = smap.value((*path, "id")) if "id" in raw else smap.value(path)
        kinds = [key for key in STEP_KINDS if key in raw]
        if len(kinds) != 1:
            if kinds:
                report.error(
                    id_pos,
                    f"a step has exactly one kind; found {kinds[0]!r} and {kinds[1]!r}",
                )
            else:
                report.error(id_pos, "a step needs one of 'uses', 'approval' or 'notify'")
            results.append((index, None))
            continue
        model = STEP_KINDS[kinds[0]]
        try:
            step = model.model_validate(raw)
        except ValidationError as exc:
            for pos, message in describe_errors(exc, model, path, smap, missing_at=id_pos):
                report.error(pos, message)
            results.append((index, _salvage(model, raw, exc, kinds[0])))
            continue
        results.append((index, step))
    return results


class Salvaged:
    """A step that failed validation, re-read without its bad keys for further checks."""

    def __init__(self, step: Any) -> None:
        self.step = step


def _salvage(model: type[BaseModel], raw: dict[str, Any], exc: ValidationError, kind: str) -> Any:
    """The step without the keys that failed (already reported), if the rest validates.

    Each failing key is dropped where it sits (``approval.on_timeout``, not the
    whole ``approval``), so the step's other checks still run.
    """
    trimmed = _copy_mappings(raw)
    for err in exc.errors():
        loc = err["loc"]
        if not loc or loc[0] == "id":
            return None
        _drop(trimmed, loc)
    if kind not in trimmed:
        return None
    try:
        return Salvaged(model.model_validate(trimmed))
    except ValidationError:
        return None


def _drop(data: dict[str, Any], loc: tuple[Any, ...]) -> None:
    """Remove the innermost mapping entry on the way to ``loc``."""
    parent: Any = data
    for depth, part in enumerate(loc):
        if not isinstance(parent, dict) or part not in parent:
            return
        if depth == len(loc) - 1 or not isinstance(parent[part], dict):
            del parent[part]
            return
        parent = parent[part]


def _copy_mappings(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy_mappings(item) for key, item in value.items()}
    return value
