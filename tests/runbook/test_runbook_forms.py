"""The two forms of a runbook (YAML and Markdown) load into the same model."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.runbook.loader import load_file, load_text
from bot.runbook.model import ApprovalStep, CallStep, NotifyStep
from connectors.registry import ConnectorRegistry

FORMS = Path(__file__).with_name("forms")
PAIRS = sorted(p.stem for p in FORMS.glob("*.yaml"))


def test_there_are_pairs_to_compare() -> None:
    assert len(PAIRS) >= 2
    assert all((FORMS / f"{name}.md").exists() for name in PAIRS)


@pytest.mark.parametrize("name", PAIRS)
def test_yaml_and_markdown_forms_load_to_equal_models(
    name: str, registry: ConnectorRegistry
) -> None:
    from_yaml = load_file(str(FORMS / f"{name}.yaml"), registry)
    from_markdown = load_file(str(FORMS / f"{name}.md"), registry)

    assert from_yaml.diagnostics == []
    assert from_markdown.diagnostics == []
    assert from_yaml.loaded is not None and from_markdown.loaded is not None
    assert from_yaml.loaded.form == "yaml"
    assert from_markdown.loaded.form == "markdown"
    assert from_yaml.loaded.runbook.model_dump() == from_markdown.loaded.runbook.model_dump()
    assert from_yaml.loaded.runbook == from_markdown.loaded.runbook


def test_the_full_example_exercises_every_step_kind(registry: ConnectorRegistry) -> None:
    loaded = load_file(str(FORMS / "isolate-host.md"), registry).loaded
    assert loaded is not None
    runbook = loaded.runbook

    kinds = {type(step) for step in runbook.steps}
    assert kinds == {CallStep, ApprovalStep, NotifyStep}
    gate = runbook.step("approve")
    assert isinstance(gate, ApprovalStep)
    assert gate.approval.min_approvals == 2
    assert gate.approval.escalate is not None and gate.approval.escalate.after == 900
    assert runbook.step("find").retry is not None
    assert runbook.needs_of(1) == ["find"]
    assert runbook.needs_of(4) == ["scan", "approve"]
    assert [len(runbook.triggers), runbook.max_concurrent] == [4, 2]


MD = """\
---
name: titles
{front}---

Intro before any heading.

# The runbook title

Some words about the runbook.

## First heading

Why the first step exists,
on two lines.

```step
id: one
uses: core.noop
```

Between the blocks.

```step
id: two
uses: core.noop
title: Explicit title
description: Explicit description
```

### Third heading

```step
id: three
uses: core.noop
```
"""


def test_headings_and_prose_become_default_titles_and_descriptions(
    registry: ConnectorRegistry,
) -> None:
    result = load_text(MD.format(front=""), "titles.md", registry)

    assert result.loaded is not None
    runbook = result.loaded.runbook
    assert runbook.title == "The runbook title"
    steps = {step.id: (step.title, step.description) for step in runbook.steps}
    assert steps == {
        "one": ("First heading", "Why the first step exists,\non two lines."),
        "two": ("Explicit title", "Explicit description"),
        "three": ("Third heading", None),
    }


def test_front_matter_title_wins_over_the_first_heading(registry: ConnectorRegistry) -> None:
    result = load_text(MD.format(front="title: From front matter\n"), "titles.md", registry)

    assert result.loaded is not None
    assert result.loaded.runbook.title == "From front matter"


def test_a_step_without_a_heading_above_has_no_default_title(
    registry: ConnectorRegistry,
) -> None:
    text = "---\nname: bare\n---\n\n```step\nid: one\nuses: core.noop\n```\n"

    result = load_text(text, "bare.md", registry)

    assert result.loaded is not None
    assert result.loaded.runbook.title is None
    assert result.loaded.runbook.display_title == "bare"
    assert result.loaded.runbook.steps[0].title is None


def test_only_step_blocks_are_steps(registry: ConnectorRegistry) -> None:
    text = """\
---
name: fences
---

````markdown
```step
id: quoted
uses: core.noop
```
````

```yaml
id: plain_yaml
```

```python step
id: wrong_info
```

``` Step
id: spaced
uses: core.noop
```
"""
    result = load_text(text, "fences.md", registry)

    assert result.diagnostics == []
    assert result.loaded is not None
    assert result.loaded.runbook.step_ids == ["spaced"]


SETEXT = """\
---
name: setext
---

Isolate a host
==============

Intro prose, not a heading.

Find the host
-------------
Look it up on the EDR
before acting.

```step
id: find
uses: core.noop
```

- a list item
---

```text
code
```
---

A paragraph that runs
over two lines
---

```step
id: two
uses: core.noop
```
"""


def test_setext_headings_title_the_runbook_and_its_steps(registry: ConnectorRegistry) -> None:
    result = load_text(SETEXT, "setext.md", registry)

    assert result.diagnostics == []
    assert result.loaded is not None
    runbook = result.loaded.runbook
    assert runbook.title == "Isolate a host"
    steps = {step.id: (step.title, step.description) for step in runbook.steps}
    assert steps == {
        "find": ("Find the host", "Look it up on the EDR\nbefore acting."),
        "two": ("A paragraph that runs over two lines", None),
    }


def test_a_rule_after_a_list_or_a_code_block_is_not_a_heading(
    registry: ConnectorRegistry,
) -> None:
    text = SETEXT.replace("A paragraph that runs\nover two lines\n---\n", "")

    result = load_text(text, "setext.md", registry)

    assert result.loaded is not None
    two = result.loaded.runbook.steps[1]
    assert two.title == "Find the host"
    assert two.description is not None and "- a list item" in two.description
