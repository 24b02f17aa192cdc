"""What valid runbooks may do, and the values the model keeps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.errors import InputError
from bot.runbook.cron import parse_cron
from bot.runbook.durations import format_duration, parse_duration
from bot.runbook.inputs import coerce_value
from bot.runbook.loader import load_text
from bot.runbook.model import InputSpec, InputType
from connectors.registry import ConnectorRegistry

VALID = """\
name: valid-everything
inputs:
  host: {type: string}
  hosts: {type: list, default: []}
  dry: {type: boolean, default: false}
triggers:
  - alert:
      source: alertmanager
      if: alert.labels.severity == 'critical' and alert.status != 'resolved'
      inputs: {host: "{{ alert.labels.instance | replace(':9100', '') }}"}
      dedup_key: "{{ alert.fingerprint }}"
      dedup_window: 30m
  - schedule: {every: 1d, inputs: {host: canary}}
steps:
  - id: find
    uses: core.echo
    with: {host: "{{ inputs.host }}", when: "{{ run.started_at }}", who: "{{ run.requester }}"}
  - id: each
    uses: core.echo
    for_each: inputs.hosts + [inputs.host]
    with: {host: "{{ item }}", n: "{{ index + 1 }}", dev: "{{ steps.find.output.host }}"}
    compensate:
      uses: core.echo
      with: {undo: "{{ steps.each.output }}", host: "{{ item }}"}
  - id: wait
    uses: core.flaky
    with: {failures: 0}
    until: output.attempt >= 1 and steps.each.outcome == 'succeeded'
    poll: {every: 1s, timeout: 1m}
  - id: gate
    needs: [find]
    if: not inputs.dry
    approval:
      prompt: "Go on {{ inputs.host }} ({{ steps.find.output.host }})?"
      approvers: {users: [U1, U2], groups: [leads]}
      min_approvals: 5
  - id: report
    needs: [wait, gate]
    notify:
      text: |
        {% for line in range(2) %}{{ loop.index }}: {{ steps.gate.output.decision }}{% endfor %}
        {{ dict(a=1) | tojson }} {{ steps.find.error }} {{ steps.wait.attempts }}
  - id: cleanup
    needs: [report]
    if: failure() or steps.report.outcome == 'failed' or success()
    for_each: "[1, 2, 3]"
    notify: {text: "{{ item }} of {{ alert.labels | default({}) }}"}
"""


def test_a_runbook_using_every_context_name_where_allowed_is_valid(
    registry: ConnectorRegistry,
) -> None:
    result = load_text(VALID, "valid.yaml", registry)

    assert result.diagnostics == []
    assert result.loaded is not None
    runbook = result.loaded.runbook
    assert runbook.needs_of(2) == ["each"]
    assert runbook.needs_of(0) == []
    assert [t.schedule.every for t in runbook.triggers[1:]] == [86400.0]  # type: ignore[union-attr]


def test_a_step_may_use_any_ancestor_not_just_its_direct_needs(
    registry: ConnectorRegistry,
) -> None:
    text = """\
name: ancestors
steps:
  - {id: a, uses: core.echo, with: {x: 1}}
  - {id: b, uses: core.echo, needs: [a]}
  - {id: c, uses: core.echo, needs: [b], with: {x: "{{ steps.a.output.x }}"}}
  - {id: d, uses: core.echo, needs: [], with: {x: "{{ steps.c.output }}"}}
