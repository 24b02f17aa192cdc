"""Checks that need the whole runbook: the step graph, references, connectors, triggers.

Runs on whatever parts validated structurally, so a file with a bad key and
a bad reference reports both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from bot.errors import InputError
from bot.runbook.checks import error_message, suggest
from bot.runbook.graph import ancestors as step_ancestors
from bot.runbook.graph import check_cycles, check_ids, check_needs, effective_needs
from bot.runbook.inputs import coerce_value
from bot.runbook.model import (
    AlertTrigger,
    ApprovalStep,
    CallStep,
    NotifyStep,
    RunbookHeader,
    ScheduleTrigger,
)
from bot.runbook.source import Path, SourceMap
from bot.runbook.templates import (
    JINJA_GLOBALS,
    RUN_FUNCTIONS,
    Analysis,
    TemplateError,
    analyse_expression,
    analyse_template,
    environment,
    is_template,
)

if TYPE_CHECKING:
    from bot.runbook.structure import ActionCatalog, Report

STEP_FIELDS = ("output", "outcome", "error", "attempts")
RUN_FIELDS = ("id", "runbook", "requester", "trigger", "started_at", "sandbox")


@dataclass(slots=True)
class Scope:
    """Names a template may use where it stands."""

    names: set[str]
    ancestors: set[str] = field(default_factory=set)
    inputs: set[str] = field(default_factory=set)
    step_ids: set[str] = field(default_factory=set)
    self_id: str | None = None
    self_allowed: bool = False
    functions: bool = False
    where: str = ""
    _allowed: frozenset[str] | None = None

    @property
    def allowed(self) -> frozenset[str]:
        """Every root name a template may start with here."""
        if self._allowed is None:
            extra = RUN_FUNCTIONS if self.functions else frozenset()
            self._allowed = frozenset(self.names) | JINJA_GLOBALS | extra
        return self._allowed


def check(
    *,
    header: RunbookHeader,
    triggers: list[tuple[int, Any]] | None,
    steps: list[tuple[int, Any]],
    raw: dict[str, Any],
    smap: SourceMap,
    report: Report,
    catalog: ActionCatalog,
    configured: Callable[[str], bool] | None,
) -> None:
    """Report every semantic problem of a runbook into ``report``."""
    raw_steps: list[Any] = raw["steps"] if isinstance(raw.get("steps"), list) else []
    ids = check_ids(raw_steps, smap, report)
    needs = effective_needs(raw_steps, ids)
    check_needs(raw_steps, ids, smap, report)
    cyclic = check_cycles(needs, ids, smap, report)
    if cyclic:  # reported already; do not add an error for every reference in the cycle
        everyone = set(ids.values())
        ancestors = {step_id: everyone - {step_id} for step_id in everyone}
    else:
        ancestors = step_ancestors(needs, ids)
    _check_inputs(header, smap, report)
    input_names = set(header.inputs)
    for index, step in steps:
        if step is None:
            continue
        path: Path = ("steps", index)
        raw_step = raw_steps[index]
        base = Scope(
            names={"inputs", "steps", "alert", "run"},
            ancestors=ancestors.get(step.id, set()),
            inputs=input_names,
            step_ids=set(ids.values()),
            self_id=step.id,
            functions=True,
        )
        _check_step(step, raw_step, path, base, smap, report, catalog, configured)
    if triggers is not None:
        _check_triggers(header, triggers, raw, smap, report)
    if header.concurrency_key is not None:
        scope = Scope(names={"inputs", "alert", "run"}, inputs=input_names)
        _template(header.concurrency_key, ("concurrency_key",), scope, smap, report)


# -- inputs and triggers -----------------------------------------------------------------


def _check_inputs(header: RunbookHeader, smap: SourceMap, report: Report) -> None:
    for name, spec in header.inputs.items():
        path = ("inputs", name)
        if spec.enum is not None:
            for i, choice in enumerate(spec.enum):
                try:
                    coerce_value(name, spec.model_copy(update={"enum": None}), choice)
                except InputError as exc:
                    report.error(smap.value((*path, "enum", i)), f"enum value: {exc}")
        if spec.has_default and spec.default is not None:
            expected = _written_type_error(spec.type.value, spec.default)
            if expected:
                report.error(
                    smap.value((*path, "default")),
                    f"default does not fit: input {name!r}: expected {expected}, "
                    f"got {spec.default!r}",
                )
            else:
                try:
                    coerce_value(name, spec, spec.default)
                except InputError as exc:
                    report.error(smap.value((*path, "default")), f"default does not fit: {exc}")
        if spec.pattern is not None and spec.type.value != "string":
            report.error(smap.key((*path, "pattern")), "'pattern' applies only to string inputs")


_WRITTEN_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "string": ((str,), "a string"),
    "integer": ((int,), "an integer"),
    "number": ((int, float), "a number"),
    "boolean": ((bool,), "a boolean (true or false)"),
    "list": ((list,), "a list"),
    "object": ((dict,), "a mapping"),
}


def _written_type_error(kind: str, value: Any) -> str | None:
    """What a value written in the runbook should have been, when it is not of ``kind``.

    Values from people and alerts are coerced ("3" for an integer); a runbook's own
    default is written in YAML and must already have the declared type.
    """
    types, label = _WRITTEN_TYPES[kind]
    if isinstance(value, bool) and kind != "boolean":
        return label
    return None if isinstance(value, types) else label


def _check_triggers(
    header: RunbookHeader,
    triggers: list[tuple[int, Any]],
    raw: dict[str, Any],
    smap: SourceMap,
    report: Report,
) -> None:
    required = [name for name, spec in header.inputs.items() if spec.is_required]
    for index, trigger in triggers:
        path: Path = ("triggers", index)
        if isinstance(trigger, AlertTrigger):
            spec = trigger.alert
            base: Path = (*path, "alert")
            scope = Scope(names={"alert"}, where="an alert trigger")
            if spec.if_ is not None:
                _expression(spec.if_, (*base, "if"), scope, smap, report)
            if spec.dedup_key is not None:
                _template(spec.dedup_key, (*base, "dedup_key"), scope, smap, report)
            if (spec.dedup_key is None) != (spec.dedup_window is None):
                report.error(
                    smap.key((*base, "dedup_key" if spec.dedup_key else "dedup_window")),
                    "'dedup_key' and 'dedup_window' go together: give both or neither",
                )
            mapping, where_pos = spec.inputs, smap.key(base)
        elif isinstance(trigger, ScheduleTrigger):
            base = (*path, "schedule")
            scope = Scope(names=set(), where="a schedule trigger")
            mapping, where_pos = trigger.schedule.inputs, smap.key(base)
        else:
            continue
        for key, value in mapping.items():
            key_path = (*base, "inputs", key)
            if key not in header.inputs:
                hint = suggest(key, header.inputs)
                report.error(smap.key(key_path), f"input {key!r} is not declared{hint}")
                continue
            if isinstance(value, str) and is_template(value):
                _template(value, key_path, scope, smap, report)
            elif not _has_templates(value):
                try:
                    coerce_value(key, header.inputs[key], value)
                except InputError as exc:
                    report.error(smap.value(key_path), str(exc))
        for name in required:
            if name not in mapping:
                kind = "alert" if isinstance(trigger, AlertTrigger) else "schedule"
                report.error(where_pos, f"this {kind} trigger leaves required input {name!r} unset")


# -- steps ---------------------------------------------------------------------------------


def _check_step(
    step: CallStep | ApprovalStep | NotifyStep,
    raw: dict[str, Any],
    path: Path,
    base: Scope,
    smap: SourceMap,
    report: Report,
    catalog: ActionCatalog,
    configured: Callable[[str], bool] | None,
) -> None:
    if step.if_ is not None:
        _expression(step.if_, (*path, "if"), base, smap, report)
    for_each: str | None = getattr(step, "for_each", None)
    inner = _with_names(base, {"item", "index"} if for_each is not None else set())
    if for_each is not None:
        _expression(for_each, (*path, "for_each"), base, smap, report)
    if isinstance(step, CallStep):
        if step.until is not None:
            until_scope = _with_names(inner, {"output"})
            _expression(step.until, (*path, "until"), until_scope, smap, report)
        _check_call(
            step.uses,
            raw.get("with", {}),
            step.with_,
            (*path,),
            inner,
            smap,
            report,
            catalog,
            configured,
        )
        if step.compensate is not None:
            comp_scope = _with_names(inner, set())
            comp_scope.self_allowed = True
            raw_comp = raw.get("compensate", {})
            _check_call(
                step.compensate.uses,
                raw_comp.get("with", {}) if isinstance(raw_comp, dict) else {},
                step.compensate.with_,
                (*path, "compensate"),
                comp_scope,
                smap,
                report,
                catalog,
                configured,
            )
    elif isinstance(step, ApprovalStep):
        gate = step.approval
        _template(gate.prompt, (*path, "approval", "prompt"), base, smap, report)
        if gate.approvers is not None and not gate.approvers.groups:
            listed = len(set(gate.approvers.users))
            if listed and gate.min_approvals > listed:
                report.error(
                    smap.value((*path, "approval", "min_approvals")),
                    f"min_approvals is {gate.min_approvals} but only {listed} approver(s) "
                    "are listed",
                )
        if gate.escalate is not None and gate.timeout is not None:
            if gate.escalate.after >= gate.timeout:
                report.error(
                    smap.value((*path, "approval", "escalate", "after")),
                    "escalate.after must be shorter than the gate's timeout",
                )
    elif isinstance(step, NotifyStep):
        _template(step.notify.text, (*path, "notify", "text"), inner, smap, report)


def _with_names(scope: Scope, extra: set[str]) -> Scope:
    return Scope(
        names=scope.names | extra,
        ancestors=scope.ancestors,
        inputs=scope.inputs,
        step_ids=scope.step_ids,
        self_id=scope.self_id,
        self_allowed=scope.self_allowed,
        functions=scope.functions,
        where=scope.where,
    )


def _check_call(
    ref: str,
    raw_with: Any,
    with_: dict[str, Any],
    path: Path,
    scope: Scope,
    smap: SourceMap,
    report: Report,
    catalog: ActionCatalog,
    configured: Callable[[str], bool] | None,
) -> None:
    with_path = (*path, "with")
    for key_path, text in _strings(with_, with_path):
        _template(text, key_path, scope, smap, report)
    try:
        spec = catalog.lookup(ref)
    except LookupError as exc:
        report.error(smap.value((*path, "uses")), str(exc.args[0]))
        return
    if configured is not None and not configured(spec.connector):
        report.warning_once(
            f"configured:{spec.connector}",
            smap.value((*path, "uses")),
            f"connector {spec.connector!r} is not configured (steps that use it will fail "
            "until its settings are set; see `runbook connectors`)",
        )
    _check_arguments(spec, with_, path, smap, report)


def _check_arguments(
    spec: Any, with_: dict[str, Any], path: Path, smap: SourceMap, report: Report
) -> None:
    model: type[BaseModel] = spec.input_model
    if model.model_config.get("extra") == "allow":
        return
    fields = {info.alias or name: name for name, info in model.model_fields.items()}
    with_path = (*path, "with")
    for key, value in with_.items():
        if key not in fields:
            hint = suggest(key, fields)
            accepted = ", ".join(fields) or "none"
            report.error(
                smap.key((*with_path, key)),
                f"{spec.ref} takes no argument {key!r}{hint} (arguments: {accepted})",
            )
            continue
        if not _has_templates(value):
            problem = _argument_problem(model, fields[key], value)
            if problem:
                report.error(smap.value((*with_path, key)), f"argument {key!r}: {problem}")
    step_path = path if path[-1] != "compensate" else path[:-1]
    for alias, name in fields.items():
        if model.model_fields[name].is_required() and alias not in with_:
            # nothing to point at but the step: its id (SPEC §1.6)
            where = smap.value((*step_path, "id"))
            report.error(where, f"missing argument {alias!r} for {spec.ref}")


@functools.lru_cache(maxsize=4096)
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    """A validator for one argument, with the field's constraints (``ge=0``, ...)."""
    info = model.model_fields[name]
    # The field's own constraints, not its FieldInfo: model-only attributes
    # (an alias such as http.request's ``json``) mean nothing to a TypeAdapter
    # and would make pydantic warn on the terminal.
    metadata: list[Any] = list(info.metadata)
    if info.discriminator is not None:
        metadata.append(Field(discriminator=info.discriminator))
    annotation: Any = info.annotation
    if not metadata:
        return TypeAdapter(annotation)
    annotated: Any = Annotated[(annotation, *metadata)]
    return TypeAdapter(annotated)


