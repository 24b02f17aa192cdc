"""Coercing run inputs to their declared types, the same way for every channel.

Text from the command line and chat is parsed (``list``/``object`` as JSON, a
``list`` also comma-separated, ``boolean`` from true/false/yes/no/1/0); JSON
values from the API and alerts are checked and converted where lossless.
``pattern`` is matched with RE2 (linear time), search semantics as in JSON
Schema: anchor it with ``^...$`` to match the whole value.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from bot.errors import InputError
from bot.runbook.model import InputSpec, InputType

_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}
MAX_TEXT = 65_536


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """Compile ``pattern`` with RE2 (linear-time matching, no backtracking).

    RE2 has no backreferences or lookaround; such patterns are refused.

    Raises:
        ValueError: with RE2's reason, e.g. ``missing ): (a``.
    """
    import re2

    options = re2.Options()
    options.log_errors = False  # RE2 would print its own complaint on stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from None


def _fail(name: str, message: str) -> InputError:
    return InputError(f"input {name!r}: {message}", input_name=name)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def coerce_value(name: str, spec: InputSpec, value: Any, *, from_text: bool = False) -> Any:
    """Return ``value`` converted to ``spec.type``.

    Raises:
        InputError: naming the input and what was wrong.
    """
    kind = spec.type
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise _fail(name, f"value is longer than {MAX_TEXT} characters")
    if kind is InputType.STRING:
        if isinstance(value, bool):
            result: Any = "true" if value else "false"
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            result = str(value)
        elif isinstance(value, str):
            result = value
        else:
            raise _fail(name, f"expected a string, got {type(value).__name__}")
    elif kind is InputType.INTEGER:
        result = _to_int(name, value)
    elif kind is InputType.NUMBER:
        result = _to_number(name, value)
    elif kind is InputType.BOOLEAN:
        result = _to_bool(name, value)
    elif kind is InputType.LIST:
        result = _to_list(name, value, from_text)
    else:
        result = _to_object(name, value)
    if spec.enum is not None and result not in spec.enum:
        choices = ", ".join(str(choice) for choice in spec.enum)
        raise _fail(name, f"{_short(result)} is not one of: {choices}")
    if spec.pattern is not None and isinstance(result, str):
        if compile_pattern(spec.pattern).search(result) is None:
            raise _fail(name, f"{_short(result)} does not match pattern {spec.pattern}")
    return result


_WHOLE_DECIMAL = re.compile(r"[+-]?[0-9]+\.0+")


def _to_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _fail(name, "expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text, 10)
        except ValueError:
            pass
        if _WHOLE_DECIMAL.fullmatch(text):  # "4.0" as text is 4, like the JSON number 4.0
            return int(text.partition(".")[0], 10)
    raise _fail(name, f"expected an integer, got {_short(value)}")


def _to_number(name: str, value: Any) -> int | float:
    if isinstance(value, bool):
        raise _fail(name, "expected a number, got a boolean")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(name, "expected a finite number")
        return value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return int(number) if number.is_integer() and "." not in value else number
    raise _fail(name, f"expected a number, got {_short(value)}")


def _to_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise _fail(name, f"expected true/false/yes/no/1/0, got {_short(value)}")


def _to_list(name: str, value: Any, from_text: bool) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                raise _fail(name, f"not a valid JSON list: {exc}") from None
            if isinstance(parsed, list):
                return parsed
        if from_text or not text.startswith("["):
            return [part.strip() for part in text.split(",") if part.strip()]
    raise _fail(name, f"expected a list, got {_short(value)}")


def _to_object(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise _fail(name, f"not a valid JSON object: {exc}") from None
        if isinstance(parsed, dict):
            return parsed
    raise _fail(name, f"expected an object, got {_short(value)}")


def coerce_inputs(
    specs: Mapping[str, InputSpec],
    given: Mapping[str, Any],
    *,
    from_text: bool = False,
) -> dict[str, Any]:
    """Coerce every given input, fill defaults, and insist on required ones.

    Raises:
        InputError: the first problem, naming the input (unknown inputs too).
    """
    unknown = sorted(set(given) - set(specs))
    if unknown:
        declared = ", ".join(sorted(specs)) or "none"
        raise _fail(unknown[0], f"not an input of this runbook (inputs: {declared})")
    result: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in given and given[name] is not None:
            result[name] = coerce_value(name, spec, given[name], from_text=from_text)
        elif spec.has_default:
            result[name] = spec.default
        elif spec.is_required:
            hint = f" ({spec.description})" if spec.description else ""
            raise _fail(name, f"required but not given{hint}")
        else:
            result[name] = None
    return result


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """Split ``key=value`` words (from ``-i`` options or chat) into a dict.

    Raises:
        InputError: for a word without ``=``.
    """
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"expected key=value, got {pair!r}")
        result[key.strip()] = value
    return result