"""
    result = load_text(text, "ancestors.yaml", registry)

    assert [(d.line, d.message) for d in result.diagnostics] == [
        (6, "step 'c' does not run before this one; add it to needs to use its result")
    ]


def test_gate_with_groups_may_ask_for_more_approvals_than_listed_users(
    registry: ConnectorRegistry,
) -> None:
    assert load_text(VALID, "v.yaml", registry).loaded is not None


# -- inputs -----------------------------------------------------------------------------


def spec(kind: str, **extra: object) -> InputSpec:
    return InputSpec.model_validate({"type": kind, **extra})


@pytest.mark.parametrize(
    ("kind", "given", "expected"),
    [
        ("string", "web-1", "web-1"),
        ("string", 42, "42"),
        ("integer", "42", 42),
        ("integer", 4.0, 4),
        ("integer", "4.0", 4),
        ("integer", " -12.00 ", -12),
        ("number", "2.5", 2.5),
        ("number", "3", 3),
        ("boolean", "yes", True),
        ("boolean", "0", False),
        ("boolean", True, True),
        ("list", '["a", "b"]', ["a", "b"]),
        ("list", "a, b,c", ["a", "b", "c"]),
        ("list", ["x"], ["x"]),
        ("object", '{"a": 1}', {"a": 1}),
    ],
)
def test_inputs_are_coerced_to_their_type(kind: str, given: object, expected: object) -> None:
    assert coerce_value("x", spec(kind), given, from_text=True) == expected


@pytest.mark.parametrize(
    ("kind", "given", "message"),
    [
        ("integer", "4.5", "expected an integer"),
        ("integer", "4.01", "expected an integer"),
        ("integer", "4e0", "expected an integer"),
        ("integer", "4.", "expected an integer"),
        ("integer", True, "expected an integer, got a boolean"),
        ("number", "nan", "expected a number"),
        ("boolean", "maybe", "expected true/false/yes/no/1/0"),
        ("object", "[1]", "expected an object"),
        ("list", "[1,", "not a valid JSON list"),
        ("string", {"a": 1}, "expected a string"),
    ],
)
def test_bad_input_values_name_the_input(kind: str, given: object, message: str) -> None:
    with pytest.raises(InputError) as caught:
        coerce_value("target", spec(kind), given)
    assert str(caught.value).startswith("input 'target': ")
    assert message in str(caught.value)
    assert caught.value.input_name == "target"


def test_enum_and_pattern_are_checked_after_coercion() -> None:
    level = spec("integer", enum=[1, 2])
    host = spec("string", pattern=r"^[a-z0-9-]+$")

    assert coerce_value("level", level, "2") == 2
    with pytest.raises(InputError, match="is not one of: 1, 2"):
        coerce_value("level", level, "3")
    assert coerce_value("host", host, "web-1") == "web-1"
    with pytest.raises(InputError, match="does not match pattern"):
        coerce_value("host", host, "web_1")


def test_patterns_use_search_semantics_unless_anchored() -> None:
    assert coerce_value("h", spec("string", pattern="web"), "my-web-1") == "my-web-1"
    with pytest.raises(InputError):
        coerce_value("h", spec("string", pattern="^web"), "my-web-1")


def test_required_follows_the_default() -> None:
    assert spec("string").is_required
    assert not spec("string", default="x").is_required
    assert not spec("string", default=None).is_required
    assert not spec("string", required=False).is_required
    assert spec(InputType.LIST.value, default=[], required=True).is_required


# -- durations and cron -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1h30m", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["5", "5x", "s", "-5s", "5 s", "1.5.5s", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


def test_cron_next_fire_times() -> None:
    monday_3am = parse_cron("0 3 * * 1")
    after = datetime(2024, 1, 1, 3, 0, tzinfo=UTC)  # a Monday, 03:00

    assert monday_3am.next_after(after) == datetime(2024, 1, 8, 3, 0, tzinfo=UTC)
    assert parse_cron("*/15 * * * *").next_after(after) == datetime(2024, 1, 1, 3, 15, tzinfo=UTC)
    assert parse_cron("@daily").next_after(after) == datetime(2024, 1, 2, 0, 0, tzinfo=UTC)
    berlin = parse_cron("0 9 * * mon-fri").next_after(after, "Europe/Berlin")
    assert berlin == datetime(2024, 1, 1, 8, 0, tzinfo=UTC)  # 09:00 in Berlin, same Monday


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("61 * * * *", "minute value 61 out of range 0-59"),
        ("* * *", "expected 5 fields"),
        ("5-1 * * * *", "runs backwards"),
        ("*/0 * * * *", "bad step"),
        ("* * * foo *", "bad month value 'foo'"),
    ],
)
def test_bad_cron(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_cron(text)
    assert str(caught.value).startswith(f"bad cron expression {text!r}")
    assert message in str(caught.value)
