"""Durations written as strings: ``250ms``, ``30s``, ``5m``, ``2h``, ``1d`` (or ``1h30m``)."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
MAX_DURATION = 366 * 86400.0  # a year and a day: longer is a typo, and overflows clocks


def parse_duration(text: str) -> float:
    """Return the duration in seconds.

    Raises:
        ValueError: with a message naming the accepted forms.
    """
    value = text.strip()
    if not _WHOLE.fullmatch(value):
        raise ValueError(
            f"bad duration {text!r}: use a number with a unit, e.g. 250ms, 30s, 5m, 2h, 1d"
        )
    if len(value) > 64:
        raise ValueError(f"bad duration {text[:64]!r}…: too long")
    seconds = sum(float(num) * _UNITS[unit] for num, unit in _PART.findall(value))
    if seconds > MAX_DURATION:
        raise ValueError(f"duration {text!r} is longer than 366d")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds compactly (``1h30m``, ``45s``, ``250ms``) for people."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            count, whole = divmod(whole, size)
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
