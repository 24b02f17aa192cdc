"""Templates and expressions: analysis at load, rendering with native types."""

from __future__ import annotations

import pytest

from bot.runbook.templates import (
    Ref,
    TemplateError,
    analyse_expression,
    analyse_template,
    escape_markup,
    evaluate,
    render_string,
    render_value,
)

CONTEXT = {
    "inputs": {"host": "Web-1", "hosts": ["a", "b"], "count": 3, "dry": False},
    "steps": {
        "find": {"output": {"device_id": "d-1", "ips": ["10.0.0.1"]}, "outcome": "succeeded"}
    },
    "run": {"id": "r-1", "requester": "cli:alice"},
}


@pytest.mark.parametrize(
    ("template", "refs"),
    [
        ("{{ inputs.host }}", {Ref("inputs", ("host",))}),
        ("Host {{ inputs.host | lower }} ({{ run.id }})", {Ref("inputs", ("host",)), Ref("run", ("id",))}),
        ("{{ steps.find.output.ips[0] }}", {Ref("steps", ("find", "output", "ips", "0"))}),
        ("{{ steps['find'].output }}", {Ref("steps", ("find", "output"))}),
        ("{% for h in inputs.hosts %}{{ h }}{% endfor %}", {Ref("inputs", ("hosts",))}),
        ("{% set x = inputs.count %}{{ x + 1 }}", {Ref("inputs", ("count",))}),
        ("{{ inputs.host if inputs.dry else 'x' }}", {Ref("inputs", ("host",)), Ref("inputs", ("dry",))}),
        ("no template here", set()),
    ],
)  # fmt: skip
def test_analysis_finds_what_a_template_refers_to(template: str, refs: set[Ref]) -> None:
    assert set(analyse_template(template).refs) == refs


def test_analysis_records_filters_tests_calls_and_private_names() -> None:
    info = analyse_template(
        "{{ x | lower | default('a') }}{% if y is defined %}{{ failure() }}{% endif %}"
    )

    assert info.filters == {"lower", "default"}
    assert info.tests == {"defined"}
    assert info.calls == {"failure"}
    assert analyse_template("{{ a.__class__.__mro__ }}").private == ("__class__", "__mro__")


def test_a_template_of_one_expression_is_native() -> None:
    assert analyse_template("{{ inputs.hosts }}").native
    assert analyse_template("{{- inputs.hosts -}}").native
    assert not analyse_template(" {{ inputs.hosts }}").native
    assert not analyse_template("{{ a }}{{ b }}").native
    assert analyse_template("plain").literal


@pytest.mark.parametrize(
    ("template", "line", "message"),
    [
        ("{{ inputs.host }", 1, "unexpected '}'"),
        ("{% if x %}", 1, "Unexpected end of template"),
        ("a\nb\n{{ x | }}", 3, "expected token 'name'"),
        ("{{ }}", 1, "Expected an expression"),
        ("{{ '{:>{w}}'.format(1) }}", 1, None),
    ],
)
def test_syntax_errors_carry_the_line_inside_the_template(
    template: str, line: int, message: str | None
) -> None:
    if message is None:
        assert analyse_template(template).refs == ()  # a string with braces inside is fine
        return
    with pytest.raises(TemplateError) as caught:
        analyse_template(template)
    assert caught.value.line == line
    assert message in caught.value.message


def test_expressions_are_bare() -> None:
    assert set(analyse_expression("inputs.count > 2 and not inputs.dry").refs) == {
        Ref("inputs", ("count",)),
        Ref("inputs", ("dry",)),
    }
    assert analyse_expression("steps.find.outcome == 'failed'").refers_to_failure
    assert analyse_expression("failure()").refers_to_failure
    assert not analyse_expression("success()").refers_to_failure
    with pytest.raises(TemplateError, match="bare"):
        analyse_expression("{{ inputs.dry }}")
    with pytest.raises(TemplateError, match="empty"):
        analyse_expression("  ")
    with pytest.raises(TemplateError, match="unexpected"):
        analyse_expression("a b")


def test_rendering_keeps_native_types_for_one_expression() -> None:
    assert render_string("{{ inputs.hosts }}", CONTEXT) == ["a", "b"]
    assert render_string("{{ inputs.count * 2 }}", CONTEXT) == 6
    assert render_string("{{ inputs.dry }}", CONTEXT) is False
    assert render_string("{{ inputs.count }} hosts", CONTEXT) == "3 hosts"
    assert render_string("{{ steps.find.output.ips[0] }}", CONTEXT) == "10.0.0.1"
    assert render_string("no braces", CONTEXT) == "no braces"


