"""Edges of the read-only commands: files named twice, graph text that needs escaping,
what `connectors` says about allowed values, defaults and free-form inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli_read_commands import run

pytestmark = pytest.mark.slow

AWKWARD = """\
name: awkward
steps:
  - id: end
    title: "Ends with \\\\ and \\"quotes\\" |pipe|"
    uses: core.noop
  - id: click
    title: "two\\nlines"
    uses: core.noop
    if: steps.end.outcome == "succeeded"
"""


def test_a_file_named_twice_is_loaded_once(tmp_path: Path) -> None:
    (tmp_path / "awkward.yaml").write_text(AWKWARD, encoding="utf-8")

    proc = run("validate", "awkward.yaml", "./awkward.yaml", ".", cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert "duplicate" not in proc.stderr
    assert "1 runbook valid" in proc.stdout + proc.stderr


def test_graph_text_is_one_line_per_step(tmp_path: Path) -> None:
    (tmp_path / "awkward.yaml").write_text(AWKWARD, encoding="utf-8")

    proc = run("--runbooks", ".", "graph", "awkward", cwd=tmp_path)

    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    assert "two lines" in lines[1]


def test_graph_mermaid_keywords_and_quotes(tmp_path: Path) -> None:
    (tmp_path / "awkward.yaml").write_text(AWKWARD, encoding="utf-8")

    proc = run("--runbooks", ".", "graph", "awkward", "--format", "mermaid", cwd=tmp_path)

    lines = proc.stdout.splitlines()
    assert "  End[\"Ends with \\ and 'quotes' #124;pipe#124;\"]" in lines
    assert "  End -->|steps.end.outcome == 'succeeded'| Click" in lines
    assert not any(line.split()[0] == "end" for line in lines[1:])


def test_graph_dot_escapes_backslashes(tmp_path: Path) -> None:
    (tmp_path / "awkward.yaml").write_text(AWKWARD, encoding="utf-8")

    proc = run("--runbooks", ".", "graph", "awkward", "--format", "dot", cwd=tmp_path)

    assert '"end" [label="Ends with \\\\ and \\"quotes\\" |pipe|"];' in proc.stdout
    assert '"click" [label="two lines"];' in proc.stdout


def test_connectors_show_allowed_values_defaults_and_free_form_inputs(tmp_path: Path) -> None:
    proc = run("connectors", "--json", cwd=tmp_path)

    actions = {
        f"{conn['name']}.{act['name']}": act
        for conn in json.loads(proc.stdout)
        for act in conn["actions"]
    }
    severity = next(f for f in actions["pagerduty.trigger"]["inputs"] if f["name"] == "severity")
    assert severity["type"] == "'critical' | 'error' | 'warning' | 'info'"
    retryable = next(f for f in actions["core.fail"]["inputs"] if f["name"] == "retryable")
    assert retryable["default"] is False
    assert actions["core.echo"]["inputs"] == [
        {"name": "*", "type": "any", "required": False, "description": "any keys"}
    ]
    assert actions["core.noop"]["inputs"] == []
