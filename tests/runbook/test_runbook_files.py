"""Loading files and folders: file-level refusals and checks across files."""

from __future__ import annotations

from pathlib import Path

from bot.runbook.loader import MAX_FILE_BYTES, load_file, load_paths
from connectors.registry import ConnectorRegistry

GOOD = """\
name: {name}
triggers:
  - command: {command}
steps:
  - id: find
    uses: core.noop
"""

MARKDOWN = """\
---
name: {name}
---

# {title}

```step
id: find
uses: core.noop
```
"""


def write(path: Path, text: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def errors_of(result: object) -> list[str]:
    return [str(d) for d in result.diagnostics if d.severity == "error"]  # type: ignore[attr-defined]


def test_duplicate_runbook_names_across_files_point_at_the_second_name(
    tmp_path: Path, registry: ConnectorRegistry
) -> None:
    first = write(tmp_path / "a-first.yaml", GOOD.format(name="isolate-host", command="one"))
    second = write(tmp_path / "b-second.md", MARKDOWN.format(name="isolate-host", title="Isolate"))

    result = load_paths([str(tmp_path)], registry)

    assert errors_of(result) == [
        f"{second}:2:7: duplicate runbook name 'isolate-host' (also in {first})"
    ]
    assert list(result.runbooks) == ["isolate-host"]
    assert result.runbooks["isolate-host"].path == first
    assert result.names == ["isolate-host"]


def test_duplicate_command_words_across_runbooks(
    tmp_path: Path, registry: ConnectorRegistry
) -> None:
    first = write(tmp_path / "a.yaml", GOOD.format(name="first", command="isolate"))
    second = write(tmp_path / "b.yaml", GOOD.format(name="second", command="isolate"))

    result = load_paths([str(tmp_path)], registry)

    assert errors_of(result) == [
        f"{second}:3:14: command 'isolate' is already used by runbook 'first' ({first})"
    ]
    assert sorted(result.runbooks) == ["first"]


def test_a_file_over_one_mebibyte_is_refused_without_parsing(
    tmp_path: Path, registry: ConnectorRegistry
) -> None:
    big = GOOD.format(name="big", command="big") + "# padding\n" * (MAX_FILE_BYTES // 10)
    path = write(tmp_path / "big.yaml", big)

    result = load_file(path, registry)

    assert result.loaded is None
    assert [(d.line, d.column) for d in result.diagnostics] == [(1, 1)]
    assert "file too large" in result.diagnostics[0].message
    assert "limit 1 MiB" in result.diagnostics[0].message


def test_a_file_of_exactly_one_mebibyte_is_read(
    tmp_path: Path, registry: ConnectorRegistry
) -> None:
    text = GOOD.format(name="edge", command="edge")
    text += "#" * (MAX_FILE_BYTES - len(text) - 1) + "\n"
    path = write(tmp_path / "edge.yaml", text)

    assert load_file(path, registry).loaded is not None


def test_nul_bytes_mean_not_a_text_file(tmp_path: Path, registry: ConnectorRegistry) -> None:
    path = write(tmp_path / "junk.yaml", b"name: junk\nsteps:\n  - id: a\x00\x01\x02\n")

    result = load_file(path, registry)

    assert errors_of(result) == [f"{path}:3:1: not a text file (contains NUL bytes)"]


def test_binary_junk_is_refused(tmp_path: Path, registry: ConnectorRegistry) -> None:
    path = write(tmp_path / "junk.yaml", bytes(range(256)) * 64)

    result = load_file(path, registry)

    assert errors_of(result) == [f"{path}:1:1: not a text file (contains NUL bytes)"]


def test_text_that_is_not_utf8_points_at_the_first_bad_byte(
    tmp_path: Path, registry: ConnectorRegistry
) -> None:
    path = write(tmp_path / "latin1.yaml", "name: caf\xe9\nsteps: []\n".encode("latin-1"))

    result = load_file(path, registry)

    assert errors_of(result) == [f"{path}:1:10: not UTF-8 text"]


def test_a_byte_order_mark_is_not_content(tmp_path: Path, registry: ConnectorRegistry) -> None:
    path = write(tmp_path / "bom.yaml", "\ufeff" + GOOD.format(name="bom", command="bom"))

    assert load_file(path, registry).loaded is not None


def test_folders_are_searched_recursively_skipping_hidden_entries_and_other_files(
    tmp_path: Path, registry: ConnectorRegistry
) -> None:
    write(tmp_path / "soc" / "isolate.yaml", GOOD.format(name="isolate", command="isolate"))
    write(tmp_path / "sre" / "deep" / "drain.yml", GOOD.format(name="drain", command="drain"))
    write(tmp_path / "phishing.md", MARKDOWN.format(name="phishing", title="Phishing"))
    write(tmp_path / ".drafts" / "broken.yaml", "name: [")
    write(tmp_path / "notes.txt", "name: [")
    write(tmp_path / "scripts" / "helper.py", "print('hi')")

    result = load_paths([str(tmp_path)], registry)

    assert errors_of(result) == []
    assert sorted(result.runbooks) == ["drain", "isolate", "phishing"]
    assert result.files == 3


def test_markdown_documentation_in_a_folder_is_skipped_but_not_when_named(
    tmp_path: Path, registry: ConnectorRegistry
) -> None:
    readme = write(tmp_path / "README.md", "# Runbooks\n\nHow we write runbooks.\n")
    write(tmp_path / "isolate.yaml", GOOD.format(name="isolate", command="isolate"))

    in_folder = load_paths([str(tmp_path)], registry)
    named = load_paths([readme], registry)

    assert errors_of(in_folder) == []
    assert in_folder.files == 1
    assert errors_of(named) == [
        f"{readme}:1:1: missing required key 'name' (a Markdown runbook starts with YAML "
        "front matter between '---' lines)",
        f"{readme}:1:1: a runbook needs at least one step (in Markdown, each step is a "
        "fenced code block whose info string is 'step')",
    ]


def test_markdown_with_step_blocks_but_no_front_matter_is_not_skipped(
    tmp_path: Path, registry: ConnectorRegistry
) -> None:
    path = write(tmp_path / "half.md", "# Half a runbook\n\n```step\nid: a\nuses: core.noop\n```\n")

    result = load_paths([str(tmp_path)], registry)

    assert [d.line for d in result.errors] == [1]
    assert result.errors[0].path == path
    assert "front matter" in result.errors[0].message


def test_every_file_is_reported_at_once(tmp_path: Path, registry: ConnectorRegistry) -> None:
    write(tmp_path / "a.yaml", "name: a\nsteps:\n  - id: x\n    uses: core.nope\n")
    write(tmp_path / "b.yaml", "name: b\nstepz: []\n")
    write(tmp_path / "c.yaml", GOOD.format(name="c", command="c"))

    result = load_paths([str(tmp_path)], registry)

    assert {Path(d.path).name for d in result.errors} == {"a.yaml", "b.yaml"}
    assert list(result.runbooks) == ["c"]


def test_a_missing_path_is_an_error(tmp_path: Path, registry: ConnectorRegistry) -> None:
    missing = str(tmp_path / "nope")

    result = load_paths([missing], registry)

    assert errors_of(result) == [f"{missing}:1:1: no such file or directory"]


def test_parallel_loading_gives_the_same_result_as_serial(
    tmp_path: Path, registry: ConnectorRegistry
) -> None:
    for i in range(70):
        text = GOOD.format(name=f"rb-{i}", command=f"c{i}")
        if i % 10 == 3:
            text = text.replace("core.noop", "core.nop")
        write(tmp_path / f"rb-{i:02d}.yaml", text)

    serial = load_paths([str(tmp_path)], registry, jobs=1)
    parallel = load_paths([str(tmp_path)], registry, jobs=2)
    names_only = load_paths([str(tmp_path)], registry, jobs=2, keep_models=False)

    assert parallel.diagnostics == serial.diagnostics
    assert len(serial.errors) == 7
    assert sorted(parallel.runbooks) == sorted(serial.runbooks)
    assert names_only.runbooks == {}
    assert names_only.names == serial.names == sorted(serial.runbooks)


def test_unconfigured_connectors_are_warned_about_once_per_file(
    tmp_path: Path, registry: ConnectorRegistry
) -> None:
    text = "name: warn\nsteps:\n" + "".join(
        f"  - id: s{i}\n    uses: core.noop\n" for i in range(3)
    )
    path = write(tmp_path / "warn.yaml", text)

    result = load_paths([path], registry, configured=lambda name: name != "core")

    assert result.errors == []
    assert [(d.line, d.column, d.severity) for d in result.diagnostics] == [(4, 11, "warning")]
    assert "connector 'core' is not configured" in result.diagnostics[0].message
    assert list(result.runbooks) == ["warn"]
