"""End to end through the real command: validate, list, graph, connectors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ISOLATE = """\
name: isolate-host
title: Isolate a compromised host
description: Contain the host, then tell the channel.
inputs:
  host: {type: string}
triggers:
  - command: isolate
  - alert:
      source: crowdstrike
      if: alert.severity >= 70
      inputs: {host: "{{ alert.device.hostname }}"}
  - schedule: {cron: "0 3 * * 1", inputs: {host: canary-1}}
steps:
  - id: find
    title: Find the host
    uses: core.echo
    with: {host: "{{ inputs.host }}"}
  - id: approve
    title: Ask "the leads"
    approval: {prompt: "Contain {{ inputs.host }}?"}
  - id: contain
    needs: [approve]
    if: steps.approve.output.decision == 'approve'
    uses: core.noop
  - id: skip_note
    needs: [approve]
    if: not (steps.approve.output.decision == 'approve')
    notify: {text: "Not contained"}
  - id: close
    needs: [contain, skip_note]
    uses: core.noop
"""

PHISHING = """\
---
name: phishing-triage
description: Triage a reported mail.
---

# Triage a reported phishing mail

## Look it up

```step
id: lookup
uses: core.echo
```
"""

BROKEN = """\
name: broken
steps:
  - id: find
    uses: core.nop
    need: [x]
