"""The Markdown form: a runbook written as the document people read during an incident.

- YAML front matter between ``---`` lines at the top holds every top-level
  key except ``steps``.
- Each fenced code block whose info string is ``step`` (or ``yaml step``) is
  one step, in document order, wherever CommonMark sees a fence: at the top
  level, in list items, in block quotes. A fence inside an HTML block (a
  ``<!-- ... -->`` comment) or an indented code block is not a fence.
- The nearest heading above a step block is the step's default ``title`` (its
  plain text, without inline markup); the prose between that heading (or the
  previous step block, if later) and the block is its default
  ``description``. The first ``#`` heading is the runbook's default ``title``.
- Everything else is documentation.

The document is read with markdown-it-py (CommonMark) for its block
structure only; headings' inline markup is parsed when a heading becomes a
title. Line and column numbers always point into the original file.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.runbook.source import Budget, LimitError, Pos, SourceError, SourceMap, load_yaml

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.rules_block import StateBlock
    from markdown_it.token import Token

_STEP_INFO = {"step", "yaml step"}
# Markdown's container nesting (lists, quotes) that is read; deeper content is
# skipped by the parser, which is refused when a step block may be in it.
MAX_NESTING = 12
# Inline markup is parsed for titles up to this long (longer ones are kept as
# written), within a budget per file: markdown-it-py takes microseconds a
# character, and its link parsing is quadratic on hostile text like ``![![![``,
# so a title costs its length times one more than its ``[`` count.
_TITLE_MARKUP_MAX = 200
_TITLE_MARKUP_BUDGET = 10_000
_INLINE_SPECIAL = re.compile(r"[\\`*_\[\]!<&\n]")
# a line that may open a step block, whatever container it is in (anchored at
# the line's start, so a long run of backticks is not searched from every one)
_LOOKS_LIKE_STEP = re.compile(
    r"^[ \t>*+\-\d.)]*(?:`{3,}|~{3,})[^\S\n]*(?:yaml[^\S\n]+)?step[^\S\n]*$", re.IGNORECASE | re.M
)
_AT_LINE = re.compile(r"at line (\d+), column (\d+)")
_CONTAINERS = frozenset(
    {"blockquote_open", "bullet_list_open", "ordered_list_open", "list_item_open"}
)

# markdown-it-py is pure Python: about a microsecond for each block rule it
# tries, each line a rule takes and each token it makes (counted three times),
# and tens of microseconds for a dense list item. What it may do for one file
# is bounded, so a hostile file is refused quickly rather than read for
# seconds. Work: a runbook like bench/validate.py's takes about 3 units a line
# (the limit holds some 850 KB of it), prose about 13, a list about 40 an item;
# the limit is read in about 0.3 s. Lines count once per level of nesting (a
# quote's lines when its content is first read, as its rule walks them first).
MAX_LINES = 100_000
MAX_WORK = 150_000
_METER = "runbook_meter"


@dataclass(slots=True)
class _Meter:
    work: int = MAX_WORK
    tokens: int = 0  # tokens already paid for
    quotes: list[int] = field(default_factory=list)  # open quotes' first lines (-1: paid for)


class _TooMuchWork(Exception):
    """The file needs more work than :data:`MAX_WORK`; ``line`` is where it stopped."""

    def __init__(self, line: int) -> None:
        self.line = line


def _metered(
    rule: Callable[[StateBlock, int, int, bool], bool], quote: bool
) -> Callable[[StateBlock, int, int, bool], bool]:
    def run(state: StateBlock, start: int, end: int, silent: bool) -> bool:
        meter: _Meter | None = state.env.get(_METER)
        if meter is None:
            return rule(state, start, end, silent)
        quotes = meter.quotes
        if quotes and quotes[-1] >= 0:  # the first look inside a quote: its lines
            meter.work -= end - quotes[-1]
            quotes[-1] = -1
        meter.work -= 1
        if meter.work < 0:
            raise _TooMuchWork(start)
        if quote and not silent:
            quotes.append(start)
            try:
                ok = rule(state, start, end, silent)
            finally:
                unpaid = quotes.pop() >= 0
        else:
            ok = rule(state, start, end, silent)
            unpaid = True
        if ok and not silent:
            if unpaid:
                meter.work -= state.line - start
            made = len(state.tokens) - meter.tokens
            meter.work -= 3 * max(made, 0)
            meter.tokens = len(state.tokens)
        return ok

    return run


@functools.cache
def _parser() -> MarkdownIt:
    """The one parser, made when the first Markdown runbook is read (imports take 40 ms)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt(
        "commonmark", {"linkify": False, "typographer": False, "maxNesting": MAX_NESTING}
    )
    # Block structure only: headings' inline text is parsed on demand. Link
    # reference definitions are read as text: they only serve links, and
    # markdown-it-py reads a long one a character at a time (a 1 MiB one: 0.7 s).
    md.disable(["inline", "text_join", "reference"])
    ruler = md.block.ruler
    for rule in list(ruler.__rules__):
        ruler.at(rule.name, _metered(rule.fn, rule.name == "blockquote"), {"alt": list(rule.alt)})
    return md


