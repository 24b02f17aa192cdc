"""docs/connectors.md stays true: its reference is generated, its example is the tested one."""

from __future__ import annotations

from pathlib import Path

from connectors.reference import BEGIN, END, reference_markdown

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "connectors.md").read_text()
EXAMPLE = ROOT / "examples" / "runbook-bot-cmdb"


def test_the_built_in_reference_is_generated_from_the_code() -> None:
    start = DOC.index(BEGIN) + len(BEGIN)
    generated = DOC[start : DOC.index(END)]
    assert generated.strip() == reference_markdown().strip(), (
        "docs/connectors.md is out of date: run `python -m connectors.reference` and paste it"
    )


def test_every_built_in_action_is_documented() -> None:
    from connectors.registry import ConnectorRegistry

    for spec in ConnectorRegistry.discover(include_entry_points=False).specs():
        assert f"`{spec.ref}`" in DOC


def test_the_example_in_the_docs_is_the_tested_package() -> None:
    source = (EXAMPLE / "src" / "runbook_cmdb" / "__init__.py").read_text()
    pyproject = (EXAMPLE / "pyproject.toml").read_text()
    assert f"```python\n{source}```" in DOC
    assert f"```toml\n{pyproject}```" in DOC
    assert "runbook_bot.connectors" in pyproject