"""


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    clean.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
    return proc


@pytest.fixture
def book_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "runbooks"
    (folder / "soc").mkdir(parents=True)
    (folder / "soc" / "isolate-host.yaml").write_text(ISOLATE, encoding="utf-8")
    (folder / "phishing-triage.md").write_text(PHISHING, encoding="utf-8")
    (folder / "README.md").write_text("# Our runbooks\n\nDocumentation only.\n", encoding="utf-8")
    return folder


@pytest.fixture
def broken_dir(book_dir: Path) -> Path:
    (book_dir / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    return book_dir


# -- validate ------------------------------------------------------------------------


def test_validate_a_good_folder_exits_0(book_dir: Path) -> None:
    proc = run("validate", str(book_dir), cwd=book_dir.parent)

    assert proc.returncode == 0
    assert proc.stdout.strip() == "2 runbooks valid"
    assert proc.stderr == ""


def test_validate_reports_every_error_with_its_position_and_exits_1(broken_dir: Path) -> None:
    proc = run("validate", str(broken_dir), cwd=broken_dir.parent)

    assert proc.returncode == 1
    path = broken_dir / "broken.yaml"
    assert proc.stderr.splitlines() == [
        f"{path}:4:11: connector 'core' has no action 'nop'; did you mean 'noop'?",
        f"{path}:5:5: unknown key 'need'; did you mean 'needs'?",
        "2 errors in 1 file; 2 of 3 runbooks valid",
    ]


def test_validate_json_shape(broken_dir: Path) -> None:
    proc = run("validate", "--json", str(broken_dir), cwd=broken_dir.parent)

    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert set(doc) == {"valid", "files", "runbooks", "errors", "warnings"}
    assert doc["valid"] is False
    assert doc["files"] == 3
    assert doc["runbooks"] == ["isolate-host", "phishing-triage"]
    assert doc["warnings"] == []
    assert doc["errors"][0] == {
        "path": str(broken_dir / "broken.yaml"),
        "line": 4,
        "column": 11,
        "message": "connector 'core' has no action 'nop'; did you mean 'noop'?",
        "severity": "error",
    }


def test_validate_json_of_a_good_folder(book_dir: Path) -> None:
    proc = run("validate", "--json", str(book_dir), cwd=book_dir.parent)

    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {
        "valid": True,
        "files": 2,
        "runbooks": ["isolate-host", "phishing-triage"],
        "errors": [],
        "warnings": [],
    }


def test_validate_without_paths_uses_the_runbook_directory(book_dir: Path) -> None:
    by_option = run("--runbooks", str(book_dir), "validate", cwd=book_dir.parent)
    by_env = run("validate", cwd=book_dir.parent, env={"RUNBOOK_RUNBOOKS_DIR": str(book_dir)})
    by_default = run("validate", cwd=book_dir.parent)

    assert by_option.returncode == by_env.returncode == by_default.returncode == 0
    assert by_option.stdout == by_env.stdout == by_default.stdout == "2 runbooks valid\n"


def test_validate_named_files_and_a_missing_path(book_dir: Path) -> None:
    good = book_dir / "phishing-triage.md"
    missing = book_dir / "nope.yaml"

    proc = run("validate", str(good), str(missing), cwd=book_dir.parent)

    assert proc.returncode == 1
    assert f"{missing}:1:1: no such file or directory" in proc.stderr


def test_validate_warns_about_unconfigured_connectors_but_exits_0(tmp_path: Path) -> None:
    specs = json.loads(run("connectors", "--json", cwd=tmp_path).stdout)
    unconfigured = [
        (c["name"], a["name"], [i["name"] for i in a["inputs"] if i["required"]])
        for c in specs
        if not c["configured"]
        for a in c["actions"]
    ]
    if not unconfigured:
        pytest.skip("every installed connector is configured")
    connector, action, required = unconfigured[0]
    args = "".join(f"      {name}: '{{{{ inputs.x }}}}'\n" for name in required)
    (tmp_path / "uses-vendor.yaml").write_text(
        f"name: uses-vendor\ninputs:\n  x: {{type: string}}\nsteps:\n"
        f"  - id: call\n    uses: {connector}.{action}\n    with:\n{args or '      {}'}\n",
        encoding="utf-8",
    )

    proc = run("validate", "uses-vendor.yaml", cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert (
        f"uses-vendor.yaml:6:11: warning: connector {connector!r} is not configured" in proc.stdout
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bomb.yaml", "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
            f"{k}: &{k} [{', '.join([f'*{p}'] * 10)}]\n" for p, k in zip("abcd", "bcde", strict=True)
        ), "aliases expand the document to more than 10,000 nodes"),
        ("deep.yaml", "[" * 100_000, "nested more than 100 levels deep"),
        ("junk.yaml", bytes(range(256)) * 10, "not a text file (contains NUL bytes)"),
        ("latin.md", "---\nname: caf\xe9\n---\n".encode("latin-1"), "not UTF-8 text"),
        ("tags.yaml", "!!python/object/apply:os.system [ls]\n", "YAML tag '!!python/object/apply:os.system'"),
        ("mro.yaml", "name: m\nsteps: [{id: a, uses: core.echo, with: {x: \"{{ ''.__class__.__mro__ }}\"}}]\n",
         "access to private attribute '__class__'"),
    ],
    ids=["alias-bomb", "deep", "binary", "latin1", "tag", "mro"],
)  # fmt: skip
def test_hostile_files_are_plain_errors(
    tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")

    proc = run("validate", str(path), cwd=tmp_path)

    assert proc.returncode == 1
    assert message in proc.stderr
    assert proc.stderr.startswith(f"{path}:")


def test_validate_a_large_folder_in_parallel(tmp_path: Path) -> None:
    for i in range(80):
        text = ISOLATE.replace("isolate-host", f"rb-{i}").replace("isolate", f"cmd{i}")
        if i == 41:
            text = text.replace("core.noop", "core.nop", 1)
        (tmp_path / f"rb-{i:02d}.yaml").write_text(text, encoding="utf-8")

    proc = run("validate", "--json", str(tmp_path), cwd=tmp_path)

    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["files"] == 80
    assert len(doc["runbooks"]) == 79
    assert [(Path(e["path"]).name, e["line"]) for e in doc["errors"]] == [("rb-41.yaml", 24)]


# -- list ---------------------------------------------------------------------------


def test_list_json_shape(book_dir: Path) -> None:
    proc = run("--runbooks", str(book_dir), "list", "--json", cwd=book_dir.parent)

    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert [sorted(item) for item in doc] == [
        ["description", "name", "path", "title", "triggers"]
    ] * 2
    isolate, phishing = doc
    assert isolate["name"] == "isolate-host"
    assert isolate["title"] == "Isolate a compromised host"
    assert isolate["description"] == "Contain the host, then tell the channel."
    assert isolate["path"] == str(book_dir / "soc" / "isolate-host.yaml")
    assert isolate["triggers"][0] == {"command": "isolate"}
    assert isolate["triggers"][1]["alert"]["source"] == "crowdstrike"
    assert isolate["triggers"][1]["alert"]["if"] == "alert.severity >= 70"
    assert isolate["triggers"][2]["schedule"]["cron"] == "0 3 * * 1"
    assert phishing == {
        "name": "phishing-triage",
        "title": "Triage a reported phishing mail",
        "description": "Triage a reported mail.",
        "path": str(book_dir / "phishing-triage.md"),
        "triggers": [],
    }


def test_list_text(book_dir: Path) -> None:
    proc = run("--runbooks", str(book_dir), "list", cwd=book_dir.parent)

    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0].split(None, 1) == ["isolate-host", "Isolate a compromised host"]
    assert "/runbook isolate" in lines[1]
    assert "alert crowdstrike if alert.severity >= 70" in lines[1]
    assert "schedule 0 3 * * 1 (UTC)" in lines[1]
    assert lines[3].strip() == "triggers: manual"


def test_list_leaves_broken_runbooks_out_with_a_warning(broken_dir: Path) -> None:
    proc = run("--runbooks", str(broken_dir), "list", "--json", cwd=broken_dir.parent)

    assert proc.returncode == 0
    assert [item["name"] for item in json.loads(proc.stdout)] == ["isolate-host", "phishing-triage"]
    assert "1 runbook file" in proc.stderr and "runbook validate" in proc.stderr


def test_list_of_an_empty_folder(tmp_path: Path) -> None:
    proc = run("--runbooks", str(tmp_path), "list", cwd=tmp_path)

    assert proc.returncode == 0
    assert proc.stdout == f"no runbooks in {tmp_path}\n"
    assert json.loads(run("--runbooks", str(tmp_path), "list", "--json", cwd=tmp_path).stdout) == []


# -- graph --------------------------------------------------------------------------


def graph(book_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run("--runbooks", str(book_dir), "graph", *args, cwd=book_dir.parent)


def test_graph_text_prints_one_line_per_step_with_id_title_and_needs(book_dir: Path) -> None:
    proc = graph(book_dir, "isolate-host")

    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "find",
        "approve",
        "contain",
        "skip_note",
        "close",
    ]
    assert "Find the host" in lines[0] and "needs: -" in lines[0]
    assert 'Ask "the leads"' in lines[1] and "needs: find" in lines[1]
    assert "needs: approve" in lines[2] and "if: steps.approve.output.decision" in lines[2]
    assert "needs: contain, skip_note" in lines[4]


def test_graph_mermaid(book_dir: Path) -> None:
    proc = graph(book_dir, "isolate-host", "--format", "mermaid")

    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == "flowchart TD"
    assert "  approve{{\"Ask 'the leads'\"}}" in lines
    assert "  find --> approve" in lines
    assert "  contain --> close" in lines
    assert any(line.startswith("  approve -->|steps.approve.output.decision") for line in lines)


def test_graph_dot(book_dir: Path) -> None:
    proc = graph(book_dir, "isolate-host", "--format", "dot")

    assert proc.returncode == 0
    text = proc.stdout
    assert text.startswith('digraph "isolate-host" {')
    assert text.rstrip().endswith("}")
    assert '"approve" [label="Ask \\"the leads\\"", shape=diamond];' in text
    assert '"skip_note" -> "close";' in text


def test_graph_json(book_dir: Path) -> None:
    proc = graph(book_dir, "isolate-host", "--json")

    assert proc.returncode == 0
    doc: dict[str, Any] = json.loads(proc.stdout)
    assert doc["name"] == "isolate-host"
    assert doc["steps"][4] == {
        "id": "close",
        "title": None,
        "kind": "core.noop",
        "needs": ["contain", "skip_note"],
        "if": None,
    }
    assert doc["text"].splitlines()[0].startswith("find")


def test_graph_of_an_unknown_or_broken_runbook_exits_2(broken_dir: Path) -> None:
    unknown = graph(broken_dir, "nope")
    broken = graph(broken_dir, "broken")
    unknown_json = graph(broken_dir, "nope", "--json")

    assert unknown.returncode == broken.returncode == unknown_json.returncode == 2
    assert unknown.stderr == "runbook: unknown runbook 'nope'\n"
    assert broken.stderr == "runbook: runbook 'broken' has errors (see `runbook validate`)\n"
    assert json.loads(unknown_json.stdout) == {"error": "unknown runbook 'nope'"}


# -- connectors ----------------------------------------------------------------------


def test_connectors_text_lists_core_and_its_actions(tmp_path: Path) -> None:
    proc = run("connectors", cwd=tmp_path)

    assert proc.returncode == 0
    assert "core — Core (configured)" in proc.stdout
    assert "  core.sleep(seconds: float)  [read-only]" in proc.stdout
    assert "  core.fail(message: str, retryable?: bool)  [read-only]" in proc.stdout
    assert "  core.echo(any keys)  [read-only]" in proc.stdout


def test_connectors_json_shape(tmp_path: Path) -> None:
    proc = run("connectors", "--json", cwd=tmp_path)

    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    core = next(c for c in doc if c["name"] == "core")
    assert set(core) == {"name", "title", "configured", "settings", "actions"}
    assert core["configured"] is True
    assert [a["name"] for a in core["actions"]] == ["echo", "fail", "flaky", "noop", "sleep"]
    flaky = next(a for a in core["actions"] if a["name"] == "flaky")
    assert flaky["ref"] == "core.flaky"
    assert flaky["mutating"] is False
    assert flaky["inputs"] == [
        {"name": "failures", "type": "int", "required": True, "description": None}
    ]
    assert [o["name"] for o in flaky["outputs"]] == ["attempt"]


# -- usage mistakes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("frobnicate",),
        ("graph",),
        ("graph", "x", "--format", "png"),
        ("validate", "--nope"),
    ],
)
def test_usage_mistakes_exit_2_without_a_traceback(tmp_path: Path, args: tuple[str, ...]) -> None:
    proc = run(*args, cwd=tmp_path)

    assert proc.returncode == 2
    assert proc.stderr.startswith("runbook")
