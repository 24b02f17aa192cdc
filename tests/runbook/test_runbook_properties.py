"""Property tests: no input makes the loader raise; only diagnostics come back."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import Diagnostic
from bot.runbook.loader import FileResult, load_text
from bot.runbook.templates import TemplateError, _parsed_analysis, analyse_template
from connectors.registry import ConnectorRegistry

REGISTRY = ConnectorRegistry.discover(include_entry_points=False)
FAST = settings(
    max_examples=150,
    deadline=1000,
    suppress_health_check=[HealthCheck.too_slow],
)

# Keys and values a runbook uses, so generated documents get deep into the checks.
KEYS = st.sampled_from(
    [
        "name", "title", "steps", "id", "uses", "with", "needs", "if", "inputs", "triggers",
        "approval", "notify", "prompt", "text", "for_each", "until", "poll", "every",
        "timeout", "retry", "attempts", "cron", "alert", "schedule", "command", "source",
        "type", "default", "pattern", "enum", "compensate", "escalate", "after", "to",
        "groups", "users", "min_approvals", "fields", "dedup_key", "dedup_window", "x",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.sampled_from(
        [
            "core.noop", "core.echo", "core.fail", "core.sleep", "nope.nope", "a", "find",
            "{{ inputs.host }}", "{{ steps.a.output }}", "{{ item }}", "{% if x %}",
            "{{ ''.__class__ }}", "30s", "5x", "0 3 * * 1", "61 * * * *", "(a", "^a+$",
            "string", "integer", "list", "failure()", "output.x > 1", "{{", "}}",
        ]
    ),
    st.text(max_size=20),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)
    ),
    max_leaves=25,
)


def check_result(result: FileResult, path: str) -> None:
    assert isinstance(result, FileResult)
    assert all(isinstance(d, Diagnostic) for d in result.diagnostics)
    for diag in result.diagnostics:
        assert diag.path == path
        assert diag.line >= 1 and diag.column >= 1
        assert diag.message and "\n" not in diag.message.strip()
    if result.loaded is not None:
        assert not [d for d in result.diagnostics if d.severity == "error"]


def dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@FAST
@given(st.text(max_size=400))
def test_arbitrary_text_never_raises_as_yaml(text: str) -> None:
    check_result(load_text(text, "x.yaml", REGISTRY), "x.yaml")


@FAST
@given(st.text(max_size=400))
def test_arbitrary_text_never_raises_as_markdown(text: str) -> None:
    check_result(load_text(text, "x.md", REGISTRY), "x.md")


@FAST
@given(st.text(alphabet=st.sampled_from("-:[]{}&*!|>'\"#% \n\t?,abc1`~"), max_size=200))
def test_yaml_punctuation_soup_never_raises(text: str) -> None:
    check_result(load_text(text, "x.yaml", REGISTRY), "x.yaml")
    check_result(
        load_text("---\nname: a\n---\n```step\n" + text + "\n```\n", "x.md", REGISTRY), "x.md"
    )


@FAST
@given(VALUES)
def test_arbitrary_structures_never_raise(data: Any) -> None:
    check_result(load_text(dump(data), "x.yaml", REGISTRY), "x.yaml")


STEP = st.fixed_dictionaries(
    {"id": st.sampled_from(["a", "b", "c", "d"]), "uses": st.sampled_from(["core.noop", "core.echo"])},
    optional={
        "with": st.dictionaries(KEYS, SCALARS, max_size=3),
        "needs": st.lists(st.sampled_from(["a", "b", "c", "d", "zz"]), max_size=3),
        "if": SCALARS,
        "for_each": SCALARS,
        "timeout": SCALARS,
        "retry": VALUES,
        "compensate": VALUES,
        "x": SCALARS,
    },
)  # fmt: skip
RUNBOOK = st.fixed_dictionaries(
    {"name": st.sampled_from(["ok", "Bad_Name"]), "steps": st.lists(STEP, min_size=0, max_size=5)},
    optional={
        "inputs": st.dictionaries(
            st.sampled_from(["host", "count", "Bad"]),
            st.dictionaries(KEYS, SCALARS, max_size=3),
            max_size=3,
        ),
        "triggers": st.lists(st.dictionaries(KEYS, VALUES, max_size=2), max_size=3),
    },
)  # fmt: skip


@FAST
@given(RUNBOOK)
def test_runbook_shaped_structures_never_raise_in_either_form(data: dict[str, Any]) -> None:
    check_result(load_text(dump(data), "x.yaml", REGISTRY), "x.yaml")
    front = {k: v for k, v in data.items() if k != "steps"}
    blocks = "".join(
        f"## Step {i}\n\n```step\n{dump(step)}```\n\n" for i, step in enumerate(data["steps"])
    )
    markdown = f"---\n{dump(front)}---\n\n# Title\n\n{blocks}"
    check_result(load_text(markdown, "x.md", REGISTRY), "x.md")


TEMPLATE_PIECES = st.sampled_from(
    [
        "{{ ", " }}", "{%", "%}", "{#", "#}", "-", "+", "inputs.host", " | lower", "| default('x')",
        "steps.a.output", "item", "'}}'", '"{{"', "{", "}", " if ", " else ", "endif", "for x in y",
        "endfor", "raw", "endraw", "x", " ", "\n", "(", ")", "[0]", ".", "not ", "true", "1",
        " ~ ", "attr('_x')", "__class__", ",", "failure()",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=1000)
@given(st.lists(TEMPLATE_PIECES, max_size=14).map("".join))
def test_template_shortcuts_agree_with_jinjas_parser(text: str) -> None:
    """The cached shortcuts of analyse_template give what a full parse gives."""
    try:
        expected = _parsed_analysis.__wrapped__(text)
    except TemplateError:
        expected = None
    try:
        got = analyse_template.__wrapped__(text)
    except TemplateError:
        got = None
    if expected is None or got is None:
        # a template is an error either way, or the shortcut reported it literal
        assert (expected is None) == (got is None or got.literal), text
        return
    assert set(got.refs) == set(expected.refs), text
    assert got.calls == expected.calls
    assert got.filters == expected.filters
    assert got.tests == expected.tests
    assert set(got.private) == set(expected.private)
    assert got.native == expected.native