@dataclass(slots=True)
class StepBlock:
    """One fenced ``step`` block."""

    text: str
    first_line: int  # 0-based index of the block's first content line
    indent: int  # columns before the content on its lines (list indentation, ``> ``)
    fence_line: int  # 0-based index of the opening fence
    title: str | None
    description: str | None
    fence_col: int = 0  # 0-based column of the opening fence's marker
    # per content line, when the lines are not all indented alike (``>`` and
    # ``> `` mixed, tabs): the columns before each line's content
    columns: list[int] | None = None


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


def normalize_newlines(text: str) -> str:
    """CRLF and lone CR line ends as LF (line numbers stay the same)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


class _Titles:
    """Plain text of headings, parsed only for the headings that become titles."""

    def __init__(self, env: dict[str, Any]) -> None:
        self.env = env
        self.budget = _TITLE_MARKUP_BUDGET
        self.cache: dict[int, str] = {}

    def of(self, inline: Token) -> str:
        found = self.cache.get(id(inline))
        if found is None:
            found = self.cache[id(inline)] = self._plain(inline.content)
        return found

    def _plain(self, content: str) -> str:
        if not _INLINE_SPECIAL.search(content):
            return content.strip()
        cost = len(content) * (1 + content.count("["))
        if len(content) > _TITLE_MARKUP_MAX or cost > self.budget:
            return " ".join(content.split())
        self.budget -= cost
        try:
            md = _parser()
            children = md.inline.parse(content, md, self.env, [])
        except RecursionError:
            return " ".join(content.split())
        return _inline_text(children).strip()


def _inline_text(tokens: list[Token]) -> str:
    parts: list[str] = []
    stack = list(reversed(tokens))
    while stack:
        token = stack.pop()
        kind = token.type
        if kind in ("text", "text_special", "code_inline"):
            parts.append(token.content)
        elif kind in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif kind == "image" and token.children:
            stack.extend(reversed(token.children))  # its alt text
    return "".join(parts)


def split_markdown(text: str) -> MarkdownDoc:
    """Find front matter, headings and step blocks.

    Raises:
        SourceError: an unterminated front matter or step block, or step
            blocks nested too deeply to be read.
    """
    text = normalize_newlines(text)
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
    body = "\n".join(lines[index:]) if index else text
    if not _LOOKS_LIKE_STEP.search(body):
        return doc  # no step blocks (documentation): nothing to read
    if len(lines) - index > MAX_LINES:
        raise LimitError(
            f"the Markdown has more than {MAX_LINES:,} lines, the limit for a runbook",
            Pos(index + MAX_LINES + 1, 1),
        )
    env: dict[str, Any] = {_METER: _Meter()}
    try:
        tokens = _parser().parse(body, env)
    except _TooMuchWork as exc:
        raise LimitError(
            "the Markdown is too long or too deeply nested to read as a runbook",
            Pos(exc.line + index + 1, 1),
        ) from None
    except RecursionError:  # not expected within MAX_NESTING; never a traceback
        raise LimitError("the Markdown is nested too deeply to read", Pos(index + 1, 1)) from None
    titles = _Titles(env)
    heading: Token | None = None  # the inline token of the nearest heading with text
    prose_from = index  # first line of the prose before the next block
    skipped: list[tuple[int, int]] = []  # lines nested too deep for the parser to read
    for position, token in enumerate(tokens):
        kind = token.type
        if kind == "heading_open":
            inline = tokens[position + 1]
            if inline.content.strip():
                heading = inline
                if doc.title is None and token.tag == "h1":
                    doc.title = titles.of(inline) or None
            if token.map:
                prose_from = max(prose_from, token.map[1] + index)
        elif kind == "fence":
            if " ".join(token.info.split()).lower() not in _STEP_INFO or not token.map:
                continue
            start, end = token.map[0] + index, token.map[1] + index
            block = _step_block(token, lines, start, end)
            block.title = (titles.of(heading) or None) if heading is not None else None
            block.description = _clean_prose(lines[prose_from:start])
            doc.blocks.append(block)
            prose_from = end
        elif token.nesting == 1 and token.level >= MAX_NESTING - 1 and kind in _CONTAINERS:
            if token.map:
                skipped.append((token.map[0], token.map[1]))
    if skipped:
        _refuse_if_steps_skipped(skipped, body, index)
    return doc


def _step_block(token: Token, lines: list[str], start: int, end: int) -> StepBlock:
    """A step block from its fence token; ``start``/``end`` are its lines in the file."""
    fence = lines[start]
    fence_col = max(fence.find(token.markup), 0)
    content = token.content
    count = content.count("\n") + (1 if content and not content.endswith("\n") else 0)
    if count != end - start - 2:  # the fence ran to the end of its document, list item or quote
        raise SourceError("step block is never closed", Pos(start + 1, fence_col + 1))
    if content.startswith("\n".join(lines[start + 1 : end - 1])):  # not indented: most blocks
        return StepBlock(
            text=content if content.endswith("\n") or not content else content + "\n",
            first_line=start + 1,
            indent=0 if count else fence_col,
            fence_line=start,
            title=None,
            description=None,
            fence_col=fence_col,
        )
    columns = []
    for number, part in enumerate(content.split("\n")[:count]):
        if not part.strip():
            columns.append(-1)  # a blank line: any column
            continue
        original = lines[start + 1 + number]
        if original.endswith(part):
            columns.append(len(original) - len(part))
        else:  # a tab in the indentation, expanded by the parser: align the text
            lead = len(original) - len(original.lstrip(" \t"))
            columns.append(lead - (len(part) - len(part.lstrip(" \t"))))
    used = {column for column in columns if column >= 0}
    if len(used) <= 1:
        indent = used.pop() if used else fence_col
        per_line = None
    else:
        indent = min(used)
        per_line = [column if column >= 0 else indent for column in columns]
    return StepBlock(
        text=content if content.endswith("\n") or not content else content + "\n",
        first_line=start + 1,
        indent=indent,
        fence_line=start,
        title=None,
        description=None,
        fence_col=fence_col,
        columns=per_line,
    )


def _refuse_if_steps_skipped(skipped: list[tuple[int, int]], body: str, index: int) -> None:
    """markdown-it skips what is nested past its limit: refuse it if a step block may be there."""
    found: list[int] = []  # lines of ``body`` that may open a step block
    line, offset = 0, 0
    for match in _LOOKS_LIKE_STEP.finditer(body):
        line += body.count("\n", offset, match.start())
        offset = match.start()
        found.append(line)
    for start, end in skipped:
        at = bisect.bisect_left(found, start)
        if at < len(found) and found[at] < end:
            raise LimitError(
                "a step block nested too deeply in lists and quotes "
                f"(at most {MAX_NESTING - 1} levels: a quote is one, a list two)",
                Pos(found[at] + index + 1, 1),
            )


def _load_block(block: StepBlock, smap: SourceMap, budget: Budget, base: tuple[Any, ...]) -> Any:
    """Parse one step block's YAML, with positions in the original file."""
    if block.columns is None:
        value, _ = load_yaml(
            block.text,
            smap=smap,
            line_offset=block.first_line,
            col_offset=block.indent,
            base=base,
            budget=budget,
        )
        return value
    columns = block.columns
    first = block.first_line

    def shift(line: int, column: int) -> tuple[int, int]:
        row = line - 1 - first
        return line, max(1, column + (columns[row] if 0 <= row < len(columns) else block.indent))

    local = SourceMap()
    try:
        value, _ = load_yaml(block.text, smap=local, line_offset=first, base=base, budget=budget)
    except SourceError as exc:
        message = _AT_LINE.sub(
            lambda m: "at line {}, column {}".format(*shift(int(m[1]), int(m[2]))), exc.message
        )
        raise type(exc)(message, Pos(*shift(*exc.pos))) from exc
    finally:
        for mine, theirs in (
            (local.values, smap.values),
            (local.keys, smap.keys),
            (local.blocks, smap.blocks),
        ):
            for path, (line, column) in mine.items():
                theirs[path] = shift(line, column)
    return value


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
            value = _load_block(block, smap, budget, path)
        except LimitError:
            raise  # the whole file is refused, as in the YAML form
        except SourceError as exc:
            errors.append(exc)
            broken.add(len(steps))
            value = None
        if value is None and path not in smap.values:
            smap.values[path] = Pos(block.fence_line + 1, block.fence_col + 1)
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
