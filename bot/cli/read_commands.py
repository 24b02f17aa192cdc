"""Read-only commands about runbooks: validate, list, graph, connectors."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Literal, get_args, get_origin

from bot.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliExit
from bot.cli.context import cpu_jobs, make_context
from bot.runbook.durations import format_duration
from bot.runbook.loader import load_paths
from bot.runbook.model import (
    AlertTrigger,
    ApprovalStep,
    CallStep,
    CommandTrigger,
    Runbook,
    trigger_document,
)


def cmd_validate(args: argparse.Namespace) -> int:
    ctx = make_context(args)
    targets = args.paths or [str(ctx.settings.runbooks_dir)]
    result = load_paths(
        targets, ctx.registry, configured=ctx.configured, jobs=cpu_jobs(), keep_models=False
    )
    errors, warnings = result.errors, result.warnings
    if args.json:
        print(
            json.dumps(
                {
                    "valid": not errors,
                    "files": result.files,
                    "runbooks": result.names,
                    "errors": [d.as_dict() for d in errors],
                    "warnings": [d.as_dict() for d in warnings],
                },
                indent=2,
            )
        )
    else:
        for diag in result.diagnostics:
            print(str(diag), file=sys.stderr if diag.severity == "error" else sys.stdout)
        for warning in ctx.registry.warnings:
            print(f"warning: {warning}")
        if errors:
            files = len({d.path for d in errors})
            print(
                f"{len(errors)} error{'s' if len(errors) != 1 else ''} in {files} "
                f"file{'s' if files != 1 else ''}; {len(result.names)} of {result.files} "
                "runbooks valid",
                file=sys.stderr,
            )
        else:
            count = len(result.names)
            print(f"{count} runbook{'s' if count != 1 else ''} valid")
    return EXIT_FAILED if errors else EXIT_OK


def trigger_summary(trigger: Any) -> str:
    """One line describing a trigger."""
    if isinstance(trigger, CommandTrigger):
        return f"/runbook {trigger.command}"
    if isinstance(trigger, AlertTrigger):
        text = f"alert {trigger.alert.source}"
        if trigger.alert.if_:
            text += f" if {trigger.alert.if_}"
        return text
    spec = trigger.schedule
    if spec.cron:
        return f"schedule {spec.cron} ({spec.timezone})"
    every: float = spec.every or 0.0
    return f"schedule every {format_duration(every)}"


def _report_load_problems(result: Any) -> None:
    if result.errors:
        files = len({d.path for d in result.errors})
        print(
            f"warning: {files} runbook file{'s have' if files != 1 else ' has'} errors and "
            f"{'are' if files != 1 else 'is'} left out (see `runbook validate`)",
            file=sys.stderr,
        )


def cmd_list(args: argparse.Namespace) -> int:
    ctx = make_context(args)
    result = ctx.load_runbooks(jobs=cpu_jobs())
    _report_load_problems(result)
    loaded = sorted(result.runbooks.values(), key=lambda lr: lr.name)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": lr.name,
                        "title": lr.runbook.display_title,
                        "description": lr.runbook.description,
                        "path": lr.path,
                        "triggers": [trigger_document(t) for t in lr.runbook.triggers],
                    }
                    for lr in loaded
                ],
                indent=2,
            )
        )
        return EXIT_OK
    if not loaded:
        print(f"no runbooks in {ctx.settings.runbooks_dir}")
        return EXIT_OK
    width = max(len(lr.name) for lr in loaded)
    for lr in loaded:
        triggers = ", ".join(trigger_summary(t) for t in lr.runbook.triggers) or "manual"
        print(f"{lr.name:<{width}}  {lr.runbook.display_title}")
        print(f"{'':<{width}}  triggers: {triggers}")
    return EXIT_OK


def _step_label(step: Any) -> str:
    return _one_line(str(step.title or step.id))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _kind(step: Any) -> str:
    if isinstance(step, CallStep):
        return step.uses
    if isinstance(step, ApprovalStep):
        return "approval"
    return "notify"


def _mermaid_text(text: str) -> str:
    """Text inside a quoted Mermaid label or an edge label: no quotes, pipes or markup."""
    return _one_line(text).replace('"', "'").replace("|", "#124;")


def _dot_text(text: str) -> str:
    return _one_line(text).replace("\\", "\\\\").replace('"', '\\"')


_MERMAID_WORDS = frozenset(
    {
        "end",
        "graph",
        "subgraph",
        "flowchart",
        "style",
        "classdef",
        "class",
        "click",
        "linkstyle",
        "direction",
        "default",
        "call",
        "href",
    }
)


def _mermaid_id(step_id: str) -> str:
    """A step id as a Mermaid node id: keywords such as ``end`` are capitalised (ids never are)."""
    return step_id.capitalize() if step_id in _MERMAID_WORDS else step_id


def render_graph(runbook: Runbook, fmt: str) -> str:
    """The step graph as text (a line per step), Mermaid or Graphviz dot."""
    steps = runbook.steps
    if fmt == "text":
        width = max(len(s.id) for s in steps)
        lines = []
        for i, step in enumerate(steps):
            needs = runbook.needs_of(i)
            extra = f"  if: {_one_line(step.if_)}" if step.if_ else ""
            lines.append(
                f"{step.id:<{width}}  {_step_label(step)}  [{_kind(step)}]  "
                f"needs: {', '.join(needs) if needs else '-'}{extra}"
            )
        return "\n".join(lines)
    if fmt == "mermaid":
        lines = ["flowchart TD"]
        for step in steps:
            label = _mermaid_text(_step_label(step))
            node = _mermaid_id(step.id)
            if isinstance(step, ApprovalStep):
                lines.append(f'  {node}{{{{"{label}"}}}}')
            else:
                lines.append(f'  {node}["{label}"]')
        for i, step in enumerate(steps):
            for need in runbook.needs_of(i):
                cond = _mermaid_text(step.if_ or "")
                source, target = _mermaid_id(need), _mermaid_id(step.id)
                lines.append(
                    f"  {source} -->|{cond}| {target}" if cond else f"  {source} --> {target}"
                )
        return "\n".join(lines)
    lines = [f'digraph "{runbook.name}" {{', "  rankdir=TB;", "  node [shape=box];"]
    for step in steps:
        shape = ", shape=diamond" if isinstance(step, ApprovalStep) else ""
        lines.append(f'  "{step.id}" [label="{_dot_text(_step_label(step))}"{shape}];')
    for i, step in enumerate(steps):
        for need in runbook.needs_of(i):
            cond = _dot_text(step.if_ or "")
            attr = f' [label="{cond}"]' if cond else ""
            lines.append(f'  "{need}" -> "{step.id}"{attr};')
    lines.append("}")
    return "\n".join(lines)


def cmd_graph(args: argparse.Namespace) -> int:
    ctx = make_context(args)
    result = ctx.load_runbooks(jobs=cpu_jobs())
    loaded = result.get(args.name)
    if loaded is None:
        bad = [d for d in result.errors]
        if any(_names_runbook(d.path, args.name) for d in bad):
            raise CliExit(EXIT_USAGE, f"runbook {args.name!r} has errors (see `runbook validate`)")
        raise CliExit(EXIT_USAGE, f"unknown runbook {args.name!r}")
    if args.json:
        print(
            json.dumps(
                {
                    "name": loaded.name,
                    "steps": [
                        {
                            "id": s.id,
                            "title": s.title,
                            "kind": _kind(s),
                            "needs": loaded.runbook.needs_of(i),
                            "if": s.if_,
                        }
                        for i, s in enumerate(loaded.runbook.steps)
                    ],
                    args.format: render_graph(loaded.runbook, args.format),
                },
                indent=2,
            )
        )
    else:
        print(render_graph(loaded.runbook, args.format))
    return EXIT_OK


def _names_runbook(path: str, name: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return f"name: {name}" in head


def cmd_connectors(args: argparse.Namespace) -> int:
    ctx = make_context(args)
    registry = ctx.registry
    data = []
    for name in registry.names():
        cls = registry.connector_class(name)
        settings = [
            {
                "env": cls.env_name(field),
                "required": info.is_required(),
                "secret": field in cls.secret_settings(),
                "set": bool(ctx.env.get(cls.env_name(field))),
            }
            for field, info in cls.Settings.model_fields.items()
        ]
        actions = []
        for spec in sorted(cls.actions().values(), key=lambda s: s.name):
            actions.append(
                {
                    "name": spec.name,
                    "ref": spec.ref,
                    "description": spec.description,
                    "mutating": spec.mutating,
                    "idempotent": spec.idempotent,
                    "inputs": _model_fields(spec.input_model, any_keys=True),
                    "outputs": _model_fields(spec.output_model) if spec.output_model else [],
                }
            )
        data.append(
            {
                "name": name,
                "title": cls.title or name,
                "configured": cls.is_configured(ctx.env),
                "settings": settings,
                "actions": actions,
            }
        )
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    conn: Any
    for conn in data:
        state = "configured" if conn["configured"] else "not configured"
        print(f"{conn['name']} — {conn['title']} ({state})")
        for setting in conn["settings"]:
            mark = "set" if setting["set"] else ("required" if setting["required"] else "optional")
            print(f"    setting {setting['env']} ({mark})")
        for act in conn["actions"]:
            flag = (
                "read-only"
                if not act["mutating"]
                else ("mutating, idempotent" if act["idempotent"] else "mutating")
            )
            ins = ", ".join(
                "any keys"
                if f["name"] == "*"
                else f"{f['name']}{'' if f['required'] else '?'}: {f['type']}"
                for f in act["inputs"]
            ) or ("any keys" if act["name"] == "echo" else "—")
            print(f"  {act['ref']}({ins})  [{flag}]")
            if act["description"]:
                print(f"      {act['description']}")
            if act["outputs"]:
                outs = ", ".join(f["name"] for f in act["outputs"])
                print(f"      → {{{outs}}}")
    return EXIT_OK


def _type_name(annotation: Any) -> str:
    """A field's type for people: ``str``, ``int | null``, ``'low' | 'high'`` for a Literal."""
    if get_origin(annotation) is Literal:
        return " | ".join(repr(choice) for choice in get_args(annotation))
    if isinstance(annotation, type):
        return annotation.__name__
    text = str(annotation)
    return text.replace("typing.", "").replace("NoneType", "null")


def _model_fields(model: Any, *, any_keys: bool = False) -> list[dict[str, Any]]:
    if model is None:
        return []
    fields = []
    for name, info in model.model_fields.items():
        field: dict[str, Any] = {
            "name": info.alias or name,
            "type": _type_name(info.annotation),
            "required": info.is_required(),
            "description": info.description,
        }
        if not info.is_required() and info.default_factory is None:
            field["default"] = info.default if _plain(info.default) else repr(info.default)
        fields.append(field)
    if any_keys and model.model_config.get("extra") == "allow":
        fields.append({"name": "*", "type": "any", "required": False, "description": "any keys"})
    return fields


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))
