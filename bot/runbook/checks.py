"""Turning pydantic validation errors into positioned, human messages."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from bot.runbook.model import RunbookHeader
from bot.runbook.source import Path, Pos, SourceMap

_FRIENDLY_PATTERNS = {
    "name": "a runbook name is lowercase letters, digits and '-', starting with a letter or digit "
    "(at most 63 characters)",
    "id": "a step id is lowercase letters, digits and '_', not starting with a digit",
    "uses": "'uses' names an action as connector.action, e.g. core.noop",
    "source": "an alert source is lowercase letters, digits, '-' and '_'",
    "command": "a command word is lowercase letters, digits, '-' and '_'",
}


def suggest(word: str, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` when something close exists, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unwrap(annotation: Any) -> list[Any]:
    """The model classes an annotation may hold (through Optional, list, dict, Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        found: list[Any] = []
        for arg in typing.get_args(annotation):
            found.extend(_unwrap(arg))
        return found
    if origin in (list, dict):
        args = typing.get_args(annotation)
        return _unwrap(args[-1]) if args else []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class found by following ``loc`` from ``model``."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        field = _field(current, str(part))
        if field is None:
            # a dict key (inputs.<name>) keeps the value type of the dict
            continue
        candidates = _unwrap(field.annotation)
        current = candidates[0] if candidates else None
    return current


def _field(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def allowed_keys(model: type[BaseModel]) -> list[str]:
    """The keys a mapping read into ``model`` may have."""
    keys = [info.alias or name for name, info in model.model_fields.items()]
    if model is RunbookHeader:
        keys.append("steps")  # validated separately, but a top-level key all the same
    return keys


_EXPECTED = {
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "list_type": "a list",
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "float_type": "a number",
    "float_parsing": "a number",
}
_DICT_KEY_WORDS = {"inputs": "input name", "fields": "field name"}


def describe_value(value: Any) -> str:
    """A short, YAML-flavoured description of a value for messages."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _clean(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg[:1].lower() + msg[1:] if msg[:2] != msg[:2].upper() else msg


def error_message(err: Any) -> str:
    """A short message for one pydantic error, in the words of runbook authors."""
    kind = err["type"]
    given = err.get("input")
    loc = err["loc"]
    if kind == "list_type" and loc and loc[-1] == "needs" and isinstance(given, str):
        return f"expected a list of step ids: write needs: [{given}]"
    expected = _EXPECTED.get(kind)
    if expected is not None:
        return f"expected {expected}, got {describe_value(given)}"
    if kind in ("enum", "literal_error"):
        return f"{_clean(err['msg'])}, not {describe_value(given)}"
    return _clean(err["msg"])


def describe_errors(
    exc: ValidationError,
    model: type[BaseModel],
    base: Path,
    smap: SourceMap,
    *,
    missing_at: Pos | None = None,
) -> list[tuple[Pos, str]]:
    """Positioned messages for every error of one validation."""
    results: list[tuple[Pos, str]] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        if loc and loc[-1] == "[key]":
            key_path = (*base, *loc[:-1])
            key = str(loc[-2]) if len(loc) >= 2 else "?"
            what = _DICT_KEY_WORDS.get(str(loc[-3]) if len(loc) >= 3 else "", "name")
            results.append(
                (
                    smap.key(key_path),
                    f"bad {what} {key!r}: use lowercase letters, digits and '_', "
                    "not starting with a digit",
                )
            )
            continue
        path = (*base, *loc)
        dotted = ".".join(str(p) for p in loc)
        if not loc and missing_at is not None:
            # a rule about the whole step (``until`` and ``poll`` go together): its id
            results.append((missing_at, _clean(err["msg"])))
            continue
        if kind == "extra_forbidden":
            parent = model_at(model, loc[:-1])
            key = str(loc[-1])
            hint = suggest(key, allowed_keys(parent)) if parent is not None else ""
            results.append((smap.key(path), f"unknown key {key!r}{hint}"))
        elif kind == "missing":
            key = str(loc[-1])
            where = ".".join(str(p) for p in loc[:-1])
            scope = f" in {where}" if where else ""
            pos = missing_at if missing_at is not None else smap.value(path[:-1])
            results.append((pos, f"missing required key {key!r}{scope}"))
        elif kind == "string_pattern_mismatch" and str(loc[-1]) in _FRIENDLY_PATTERNS:
            value = err.get("input")
            results.append(
                (smap.value(path), f"bad {loc[-1]} {value!r}: {_FRIENDLY_PATTERNS[str(loc[-1])]}")
            )
        else:
            msg = error_message(err)
            prefix = f"{dotted}: " if dotted and kind != "value_error" else ""
            if (
                kind == "value_error"
                and dotted
                and not any(
                    word in msg for word in ("duration", "cron", "regex", "time zone", "schedule")
                )
            ):
                prefix = f"{dotted}: "
            results.append((smap.value(path), f"{prefix}{msg}"))
    return results
