"""The Markdown form: a runbook written as the document people read during an incident.

- YAML front matter between ``---`` lines at the top holds every top-level
  key except ``steps``.
- Each fenced code block whose info string is ``step`` (or ``yaml step``) is
  one step, in document order.
- The nearest heading above a step block is the step's default ``title``; the
  prose between that heading (or the previous step block, if later) and the
  block is its default ``description``. The first ``#`` heading is the
  runbook's default ``title``.
- Everything else is documentation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bot.runbook.source import Budget, LimitError, Pos, SourceError, SourceMap, load_yaml

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_ATX = re.compile(r"^ {0,3}(?P<hashes>#{1,6})(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(?P<bar>=+|-+)[ \t]*$")
_NOT_PARAGRAPH = re.compile(r"^(?: {4}|\t| {0,3}(?:>|[-*+](?:[ \t]|$)|\d{1,9}[.)](?:[ \t]|$)))")
_STEP_INFO = {"step", "yaml step"}
_MARKERS = frozenset("`~#=-")


@dataclass(slots=True)
class StepBlock:
    """One fenced ``step`` block."""

    text: str
    first_line: int  # 0-based index of the block's first content line
    indent: int
    fence_line: int  # 0-based index of the opening fence
    title: str | None
    description: str | None


@dataclass(slots=True)
class MarkdownDoc:
    """A Markdown runbook split into its parts."""

    front_matter: str | None
    front_line: int
    title: str | None
    blocks: list[StepBlock] = field(default_factory=list)
    stray_steps_in_fences: list[int] = field(default_factory=list)


def _clean_prose(lines: list[str]) -> str | None:
    text = "\n".join(lines).strip()
    return text or None


def split_markdown(text: str) -> MarkdownDoc:
    """Find front matter, headings and step blocks.

    Raises:
        SourceError: an unterminated front matter or step block.
    """
    lines = text.split("\n")
    index = 0
    front: str | None = None
    front_line = 0
    if lines and lines[0].rstrip() == "---":
        for end in range(1, len(lines)):
            if lines[end].rstrip() in ("---", "..."):
                front = "\n".join(lines[1:end])
                front_line = 1
                index = end + 1
                break
        else:
            raise SourceError("front matter opened with '---' is never closed", Pos(1, 1))
    doc = MarkdownDoc(front_matter=front, front_line=front_line, title=None)
    heading: str | None = None
    prose: list[str] = []
    while index < len(lines):
        line = lines[index]
        if line.lstrip(" ")[:1] not in _MARKERS:  # most lines are prose: skip the regexes
            prose.append(line)
            index += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            marker = fence.group("fence")
            info = fence.group("info").strip()
            if marker[0] == "`" and "`" in info:
                prose.append(line)
                index += 1
                continue
            close = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
            end = index + 1
            while end < len(lines) and not close.match(lines[end]):
                end += 1
            normalized = " ".join(info.split()).lower()
            if normalized in _STEP_INFO:
                if end >= len(lines):
                    raise SourceError(
                        "step block is never closed", Pos(index + 1, len(fence.group("indent")) + 1)
                    )
                indent = len(fence.group("indent"))
                body = [_dedent(raw, indent) for raw in lines[index + 1 : end]]
                doc.blocks.append(
                    StepBlock(
                        text="\n".join(body) + "\n",
                        first_line=index + 1,
                        indent=indent,
                        fence_line=index,
                        title=heading,
                        description=_clean_prose(prose),
                    )
                )
                prose = []
            else:
                prose.extend(lines[index : end + 1])
            index = end + 1
            continue
        atx = _ATX.match(line)
        setext = None if atx else _setext_heading(line, prose)
        if atx or setext:
            if atx:
                title, level = (atx.group("text") or "").strip(), len(atx.group("hashes"))
            else:
                assert setext is not None
                title, level = setext
            if doc.title is None and level == 1 and title:
                doc.title = title
            heading = title or heading
            prose = []
        else:
            prose.append(line)
        index += 1
    return doc


def _setext_heading(line: str, prose: list[str]) -> tuple[str, int] | None:
    """A Setext heading: a paragraph underlined with ``===`` (level 1) or ``---`` (level 2).

    The underline belongs to the paragraph that ends on the line above it; a
    ``---`` after a blank line, a list item or a quote is a thematic break or
    part of that block, not a heading (as CommonMark reads it).
    """
    bar = _SETEXT.match(line)
    if bar is None or not prose or not prose[-1].strip():
        return None
    start = len(prose)
    while start > 0 and prose[start - 1].strip():
        start -= 1
    paragraph = prose[start:]
    if _NOT_PARAGRAPH.match(paragraph[0]) or any(_FENCE.match(part) for part in paragraph):
        return None
    title = " ".join(part.strip() for part in paragraph)
    return title, 1 if bar.group("bar")[0] == "=" else 2


def _dedent(line: str, indent: int) -> str:
    strip = 0
    while strip < indent and strip < len(line) and line[strip] == " ":
        strip += 1
    return line[strip:]


def load_markdown(text: str) -> tuple[dict[str, Any], SourceMap, list[SourceError], dict[str, Any]]:
    """Load a Markdown runbook into the same raw shape as the YAML form.

    Returns:
        (data, source map, per-block errors, defaults) where defaults holds the
        runbook title and per-step titles/descriptions taken from the prose,
        applied by the loader only where the runbook does not say otherwise,
        and ``broken``: the indexes of step blocks that did not parse (their
        errors are in the list; the loader checks nothing more about them).

    Raises:
        SourceError: when the document's structure (front matter) is broken.
    """
    doc = split_markdown(text)
    smap = SourceMap()
    budget = Budget()
    errors: list[SourceError] = []
    data: dict[str, Any] = {}
    if doc.front_matter is not None:
        front, _ = load_yaml(doc.front_matter, smap=smap, line_offset=doc.front_line, budget=budget)
        if front is None:
            front = {}
        if not isinstance(front, dict):
            raise SourceError("front matter must be a mapping of keys", Pos(2, 1))
        data.update(front)
    else:
        smap.values[()] = Pos(1, 1)
    if "steps" in data:
        raise SourceError(
            "in a Markdown runbook, steps go in fenced ```step blocks, not in the front matter",
            smap.key(("steps",)),
        )
    steps: list[Any] = []
    step_defaults: list[dict[str, str]] = []
    broken: set[int] = set()  # blocks that did not parse: already reported
    for block in doc.blocks:
        path = ("steps", len(steps))
        try:
            value, _ = load_yaml(
                block.text,
                smap=smap,
                line_offset=block.first_line,
                col_offset=block.indent,
                base=path,
                budget=budget,
            )
        except LimitError:
            raise  # the whole file is refused, as in the YAML form
        except SourceError as exc:
            errors.append(exc)
            broken.add(len(steps))
            value = None
        if value is None and path not in smap.values:
            smap.values[path] = Pos(block.fence_line + 1, block.indent + 1)
        if value is None:
            value = {}
        steps.append(value)
        prose: dict[str, str] = {}
        if block.title:
            prose["title"] = block.title
        if block.description:
            prose["description"] = block.description
        step_defaults.append(prose)
    data["steps"] = steps
    if () not in smap.values:
        smap.values[()] = Pos(1, 1)
    smap.values.setdefault(("steps",), Pos(1, 1))
    defaults: dict[str, Any] = {
        "title": doc.title,
        "steps": step_defaults,
        "broken": broken,
        "front_matter": doc.front_matter is not None,
    }
    return data, smap, errors, defaults
