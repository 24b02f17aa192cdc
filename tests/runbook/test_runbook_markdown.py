"""The Markdown form read as CommonMark: step blocks in lists and quotes, comments,
line endings, titles without markup, positions in the original file, hostile input."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bot.runbook.loader import FileResult, load_text
from bot.runbook.markdown import MAX_LINES, split_markdown
from connectors.registry import ConnectorRegistry

FRONT = "---\nname: md\n---\n"
LIMIT = 1.0  # seconds: the promise is "under a second"


@contextmanager
def quickly() -> Iterator[None]:
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    assert elapsed < LIMIT, f"took {elapsed:.2f}s"


def load(text: str, registry: ConnectorRegistry) -> FileResult:
    return load_text(text, "md.md", registry)


def step_ids(text: str, registry: ConnectorRegistry) -> list[str]:
    result = load(text, registry)
    assert result.diagnostics == []
    assert result.loaded is not None
    return result.loaded.runbook.step_ids


def errors(result: FileResult) -> list[tuple[int, int, str]]:
    return [(d.line, d.column, d.message) for d in result.diagnostics if d.severity == "error"]


# -- where step blocks are ---------------------------------------------------------


def test_a_step_block_indented_four_spaces_in_an_ordered_list_item_is_a_step(
    registry: ConnectorRegistry,
) -> None:
    text = FRONT + "# T\n\n1. Step one\n\n    ```step\n    id: one\n    uses: core.noop\n    ```\n"

    assert step_ids(text, registry) == ["one"]


def test_step_blocks_in_nested_unordered_lists_are_steps(registry: ConnectorRegistry) -> None:
    text = FRONT + (
        "# T\n\n"
        "- outer\n"
        "  - inner\n\n"
        "    ```step\n"
        "    id: five\n"
        "    uses: core.noop\n"
        "    ```\n\n"
        "- next\n"
        "  - deeper\n"
        "      - deepest\n\n"
        "        ~~~ yaml step\n"
        "        id: six\n"
        "        uses: core.noop\n"
        "        ~~~\n"
        "* ```step\n"
        "  id: seven\n"
        "  uses: core.noop\n"
        "  ```\n"
    )

    assert step_ids(text, registry) == ["five", "six", "seven"]


def test_a_step_block_in_a_blockquote_is_a_step(registry: ConnectorRegistry) -> None:
    text = FRONT + (
        "# T\n\n"
        "> ## Contain\n"
        "> Only after the approval.\n"
        ">\n"
        "> ```step\n"
        "> id: three\n"
        "> uses: core.noop\n"
        "> ```\n\n"
        "> - in a list\n"
        ">   in a quote\n"
        ">\n"
        ">   ```step\n"
        ">   id: four\n"
        ">   uses: core.noop\n"
        ">   ```\n"
    )

    result = load(text, registry)

    assert result.diagnostics == []
    assert result.loaded is not None
    runbook = result.loaded.runbook
    assert runbook.step_ids == ["three", "four"]
    assert (runbook.steps[0].title, runbook.steps[0].description) == (
        "Contain",
        "> Only after the approval.\n>",
    )


def test_a_step_block_in_an_html_comment_is_documentation(registry: ConnectorRegistry) -> None:
    text = FRONT + (
        "# T\n\n"
        "<!--\n"
        "```step\n"
        "id: commented_out\n"
        "uses: core.noop\n"
        "```\n"
        "-->\n\n"
        "```step\n"
        "id: real\n"
        "uses: core.noop\n"
        "```\n"
        "<div>\n"
        "```step\n"
        "id: in_html\n"
        "```\n"
        "</div>\n"
    )

    assert step_ids(text, registry) == ["real"]


def test_an_indented_code_block_is_documentation(registry: ConnectorRegistry) -> None:
    text = FRONT + (
        "# T\n\n"
        "An example:\n\n"
        "    ```step\n"
        "    id: example\n"
        "    ```\n\n"
        "```step\n"
        "id: real\n"
        "uses: core.noop\n"
        "```\n"
    )

    assert step_ids(text, registry) == ["real"]


def test_a_tab_indented_step_block_in_a_list_item_is_a_step(registry: ConnectorRegistry) -> None:
    text = FRONT + "# T\n\n-\tfirst\n\n\t```step\n\tid: tabbed\n\tuses: core.nope\n\t```\n"

    result = load(text, registry)

    assert [(line, column) for line, column, _ in errors(result)] == [(10, 8)]


# -- line endings --------------------------------------------------------------------

LINE_ENDINGS = FRONT + (
    "# CRLF title\n\n"
    "## Find\n"
    "Look it up.\n\n"
    "```step\n"
    "id: a\n"
    "uses: core.noop\n"
    "```\n\n"
    "1. In a list\n\n"
    "   ```step\n"
    "   id: b\n"
    "   uses: core.noop\n"
    "   needs: [a]\n"
    "   ```\n"
)


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_crlf_and_cr_files_load_as_the_lf_file(newline: str, registry: ConnectorRegistry) -> None:
    from_lf = load(LINE_ENDINGS, registry)
    other = load(LINE_ENDINGS.replace("\n", newline), registry)

    assert from_lf.diagnostics == [] and other.diagnostics == []
    assert from_lf.loaded is not None and other.loaded is not None
    assert other.loaded.runbook == from_lf.loaded.runbook
    assert other.loaded.runbook.title == "CRLF title"
    assert other.loaded.runbook.steps[0].description == "Look it up."


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_crlf_errors_point_where_the_lf_errors_do(
    newline: str, registry: ConnectorRegistry
) -> None:
    broken = LINE_ENDINGS.replace("uses: core.noop\n   needs", "uses: core.nope\n   needs")
    broken += "\n> ```step\n> id: c\n> uses: core.noop\n> retrys: 3\n> ```\n\n```step\nid: d\n"

    from_lf = errors(load(broken, registry))
    other = errors(load(broken.replace("\n", newline), registry))

    assert other == from_lf
    assert [(line, column) for line, column, _ in from_lf] == [(28, 1)]  # the unclosed block
    without_unclosed = broken[: broken.index("\n```step\nid: d")] + "\n"
    from_lf = errors(load(without_unclosed, registry))
    other = errors(load(without_unclosed.replace("\n", newline), registry))
    assert other == from_lf
    assert [(line, column) for line, column, _ in from_lf] == [(18, 10), (25, 3)]


# -- titles --------------------------------------------------------------------------


def test_titles_are_the_plain_text_of_headings(registry: ConnectorRegistry) -> None:
    text = FRONT + (
        "# The `isolate` *runbook*\n\n"
        "## Contain **web-1**\n\n"
        "```step\nid: a\nuses: core.noop\n```\n\n"
        "### Call `crowdstrike.contain_host` via [the API](https://example.com) \\*now\\*\n\n"
        "```step\nid: b\nuses: core.noop\n```\n\n"
        "An _underlined_ `Setext` heading\n"
        "over two lines\n"
        "---\n\n"
        "```step\nid: c\nuses: core.noop\n```\n\n"
        "## Fish &amp; chips ![logo](x.png) ##\n\n"
        "```step\nid: d\nuses: core.noop\n```\n"
    )

    result = load(text, registry)

    assert result.diagnostics == []
    assert result.loaded is not None
    runbook = result.loaded.runbook
    assert runbook.title == "The isolate runbook"
    assert [step.title for step in runbook.steps] == [
        "Contain web-1",
        "Call crowdstrike.contain_host via the API *now*",
        "An underlined Setext heading over two lines",
        "Fish & chips logo",
    ]


def test_a_heading_inside_a_list_or_quote_is_a_heading(registry: ConnectorRegistry) -> None:
    text = (
        FRONT + "> # Quoted title\n\n- ## Listed\n\n  ```step\n  id: a\n  uses: core.noop\n  ```\n"
    )

    result = load(text, registry)

    assert result.loaded is not None
    assert result.loaded.runbook.title == "Quoted title"
    assert result.loaded.runbook.steps[0].title == "Listed"


# -- positions -----------------------------------------------------------------------


def test_an_error_in_a_list_item_block_points_into_the_file(registry: ConnectorRegistry) -> None:
    text = FRONT + (
        "# T\n\n"  # 4
        "1. First\n\n"  # 6
        "    ```step\n"  # 8
        "    id: one\n"
        "    uses: core.nope\n"  # 10
        "    retrys: 3\n"  # 11
        "    ```\n"
    )

    result = load(text, registry)

    assert errors(result) == [
        (10, 11, "connector 'core' has no action 'nope'; did you mean 'noop'?"),
        (11, 5, "unknown key 'retrys'; did you mean 'retry'?"),
    ]


def test_mixed_quote_prefixes_keep_each_line_s_columns(registry: ConnectorRegistry) -> None:
    text = FRONT + (
        "# T\n\n"  # 4
        "> ```step\n"  # 6
        "> id: one\n"  # 7
        ">uses: core.nope\n"  # 8
        "> retrys: 3\n"  # 9
        "> ```\n"
    )

    result = load(text, registry)

    assert [(line, column) for line, column, _ in errors(result)] == [(8, 8), (9, 3)]


def test_a_yaml_syntax_error_in_a_quoted_list_block_points_into_the_file(
    registry: ConnectorRegistry,
) -> None:
    text = FRONT + (
        "# T\n\n"  # 4
        "> - item\n"  # 6
        ">\n"
        ">   ```step\n"  # 8
        ">   id: one\n"  # 9
        ">   with: {a: [1, 2}\n"  # 10
        ">   ```\n"
    )

    result = load(text, registry)

    ((line, column, message),) = errors(result)
    assert message.startswith("YAML syntax error")
    assert (line, column) == (10, 20)  # the '}'


def test_a_yaml_syntax_error_in_a_mixed_quote_names_both_places_in_the_file(
    registry: ConnectorRegistry,
) -> None:
    text = FRONT + "> ```step\n> id: one\n>with: {a: [1, 2}\n> uses: core.noop\n> ```\n"

    assert errors(load(text, registry)) == [
        (
            6,
            17,
            "YAML syntax error: did not find expected ',' or ']' "
            "(while parsing a flow sequence at line 6, column 12)",
        )
    ]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ("```step\nid: a\n", (5, 1)),
        ("   ````step\nid: a\n```\n", (5, 4)),
        ("- ```step\n  id: a\n- next\n", (5, 3)),
        ("> ```step\n> id: a\n\nafter\n", (5, 3)),
        ("1. x\n\n    ```step\n    id: a\n```\n", (7, 5)),
    ],
    ids=["document", "shorter-close", "list-item", "quote", "dedented-close"],
)
def test_an_unclosed_step_block_is_an_error_at_its_fence(
    body: str, where: tuple[int, int], registry: ConnectorRegistry
) -> None:
    result = load(FRONT + "# T\n" + body, registry)

    assert errors(result) == [(*where, "step block is never closed")]


def test_a_closed_block_at_the_end_without_a_newline_is_closed(
    registry: ConnectorRegistry,
) -> None:
    assert step_ids(FRONT + "```step\nid: a\nuses: core.noop\n```", registry) == ["a"]


def test_split_reports_columns_and_lines_of_indented_blocks() -> None:
    doc = split_markdown(
        "---\nname: x\n---\n> ```step\n> id: a\n> ```\n1. x\n\n   ```step\n   id: b\n   ```\n"
    )

    assert [(b.fence_line, b.first_line, b.indent, b.text) for b in doc.blocks] == [
        (3, 4, 2, "id: a\n"),
        (8, 9, 3, "id: b\n"),
    ]


# -- hostile input -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        ">" * 100_000,
        "> " * 100_000,
        "- " * 100_000,
        "1. " * 100_000,
        "".join("> " * (i % 40) + "a\n" for i in range(20_000)),
        "".join("  " * (i % 40) + "- a\n" for i in range(20_000)),
        "- a\n" * 60_000,
        "<!--\n" + "a\n" * 90_000,
        "`" * 1_000_000,
        "# " + "![" * 99 + "\n```step\n```\n",
        ("# " + "[" * 190 + "\n```step\nuses: core.noop\n```\n") * 4_000,
    ],
    ids=[
        "quotes",
        "spaced-quotes",
        "bullets",
        "numbers",
        "quote-lines",
        "list-lines",
        "long-list",
        "open-comment",
        "backticks",
        "link-heading",
        "many-link-headings",
    ],
)
def test_pathological_markdown_is_answered_quickly(body: str, registry: ConnectorRegistry) -> None:
    text = FRONT + body + "\n```step\nid: last\nuses: core.noop\n```\n"

    with quickly():
        result = load(text, registry)

    for diag in result.diagnostics:
        assert diag.line >= 1 and diag.column >= 1 and "\n" not in diag.message


def test_a_step_block_nested_past_the_limit_is_refused_not_dropped(
    registry: ConnectorRegistry,
) -> None:
    deep = "> " * 30
    text = FRONT + f"{deep}```step\n{deep}id: deep\n{deep}uses: core.noop\n{deep}```\n"

    with quickly():
        result = load(text, registry)

    ((line, column, message),) = errors(result)
    assert (line, column) == (4, 1)
    assert "nested too deeply" in message


@pytest.mark.parametrize(("lists", "quotes"), [(5, 0), (0, 11), (5, 1)])
def test_step_blocks_eleven_levels_deep_are_read(lists: int, quotes: int) -> None:
    prefix = "> " * quotes
    text = "".join(prefix + "  " * k + "- x\n" for k in range(lists))
    indent = prefix + "  " * lists
    text += f"{prefix}\n{indent}```step\n{indent}id: a\n{indent}```\n"

    assert [block.text for block in split_markdown(text).blocks] == ["id: a\n"]


def test_too_many_lines_are_refused(registry: ConnectorRegistry) -> None:
    text = FRONT + "```step\nid: a\nuses: core.noop\n```\n" + "\n" * MAX_LINES

    with quickly():
        result = load(text, registry)

    ((line, column, message),) = errors(result)
    assert (line, column) == (MAX_LINES + 4, 1)
    assert message == f"the Markdown has more than {MAX_LINES:,} lines, the limit for a runbook"


def test_markdown_too_costly_to_read_is_refused(registry: ConnectorRegistry) -> None:
    text = FRONT + "```step\nid: a\nuses: core.noop\n```\n" + "- > - > - item\n" * 20_000

    with quickly():
        result = load(text, registry)

    ((_, column, message),) = errors(result)
    assert column == 1
    assert message == "the Markdown is too long or too deeply nested to read as a runbook"


def test_a_big_documentation_file_without_steps_is_not_read(registry: ConnectorRegistry) -> None:
    text = "# Notes\n\n" + "- a list item\n" * 70_000

    with quickly():
        result = load_text(text, "notes.md", registry, documentation_ok=True)

    assert result.skipped
