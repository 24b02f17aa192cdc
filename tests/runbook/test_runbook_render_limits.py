"""Rendering limits: templates that would build huge values or loop for minutes fail fast."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bot.runbook.templates import TemplateError, escape_markup, render_string

# Templates render plainly, or for chat markup (its own autoescaping environment):
# the limits hold for both.
ESCAPES = pytest.mark.parametrize("escape", [None, escape_markup], ids=["plain", "markup"])

HOSTILE = [
    ("{{ (['x'*1000000]*200) | join }}", "join filter"),
    ("{{ ('x'*1000000).join(['a'] * 100) }}", "str.join"),
    ("{{ ('\\t'*100000).expandtabs(2000) }}", "str.expandtabs"),
    ("{{ ('{0}'*20000).format('x'*10000) }}", "format()"),
    ("{{ ('x'*100000) | wordwrap(1, true, 'y'*100) }}", "wordwrap filter"),
    ("{{ range(10) | batch(100000000, 0) | list }}", "batch filter"),
    ("{{ [[1]] | sum(start=[]) }}", "numbers only"),
    (
        "{% set ns = namespace(n=2**2000) %}{% for i in range(20) %}"
        "{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n > 0 }}",
        "*",
    ),
    (
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x",
        "range() at most",
    ),
]


@ESCAPES
@pytest.mark.parametrize(("template", "needle"), HOSTILE)
def test_hostile_templates_fail_fast_with_a_clear_error(
    template: str, needle: str, escape: Callable[[str], str] | None
) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateError) as info:
        render_string(template, {}, escape=escape)
    assert needle in info.value.message
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ ['a', 'b'] | join(',') }}", "a,b"),
        ("{{ 'ab\\tc'.expandtabs(4) }}", "ab  c"),
        ("{{ '{0}-{1}'.format('a', 'b') }}", "a-b"),
        ("{{ [1, 2, 3] | sum }}", 6),
        ("{% for i in range(3) %}{{ i }}{% endfor %}", "012"),
        ("{{ 'a b c' | wordwrap(3) }}", "a b\nc"),
        (
            "{{ 12345678901234567890 * 98765432109876543210 }}",
            12345678901234567890 * 98765432109876543210,
        ),
    ],
)
def test_ordinary_templates_still_render(template: str, expected: object) -> None:
    assert render_string(template, {}) == expected


def test_the_iteration_budget_is_per_rendering() -> None:
    loop = "{% for a in range(1000) %}{% for b in range(900) %}{% endfor %}{% endfor %}ok"
    assert render_string(loop, {}) == "ok"  # 901,000 iterations: within one budget
    assert render_string(loop, {}) == "ok"  # a new rendering, a new budget


CONTEXT = {
    "inputs": {"host": "web-1", "n": 3, "items": "an input named like a dict method"},
    "alert": {"device": {"hostname": "db-1", "tags": ["a", "b"]}, "severity": 90},
    "steps": {"find": {"output": {"ids": [7, 8]}, "outcome": "succeeded"}},
}


@pytest.mark.parametrize(
    "expression",
    [
        "inputs.host",
        "inputs.n",
        "alert.device.hostname",
        "alert.device.tags[1]",
        "alert.device.tags",
        "steps.find.output.ids[0]",
        "steps.find.outcome",
        "inputs.items",  # Jinja gives dict.items (a method) here: the fast path must not
        "alert.device.missing",
        "alert.device.tags[5]",
        "nothing.here",
        "inputs._private",
    ],
)
def test_plain_paths_resolve_exactly_as_jinja_does(expression: str) -> None:
    from bot.runbook import templates

    def through_jinja() -> object:
        try:
            with templates.rendering():
                value = templates._compiled_expression(expression)(**CONTEXT)
            return templates._check_defined(value, expression)
        except Exception as exc:  # the error kind is what must match
            return type(exc)

    def fast() -> object:
        try:
            return render_string("{{ " + expression + " }}", CONTEXT)
        except TemplateError:
            return TemplateError

    expected, got = through_jinja(), fast()
    if isinstance(expected, type):
        assert got is TemplateError
    elif callable(expected):
        assert callable(got)
    else:
        assert got == expected


BYPASSES = [
    (
        "{% set ns = namespace(s='aaaaaaaa') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
        "~ would be too large",
    ),
    ("{% set s = 'a' * 999999 %}{% for i in range(5000) %}{{ s }}{% endfor %}", "over 1,000,000"),
    (
        "{% set s = 'a' * 999999 %}{% for c in s %}{% for d in s %}{% endfor %}{% endfor %}",
        "at most 1,000,000 times",
    ),
    (
        "{% for c in 'ab' * 500 recursive %}{% if loop.depth < 4 %}{{ loop('ab' * 500) }}"
        "{% endif %}{% endfor %}",
        "at most 1,000,000 times",
    ),
    (
        "{% set s = 'a' * 999999 %}{% for i in range(100000) %}{% set x %}{{ s }}{% endset %}"
        "{% endfor %}",
        "at most 20,000,000 characters",
    ),
    (
        "{% autoescape true %}{% set ns = namespace(s='aaaaaaaa') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}{% endautoescape %}",
        "~ would be too large",
    ),
    (
        "{% set ns = namespace(s='aaaaaaaa') %}{% macro m() %}<b>{% endmacro %}"
        "{% for i in range(40) %}{% set ns.s = m() ~ ns.s ~ ns.s %}{% endfor %}",
        "~ would be too large",
    ),
]


@ESCAPES
@pytest.mark.parametrize(("template", "needle"), BYPASSES)
def test_concatenation_output_and_loops_over_anything_are_bounded(
    template: str, needle: str, escape: Callable[[str], str] | None
) -> None:
    with pytest.raises(TemplateError) as info:
        render_string(template, {}, escape=escape)
    assert needle in info.value.message


def test_loops_over_data_and_concatenation_still_render() -> None:
    context = {"inputs": {"hosts": ["web-1", "web-2"], "tags": {"a": 1}}}
    template = (
        "{% for h in inputs.hosts %}{{ h ~ ':' ~ loop.index }}{% if not loop.last %},{% endif %}"
        "{% endfor %} {% for k, v in inputs.tags.items() %}{{ k }}={{ v }}{% endfor %}"
    )
    assert render_string(template, context) == "web-1:1,web-2:2 a=1"
