"""The corpus of broken runbooks: every error at its exact line:column.

Each file under ``corpus/`` ends with the errors it must produce, one per
line, as ``# expect: LINE:COL message`` (YAML) or
``<!-- expect: LINE:COL message -->`` (Markdown). The expectations sit at
the end so they do not move the lines they talk about. A file must produce
exactly these errors: none missing, none extra.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.runbook.loader import load_text
from connectors.registry import ConnectorRegistry

CORPUS = Path(__file__).with_name("corpus")
EXPECT = re.compile(r"^(?:#|<!--) expect: (\d+):(\d+) (.*?)(?: -->)?$", re.MULTILINE)
FILES = sorted(p for p in CORPUS.iterdir() if p.suffix in (".yaml", ".md"))


def test_the_corpus_is_large_and_has_both_forms() -> None:
    assert len(FILES) >= 40
    assert sum(p.suffix == ".md" for p in FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_broken_runbook_reports_exactly_its_errors(path: Path, registry: ConnectorRegistry) -> None:
    text = path.read_text(encoding="utf-8")
    expected = [(int(line), int(col), msg) for line, col, msg in EXPECT.findall(text)]
    assert expected, f"{path.name} declares no expected errors"

    result = load_text(text, str(path), registry)

    assert result.loaded is None
    errors = [d for d in result.diagnostics if d.severity == "error"]
    got = [(d.line, d.column, d.message) for d in errors]
    assert [(line, col) for line, col, _ in got] == [(line, col) for line, col, _ in expected], got
    for (_, _, message), (line, col, substance) in zip(got, expected, strict=True):
        assert substance in message, f"{line}:{col}: {message!r} lacks {substance!r}"
    assert all(d.path == str(path) for d in errors)
