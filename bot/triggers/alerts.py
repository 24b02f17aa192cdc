"""From an alert to runs (pure): which triggers it matches and the inputs they map to.

A body posted to ``/alerts/{source}`` holds one alert, or, in Prometheus
Alertmanager's webhook format (an object with ``alerts: [...]`` and
``version``), several: :func:`split_alerts` takes those one by one and leaves
out the resolved ones. For each alert, every alert trigger naming the source
is tried in turn by :func:`map_alert`: its ``if`` expression decides whether
it matches; its ``inputs`` templates and ``dedup_key`` are rendered with the
alert as ``alert``. Only runbook text is ever compiled as a template: an alert
field holding ``{{ 7*7 }}`` stays that literal text.

Coercing the mapped inputs to their declared types is the engine's job
(:meth:`bot.engine.engine.Engine.start_run`), as for every other way in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.runbook.model import AlertSpec, AlertTrigger, Runbook
from bot.runbook.templates import TemplateError, evaluate, render_value


@dataclass(frozen=True, slots=True)
class AlertRoute:
    """One alert trigger of one runbook.

    Attributes:
        runbook: the runbook's name.
        index: the trigger's position in the runbook's ``triggers``.
        spec: the trigger.
    """

    runbook: str
    index: int
    spec: AlertSpec

    @property
    def source(self) -> str:
        return self.spec.source


@dataclass(frozen=True, slots=True)
class Mapped:
    """A trigger whose ``if`` held, with the inputs and dedup key it maps the alert to."""

    route: AlertRoute
    inputs: dict[str, Any]
    dedup: tuple[str, float] | None


@dataclass(frozen=True, slots=True)
class MappingFailure:
    """A trigger that could not be evaluated or mapped for this alert: no run, and why.

    Attributes:
        matched: whether its ``if`` held (a failed ``if`` did not).
        input_name: the input whose mapping failed, when one did.
    """

    route: AlertRoute
    error: str
    matched: bool
    input_name: str | None = None


def alert_routes(runbooks: Iterable[Runbook]) -> dict[str, list[AlertRoute]]:
    """Alert triggers by source, in runbook-name then trigger order."""
    routes: dict[str, list[AlertRoute]] = {}
    for runbook in sorted(runbooks, key=lambda rb: rb.name):
        for index, trigger in enumerate(runbook.triggers):
            if isinstance(trigger, AlertTrigger):
                route = AlertRoute(runbook.name, index, trigger.alert)
                routes.setdefault(route.source, []).append(route)
    return routes


def is_alertmanager(payload: Mapping[str, Any]) -> bool:
    """Whether a body is an Alertmanager webhook message (``alerts`` list and ``version``)."""
    return isinstance(payload.get("alerts"), list) and "version" in payload


def split_alerts(payload: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The alerts a body carries that may start runs, and problems with the others.

    An Alertmanager message yields each of its alerts whose ``status`` is not
    ``resolved``; any other object is one alert.
    """
    if not is_alertmanager(payload):
        return [payload], []
    alerts: list[dict[str, Any]] = []
    problems: list[str] = []
    for position, alert in enumerate(payload["alerts"]):
        if not isinstance(alert, dict):
            problems.append(f"alerts[{position}] is not an object")
            continue
        if alert.get("status") == "resolved":
            continue
        alerts.append(alert)
    return alerts, problems


def map_alert(route: AlertRoute, alert: Mapping[str, Any]) -> Mapped | MappingFailure | None:
    """Try one trigger on one alert: None when its ``if`` is false."""
    context = {"alert": alert}
    spec = route.spec
    if spec.if_ is not None:
        try:
            holds = bool(evaluate(spec.if_, context))
        except TemplateError as exc:
            if exc.undefined:  # alerts differ in shape: one without the field does not match
                return None
            return MappingFailure(route, f"if: {exc.message}", matched=False)
        if not holds:
            return None
    inputs: dict[str, Any] = {}
    for name, template in spec.inputs.items():
        try:
            inputs[name] = render_value(template, context)
        except TemplateError as exc:
            return MappingFailure(
                route, f"input {name!r}: {exc.message}", matched=True, input_name=name
            )
    dedup = None
    if spec.dedup_key is not None and spec.dedup_window is not None:
        try:
            key = render_value(spec.dedup_key, context)
        except TemplateError as exc:
            return MappingFailure(route, f"dedup_key: {exc.message}", matched=True)
        dedup = (key if isinstance(key, str) else _key_text(key), float(spec.dedup_window))
    return Mapped(route, inputs, dedup)


def _key_text(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)
