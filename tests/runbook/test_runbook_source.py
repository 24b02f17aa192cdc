"""Reading YAML: the 1.2 core schema, positions of keys and values, Markdown splitting."""

from __future__ import annotations

import math

import pytest

from bot.runbook.markdown import split_markdown
from bot.runbook.source import Pos, SourceError, load_yaml


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("true", True),
        ("False", False),
        ("null", None),
        ("~", None),
        ("", None),
        ("42", 42),
        ("-7", -7),
        ("0o17", 15),
        ("0x1F", 31),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        (".inf", math.inf),
        ("-.inf", -math.inf),
        ("1_000", "1_000"),
        ("0b101", "0b101"),
        ("12:30", "12:30"),
        ("2024-01-01", "2024-01-01"),
        ("'42'", "42"),
        ('"true"', "true"),
        ("!!str 42", "42"),
        ("!!int '42'", 42),
        ("!!float 1", 1.0),
        ("! 42", "42"),
    ],
)
def test_scalars_follow_the_yaml_1_2_core_schema(text: str, value: object) -> None:
    data, _ = load_yaml(f"key: {text}\n")
    assert data == {"key": value}
    assert type(data["key"]) is type(value)


def test_nan_is_a_float() -> None:
    data, _ = load_yaml("key: .nan\n")
    assert math.isnan(data["key"])


def test_positions_of_keys_and_values() -> None:
    text = """\
name: demo
steps:
  - id: find
    with: {host: web-1, tags: [a, b]}
  - id: next
"""
    data, smap = load_yaml(text)

    assert data["steps"][0]["with"]["tags"] == ["a", "b"]
    assert smap.value(("name",)) == Pos(1, 7)
    assert smap.key(("name",)) == Pos(1, 1)
    assert smap.value(("steps",)) == Pos(3, 3)
    assert smap.value(("steps", 0)) == Pos(3, 5)
    assert smap.key(("steps", 0, "with")) == Pos(4, 5)
    assert smap.value(("steps", 0, "with", "host")) == Pos(4, 18)
    assert smap.value(("steps", 0, "with", "tags", 1)) == Pos(4, 35)
    assert smap.value(("steps", 1, "id")) == Pos(5, 9)
    # an unknown path falls back to its nearest known ancestor
    assert smap.value(("steps", 1, "missing", "deeper")) == Pos(5, 5)


def test_offsets_place_an_embedded_document_in_its_file() -> None:
    data, smap = load_yaml("id: a\nuses: b\n", line_offset=10, col_offset=3, base=("steps", 2))

    assert data == {"id": "a", "uses": "b"}
    assert smap.value(("steps", 2, "uses")) == Pos(12, 10)


def test_literal_block_lines_are_known() -> None:
    text = "text: |\n  one\n  two {{ x }\n"
    _, smap = load_yaml(text)

    assert smap.line_in(("text",), 2) == Pos(3, 3)
    assert smap.line_in(("text",), None) == Pos(1, 7)


@pytest.mark.parametrize(
    ("text", "pos", "message"),
    [
        ("a: 1\na: 2\n", (2, 1), "duplicate key 'a'"),
        ("a: *nope\n", (1, 4), "unknown alias *nope"),
        ("? [a]\n: b\n", (1, 3), "mapping keys must be plain strings"),
        ("a: !!int x\n", (1, 4), "value 'x' is not a valid int"),
        ("a: 1\n---\nb: 2\n", (2, 1), "more than one YAML document in the file"),
        ("a: !!binary aGk=\n", (1, 4), "YAML tag '!!binary' is not allowed in runbooks"),
        ("a: !!set {x}\n", (1, 4), "YAML tag '!!set' is not allowed in runbooks"),
    ],
)
def test_refusals_name_their_position(text: str, pos: tuple[int, int], message: str) -> None:
    with pytest.raises(SourceError) as caught:
        load_yaml(text)

    assert caught.value.pos == Pos(*pos)
    assert message in caught.value.message


def test_aliases_within_the_limit_are_expanded() -> None:
    data, _ = load_yaml("base: &b {retry: 3}\none: *b\ntwo: *b\n")

    assert data["one"] == data["two"] == {"retry": 3}


def test_merge_keys_are_ordinary_keys_in_yaml_1_2() -> None:
    data, _ = load_yaml("base: &b {x: 1}\nstep:\n  <<: *b\n")

    assert data["step"] == {"<<": {"x": 1}}


def test_markdown_split_finds_front_matter_headings_and_blocks() -> None:
    text = """\
---
name: x
---
Intro.

# Title #

## Step one ##
Words
about it.

```step
id: a
```

   ~~~~ yaml  step
   id: b
   ~~~~
"""
    doc = split_markdown(text)

    assert doc.front_matter == "name: x"
    assert doc.title == "Title"
    assert [(b.first_line, b.indent, b.title, b.description) for b in doc.blocks] == [
        (12, 0, "Step one", "Words\nabout it."),
        (16, 3, "Step one", None),
    ]
    assert doc.blocks[1].text == "id: b\n"


def test_an_unclosed_ordinary_fence_swallows_the_rest_as_documentation() -> None:
    doc = split_markdown("---\nname: x\n---\n```python\nprint()\n```step\nid: a\n```\n")

    assert doc.blocks == []