def _argument_problem(model: type[BaseModel], name: str, value: Any) -> str | None:
    try:
        _adapter(model, name).validate_python(value)
    except ValidationError as exc:
        return error_message(exc.errors(include_url=False)[0])
    except Exception:  # a connector's odd annotation: leave it to the call
        return None
    return None


def _has_templates(value: Any) -> bool:
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, dict):
        return any(_has_templates(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_templates(v) for v in value)
    return False


def _strings(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(value, str):
        if is_template(value):
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*path, i))


# -- templates -------------------------------------------------------------------------------


def _template(text: str, path: Path, scope: Scope, smap: SourceMap, report: Report) -> None:
    try:
        info = analyse_template(text)
    except TemplateError as exc:
        report.error(smap.line_in(path, exc.line), exc.message)
        return
    _check_refs(info, path, scope, smap, report)


def _expression(text: str, path: Path, scope: Scope, smap: SourceMap, report: Report) -> None:
    try:
        info = analyse_expression(text)
    except TemplateError as exc:
        report.error(smap.line_in(path, exc.line), exc.message)
        return
    _check_refs(info, path, scope, smap, report)


def _check_refs(info: Analysis, path: Path, scope: Scope, smap: SourceMap, report: Report) -> None:
    if info.literal:
        return
    problems = _ref_problems(info, scope)
    if problems:
        pos = smap.value(path)
        for message in problems:
            report.error(pos, message)


