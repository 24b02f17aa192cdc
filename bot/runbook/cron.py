"""Five-field cron expressions: parsing (for load-time checks) and next fire times.

Fields: minute, hour, day of month, month, day of week. Each accepts ``*``,
numbers, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, lists ``a,b``, and
month / weekday names (``jan``, ``mon``). Day of week 0 and 7 are Sunday.
As in Vixie cron, when both day fields are restricted a day matches either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MONTHS = {
    name: i
    for i, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_DAYS = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


@dataclass(frozen=True, slots=True)
class CronExpr:
    """A parsed cron expression."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def matches(self, when: datetime) -> bool:
        if when.minute not in self.minutes or when.hour not in self.hours:
            return False
        if when.month not in self.months:
            return False
        weekday = (when.weekday() + 1) % 7
        day_ok = when.day in self.days
        wday_ok = weekday in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or wday_ok
        return day_ok and wday_ok

    def next_after(self, after: datetime, timezone: str = "UTC") -> datetime:
        """The first firing strictly after ``after`` (aware), in UTC-aware form."""
        zone = ZoneInfo(timezone)
        local = after.astimezone(zone).replace(second=0, microsecond=0) + timedelta(minutes=1)
        # Walk minute by minute but skip whole hours/days that cannot match.
        for _ in range(366 * 24 * 60 * 5):
            if local.month not in self.months:
                local = (local.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(local):
                local = local.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if local.hour not in self.hours:
                local = local.replace(minute=0) + timedelta(hours=1)
                continue
            if local.minute not in self.minutes:
                local += timedelta(minutes=1)
                continue
            return local.astimezone(ZoneInfo("UTC"))
        raise ValueError(f"cron expression {self.text!r} never fires")

    def _day_matches(self, when: datetime) -> bool:
        weekday = (when.weekday() + 1) % 7
        day_ok = when.day in self.days
        wday_ok = weekday in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or wday_ok
        return day_ok and wday_ok


def _parse_value(token: str, names: dict[str, int], field: str) -> int:
    lowered = token.lower()
    if lowered in names:
        return names[lowered]
    if not token.isdigit():
        raise ValueError(f"bad {field} value {token!r}")
    return int(token)


def _parse_field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ValueError(f"empty item in {field} field")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"bad step {step_text!r} in {field} field")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _parse_value(first, names, field)
            end = _parse_value(last, names, field)
        else:
            start = _parse_value(base, names, field)
            end = high if step_text else start
        for bound in (start, end):
            if not low <= bound <= high:
                raise ValueError(f"{field} value {bound} out of range {low}-{high}")
        if start > end:
            raise ValueError(f"range {base!r} in {field} field runs backwards")
        values.update(range(start, end + 1, step))
    return values


def parse_cron(text: str) -> CronExpr:
    """Parse a cron expression.

    Raises:
        ValueError: naming the field that is wrong.
    """
    expr = _ALIASES.get(text.strip().lower(), text)
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"bad cron expression {text!r}: expected 5 fields "
            "(minute hour day-of-month month day-of-week), got "
            f"{len(fields)}"
        )
    try:
        parsed = [
            _parse_field(value, name, low, high, names)
            for value, (name, low, high, names) in zip(fields, _FIELDS, strict=True)
        ]
    except ValueError as exc:
        raise ValueError(f"bad cron expression {text!r}: {exc}") from None
    weekdays = {0 if d == 7 else d for d in parsed[4]}
    return CronExpr(
        text=text,
        minutes=frozenset(parsed[0]),
        hours=frozenset(parsed[1]),
        days=frozenset(parsed[2]),
        months=frozenset(parsed[3]),
        weekdays=frozenset(weekdays),
        days_restricted=fields[2] != "*",
        weekdays_restricted=fields[4] != "*",
    )


def check_timezone(name: str) -> None:
    """Raise ValueError if ``name`` is not a known IANA time zone."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