def test_render_value_walks_mappings_and_lists() -> None:
    value = {"a": ["{{ inputs.host | lower }}", 1, {"b": "{{ run.id }}"}], "c": None}

    assert render_value(value, CONTEXT) == {"a": ["web-1", 1, {"b": "r-1"}], "c": None}


def test_undefined_names_are_errors_when_rendering() -> None:
    with pytest.raises(TemplateError, match="'nope' is undefined"):
        render_string("{{ nope }}", CONTEXT)
    with pytest.raises(TemplateError, match="has no attribute 'missing'"):
        render_string("x {{ inputs.missing }}", CONTEXT)
    with pytest.raises(TemplateError):
        evaluate("inputs.missing.deeper", CONTEXT)


def test_expressions_evaluate_to_values() -> None:
    assert evaluate("inputs.count > 2", CONTEXT) is True
    assert evaluate("inputs.hosts | length", CONTEXT) == 2
    assert evaluate("steps.find.outcome", CONTEXT) == "succeeded"


def test_the_sandbox_refuses_changing_data() -> None:
    with pytest.raises(TemplateError):
        render_string("{{ inputs.hosts.append('c') }}", CONTEXT)
    assert CONTEXT["inputs"]["hosts"] == ["a", "b"]  # type: ignore[index]


def test_ordinary_formatting_still_works() -> None:
    assert render_string("{{ '%s-%05d' % (inputs.host, 42) }}", CONTEXT) == "Web-1-00042"
    assert render_string("{{ '{:>8}'.format(inputs.host) }}", CONTEXT) == "   Web-1"
    assert render_string("{{ inputs.host | center(9) }}", CONTEXT) == "  Web-1  "
    assert render_string("{{ inputs.hosts | join(', ') }}", CONTEXT) == "a, b"
    assert render_string("{{ 'ab' | replace('b', 'c') }}", CONTEXT) == "ac"


def test_a_missing_key_by_subscript_is_undefined_not_a_dict_method() -> None:
    # alerts.md: write alert['items'] for keys that are method names
    assert render_string("{{ alert['items'] }}", {"alert": {"items": [1, 2]}}) == [1, 2]
    assert render_string("{{ alert['keys'] | default('none') }}", {"alert": {}}) == "none"
    with pytest.raises(TemplateError) as missing:
        render_string("{{ alert['items'] }}", {"alert": {"id": 1}})
    assert "'dict object' has no key 'items'" in str(missing.value)
    assert "0x" not in str(missing.value) and "built-in" not in str(missing.value)


# -- rendering for chat markup (approval prompts, notify text in Slack) ----------


MARKUP_CONTEXT = {"v": "a<b & c>", "host": "web-1"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # the reviewer's reproductions: set-block data was escaped twice ...
        ("{% set x %}{{ v }}{% endset %}{{ x }}", "a&lt;b &amp; c&gt;"),
        # ... and the author's own markup inside a macro was escaped
        ("{% macro m(h) %}<{{ h }}>{% endmacro %}{{ m(host) }}", "<web-1>"),
        (
            "{% macro m(h) %}<https://x/{{ h }}|{{ h }}>{% endmacro %}{{ m(v) }}",
            "<https://x/a&lt;b &amp; c&gt;|a&lt;b &amp; c&gt;>",
        ),
        (
            "{% set x %}*{{ v }}*{% endset %}{{ x }} {{ x ~ v }}",
            "*a&lt;b &amp; c&gt;* *a&lt;b &amp; c&gt;*a&lt;b &amp; c&gt;",
        ),
        ("{% macro m() %}<b>{% endmacro %}{{ m() ~ v ~ '<i>' }}", "<b>a&lt;b &amp; c&gt;&lt;i&gt;"),
        (
            "*{{ v }}* <https://wiki.example/ir|Playbook>",
            "*a&lt;b &amp; c&gt;* <https://wiki.example/ir|Playbook>",
        ),
        ("{% for i in [v, v] %}{{ i }}{% endfor %}", "a&lt;b &amp; c&gt;a&lt;b &amp; c&gt;"),
        ("{{ v ~ '!' }} {{ [v, '<'] | join(',') }}", "a&lt;b &amp; c&gt;! a&lt;b &amp; c&gt;,&lt;"),
        ("{% autoescape false %}{{ v }}{% endautoescape %}", "a&lt;b &amp; c&gt;"),
        ("{{ v }}", "a&lt;b &amp; c&gt;"),
    ],
)
def test_markup_rendering_escapes_each_value_once_and_never_the_authors_text(
    template: str, expected: str
) -> None:
    assert render_string(template, MARKUP_CONTEXT, escape=escape_markup) == expected
    # rendered plainly nothing is escaped, and the result is a plain str
    plain = render_string(template, MARKUP_CONTEXT)
    assert "&lt;" not in plain and "&amp;" not in plain and type(plain) is str