def _ref_problems(info: Analysis, scope: Scope) -> list[str]:
    """What is wrong with the names a template uses where it stands (usually nothing)."""
    if info.private:
        return [f"access to private attribute {info.private[0]!r} is not allowed in templates"]
    problems: list[str] = []
    if info.filters or info.tests:
        env = environment()
        for name in sorted(info.filters - env.filters.keys()):
            problems.append(f"unknown filter {name!r}{suggest(name, env.filters)}")
        for name in sorted(info.tests - env.tests.keys()):
            problems.append(f"unknown test {name!r}{suggest(name, env.tests)}")
    if info.calls and not scope.functions:
        for name in sorted(info.calls & RUN_FUNCTIONS):
            problems.append(f"{name}() is not available in {scope.where or 'this place'}")
    elif scope.functions:
        problems.extend(dict.fromkeys(info.misused))
    allowed = scope.allowed
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for ref in info.refs:
        key = (ref.root, ref.path[:3])
        if key in seen or (
            ref.root in RUN_FUNCTIONS and (scope.functions or ref.root in info.calls)
        ):
            continue
        seen.add(key)
        message = _ref_problem(ref.root, ref.path, scope, allowed)
        if message:
            problems.append(message)
    return problems


def _ref_problem(
    root: str, path: tuple[str, ...], scope: Scope, allowed: frozenset[str]
) -> str | None:
    if root not in allowed:
        if root in ("item", "index"):
            return f"{root!r} is only defined in a step with for_each"
        if root == "output":
            return "'output' is only defined in 'until' (the attempt's result)"
        if root in ("inputs", "steps", "run") and scope.where:
            return (
                f"{root!r} is not available in {scope.where} (only 'alert' is)"
                if ("alert" in scope.names)
                else f"{root!r} is not available in {scope.where}"
            )
        hint = suggest(root, sorted(scope.names))
        return f"unknown name {root!r}{hint}"
    if root == "inputs" and path:
        if path[0] not in scope.inputs:
            hint = suggest(path[0], sorted(scope.inputs))
            return f"input {path[0]!r} is not declared{hint}"
    if root == "steps" and path:
        target = path[0]
        if target == scope.self_id:
            if not scope.self_allowed:
                return f"step {target!r} cannot refer to its own result here"
        elif target not in scope.step_ids:
            return f"unknown step {target!r}{suggest(target, sorted(scope.step_ids))}"
        elif target not in scope.ancestors:
            return (
                f"step {target!r} does not run before this one; add it to needs to use its result"
            )
        if len(path) > 1 and path[1] not in STEP_FIELDS:
            hint = suggest(path[1], STEP_FIELDS)
            return f"steps.{target} has output, outcome, error and attempts, not {path[1]!r}{hint}"
    if root == "run" and path and path[0] not in RUN_FIELDS:
        return f"run has no field {path[0]!r}{suggest(path[0], RUN_FIELDS)}"
    return None
