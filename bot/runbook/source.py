"""Reading runbook YAML safely, keeping where every key and value came from.

YAML is read as YAML 1.2 (core schema): ``yes``/``no``/``on``/``off`` stay
strings. The tree is built from libyaml's event stream (never from its
recursive composer, which crashes the process on deep nesting), so nesting
depth and alias expansion are bounded while reading. Explicit tags other
than the core schema's are refused: loading never constructs objects.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml
import yaml.cyaml as _cyaml
import yaml.reader
from yaml import events as ev

_Parser: Any = getattr(_cyaml, "CParser", None)
if _Parser is None:  # pragma: no cover - libyaml ships in PyYAML wheels
    from yaml.parser import Parser as _PurePyParser
    from yaml.reader import Reader as _Reader
    from yaml.scanner import Scanner as _Scanner

    class _PyParser(_Reader, _Scanner, _PurePyParser):
        def __init__(self, stream: str) -> None:
            _Reader.__init__(self, stream)
            _Scanner.__init__(self)
            _PurePyParser.__init__(self)

    _Parser = _PyParser

MAX_DEPTH = 100
MAX_NODES = 10_000  # once aliases are used: the document as expanded (SPEC: alias bombs)
MAX_PLAIN_NODES = 50_000  # without aliases: bounds the work of checking a big file

Path = tuple[str | int, ...]

_NULL = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_INT = re.compile(r"[-+]?[0-9]+")
_OCT = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")
_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "seq", "map")}


class Pos(NamedTuple):
    """A 1-based line and column in the original file."""

    line: int
    column: int


@dataclass(slots=True)
class SourceMap:
    """Positions of keys and values by path (``("steps", 2, "uses")``).

    Positions are stored as plain ``(line, column)`` tuples (building a
    ``Pos`` for each of the thousands of nodes of a file costs measurable
    time); lookups return :class:`Pos`. ``blocks`` holds, for literal block
    scalars (``|``), the line and column of their first content line, so an
    error inside a multi-line template can point at its own line.
    """

    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    blocks: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def value(self, path: Path) -> Pos:
        """Where the value at ``path`` starts (or its nearest known ancestor)."""
        return self._lookup(self.values, path)

    def key(self, path: Path) -> Pos:
        """Where the key at ``path`` starts (or the value, or an ancestor)."""
        found = self.keys.get(path)
        if found is not None:
            return Pos(*found)
        return self._lookup(self.values, path)

    def line_in(self, path: Path, line: int | None) -> Pos:
        """Where line ``line`` (1-based) of the string value at ``path`` is.

        Exact for literal block scalars; otherwise the value's start.
        """
        block = self.blocks.get(path)
        if block is None or not line or line < 1:
            return self.value(path)
        return Pos(block[0] + line - 1, block[1])

    def _lookup(self, table: dict[Path, tuple[int, int]], path: Path) -> Pos:
        probe = path
        while probe:
            found = table.get(probe)
            if found is not None:
                return Pos(*found)
            probe = probe[:-1]
        return Pos(*table.get((), (1, 1)))


class SourceError(Exception):
    """A problem reading the document; ``pos`` says where."""

    def __init__(self, message: str, pos: Pos) -> None:
        self.message = message
        self.pos = pos
        super().__init__(message)


class LimitError(SourceError):
    """The document is too big or too deep: nothing more of the file is read."""


@dataclass(slots=True)
class Budget:
    """Nodes read so far; shared by the blocks of one Markdown file."""

    nodes: int = 0
    aliased: bool = False  # an alias was expanded: the smaller limit holds from then on


_MISSING = object()
_PLAIN_WORDS: dict[str, Any] = {
    **dict.fromkeys(_NULL, None),
    **dict.fromkeys(_TRUE, True),
    **dict.fromkeys(_FALSE, False),
}
_NUMERIC_START = frozenset("+-.0123456789")


def _resolve_number(text: str) -> Any:
    if _INT.fullmatch(text):
        return int(text)
    if _OCT.fullmatch(text):
        return int(text[2:], 8)
    if _HEX.fullmatch(text):
        return int(text[2:], 16)
    if _FLOAT.fullmatch(text):
        return float(text)
    if _INF.fullmatch(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.fullmatch(text):
        return math.nan
    return text


def _resolve_plain(text: str) -> Any:
    """The value of a plain (unquoted, untagged) scalar under the YAML 1.2 core schema."""
    value = _PLAIN_WORDS.get(text, _MISSING)
    if value is not _MISSING:
        return value
    if text[0] in _NUMERIC_START:
        return _resolve_number(text)
    return text


def _construct_tagged(tag: str, text: str, pos: Pos) -> Any:
    if tag == _CORE + "str":
        return text
    value = _resolve_plain(text)
    expected: dict[str, tuple[type, ...]] = {
        _CORE + "int": (int,),
        _CORE + "float": (float, int),
        _CORE + "bool": (bool,),
        _CORE + "null": (type(None),),
    }
    types = expected[tag]
    if isinstance(value, bool) and bool not in types:
        raise SourceError(f"value {text!r} is not a valid {tag.rsplit(':', 1)[-1]}", pos)
    if not isinstance(value, types):
        raise SourceError(f"value {text!r} is not a valid {tag.rsplit(':', 1)[-1]}", pos)
    if tag == _CORE + "float":
        return float(value)  # type: ignore[arg-type]
    return value


def _key_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Frame:
    """An open collection while reading: a mapping (``is_map``) or a sequence."""

    __slots__ = ("anchor", "container", "is_map", "key", "key_pos", "nodes_at", "path", "start")

    def __init__(
        self, is_map: bool, path: Path, anchor: str | None, start: tuple[int, int], nodes_at: int
    ) -> None:
        self.is_map = is_map
        self.container: Any = {} if is_map else []
        self.path = path
        self.anchor = anchor
        self.start = start
        self.nodes_at = nodes_at
        self.key: str | None = None
        self.key_pos: tuple[int, int] = (0, 0)


class _Builder:
    """Turns libyaml events into plain Python data plus a SourceMap.

    One flat loop over the events, without recursion: nesting depth and the
    number of nodes (aliases counted at their full expanded size) are bounded
    as the events arrive, before anything big is built.
    """

    def __init__(
        self,
        line_offset: int,
        col_offset: int,
        base: Path,
        smap: SourceMap,
        budget: Budget,
        text: str,
    ) -> None:
        self.line_offset = line_offset
        self.col_offset = col_offset
        self.base = base
        self.smap = smap
        self.budget = budget
        self.text = text

    def pos(self, mark: Any) -> Pos:
        return Pos(mark.line + 1 + self.line_offset, mark.column + 1 + self.col_offset)

    def _too_many(self, at: tuple[int, int], aliased: bool) -> SourceError:
        if aliased:
            message = (
                f"aliases expand the document to more than {MAX_NODES:,} nodes "
                "(an alias bomb?); write the values out instead"
            )
        else:
            message = (
                f"the document has more than {MAX_PLAIN_NODES:,} nodes, the limit for a runbook"
            )
        return LimitError(message, Pos(*at))

    def _block_start(self, mark: Any) -> tuple[int, int]:
        """First content line and column of the literal block scalar starting at ``mark``."""
        lines = self.text.split("\n")
        row = mark.line + 1
        while row < len(lines) and not lines[row].strip():
            row += 1
        indent = len(lines[row]) - len(lines[row].lstrip(" ")) if row < len(lines) else 0
        return row + 1 + self.line_offset, indent + 1 + self.col_offset

    def _note_block(self, top: _Frame | None, mark: Any) -> None:
        if top is None:
            path = self.base
        elif not top.is_map:
            path = (*top.path, len(top.container))
        elif top.key is not None:
            path = (*top.path, top.key)
        else:
            return  # a key
        self.smap.blocks[path] = self._block_start(mark)

    def build(self, parser: Any) -> Any:
        """Return the first document's data; refuse a second document."""
        values = self.smap.values
        keys = self.smap.keys
        line_base = self.line_offset + 1
        col_base = self.col_offset + 1
        anchors: dict[str, tuple[Any, int]] = {}
        nodes = self.budget.nodes
        aliased = self.budget.aliased
        limit = MAX_NODES if aliased else MAX_PLAIN_NODES
        stack: list[_Frame] = []
        top: _Frame | None = None
        result: Any = None
        found = False
        get_event = parser.get_event
        scalar_t, alias_t = ev.ScalarEvent, ev.AliasEvent
        map_start_t, seq_start_t = ev.MappingStartEvent, ev.SequenceStartEvent
        map_end_t, seq_end_t = ev.MappingEndEvent, ev.SequenceEndEvent
        while True:
            event = get_event()
            if event is None:
                break
            etype = type(event)
            if etype is scalar_t or etype is alias_t:
                mark = event.start_mark
                at = (mark.line + line_base, mark.column + col_base)
                anchor = event.anchor
                if etype is alias_t:
                    if anchor not in anchors:
                        raise SourceError(f"unknown alias *{anchor}", Pos(*at))
                    value, size = anchors[anchor]
                    nodes += size
                    aliased = self.budget.aliased = True
                    limit = MAX_NODES
                    if nodes > limit:
                        raise self._too_many(at, aliased)
                    anchor = None
                else:
                    nodes += 1
                    if nodes > limit:
                        raise self._too_many(at, aliased)
                    size = 1
                    tag = event.tag
                    if tag is None:
                        value = event.value
                        if event.implicit[0]:  # plain: resolve (inlined _resolve_plain)
                            plain = _PLAIN_WORDS.get(value, _MISSING)
                            if plain is not _MISSING:
                                value = plain
                            elif value[0] in _NUMERIC_START:
                                value = _resolve_number(value)
                    elif tag == "!":
                        value = event.value
                    elif tag in _ALLOWED_TAGS:
                        value = _construct_tagged(tag, event.value, Pos(*at))
                    else:
                        raise SourceError(_tag_message(tag), Pos(*at))
                    if anchor is not None:
                        anchors[anchor] = (value, 1)
                    if event.style == "|":
                        self._note_block(top, mark)
            elif etype is map_start_t or etype is seq_start_t:
                mark = event.start_mark
                at = (mark.line + line_base, mark.column + col_base)
                nodes += 1
                if nodes > limit:
                    raise self._too_many(at, aliased)
                is_map = etype is map_start_t
                tag = event.tag
                if tag is not None and tag != "!" and tag != _CORE + ("map" if is_map else "seq"):
                    raise SourceError(_tag_message(tag), Pos(*at))
                if len(stack) >= MAX_DEPTH:
                    raise LimitError(f"nested more than {MAX_DEPTH} levels deep", Pos(*at))
                if top is None:
                    path = self.base
                elif not top.is_map:
                    path = (*top.path, len(top.container))
                elif top.key is None:
                    raise SourceError("mapping keys must be plain strings", Pos(*at))
                else:
                    path = (*top.path, top.key)
                top = _Frame(is_map, path, event.anchor, at, nodes - 1)
                stack.append(top)
                continue
            elif etype is map_end_t or etype is seq_end_t:
                frame = stack.pop()
                top = stack[-1] if stack else None
                value = frame.container
                at = frame.start
                size = nodes - frame.nodes_at
                if frame.anchor is not None:
                    anchors[frame.anchor] = (value, size)
            elif etype is ev.DocumentStartEvent:
                if found:
                    raise SourceError(
                        "more than one YAML document in the file", self.pos(event.start_mark)
                    )
                continue
            elif etype is ev.StreamEndEvent:
                break
            else:  # stream start, document end
                continue
            # attach ``value`` (at ``at``) to the open collection
            if top is None:
                result = value
                found = True
                values[self.base] = at
            elif not top.is_map:
                values[(*top.path, len(top.container))] = at
                top.container.append(value)
            elif top.key is None:
                if type(value) is not str:
                    if isinstance(value, (dict, list)):
                        raise SourceError("mapping keys must be plain strings", Pos(*at))
                    value = _key_text(value)
                if value in top.container:
                    raise SourceError(f"duplicate key {value!r}", Pos(*at))
                top.key = value
                top.key_pos = at
            else:
                key = top.key
                top.container[key] = value
                child = (*top.path, key)
                values[child] = at
                keys[child] = top.key_pos
                top.key = None
        self.budget.nodes = nodes
        return result


def load_yaml(
    text: str,
    *,
    smap: SourceMap | None = None,
    line_offset: int = 0,
    col_offset: int = 0,
    base: Path = (),
    budget: Budget | None = None,
) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain data and a SourceMap.

    Args:
        text: the YAML text.
        smap: a map to add positions to (Markdown files share one).
        line_offset: lines before ``text`` in the original file.
        col_offset: columns ``text`` was dedented by (an indented Markdown block).
        base: the path of the document's root (``("steps", 3)`` for a step block).
        budget: the node count shared by several documents of one file.

    Raises:
        SourceError: for syntax errors, disallowed tags, duplicate keys,
            alias bombs and excessive nesting, with the position.
    """
    smap = smap if smap is not None else SourceMap()
    builder = _Builder(line_offset, col_offset, base, smap, budget or Budget(), text)
    parser = _Parser(text)
    try:
        data = builder.build(parser)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark is not None and "maximum nesting depth" in (exc.problem or ""):
            # libyaml's own limit (1,000 levels) can trip first, while its scanner
            # reads ahead of the parser: the document is over our limit anyway.
            raise _depth_error(text, mark, line_offset, col_offset, base) from exc
        pos = builder.pos(mark) if mark is not None else Pos(1 + line_offset, 1 + col_offset)
        problem = exc.problem or exc.context or "invalid YAML"
        context = exc.context_mark
        if exc.problem and exc.context and context is not None and context is not mark:
            where = builder.pos(context)
            problem += f" ({exc.context} at line {where.line}, column {where.column})"
        if (
            "tab" not in problem
            and mark is not None
            and _char_at(text, mark.line, mark.column) == "\t"
        ):
            problem += " (a tab: YAML is indented with spaces only)"
        raise SourceError(f"YAML syntax error: {problem}", pos) from exc
    except yaml.reader.ReaderError as exc:
        # libyaml counts bytes of the UTF-8 text
        offset = len(text.encode("utf-8")[: exc.position].decode("utf-8", "ignore"))
        line = text.count("\n", 0, offset)
        column = offset - (text.rfind("\n", 0, offset) + 1)
        pos = Pos(line + 1 + line_offset, column + 1 + col_offset)
        what = f"character U+{exc.character:04X}" if isinstance(exc.character, int) else "character"
        raise SourceError(f"YAML syntax error: {what} is not allowed ({exc.reason})", pos) from exc
    except yaml.YAMLError as exc:
        message = str(exc).split("\n", 1)[0]
        raise SourceError(f"YAML syntax error: {message}", Pos(1 + line_offset, 1)) from exc
    finally:
        dispose = getattr(parser, "dispose", None)
        if dispose is not None:
            dispose()
    return data, smap


def _depth_error(text: str, mark: Any, line_offset: int, col_offset: int, base: Path) -> LimitError:
    """Our depth error, at the level past MAX_DEPTH, for a document libyaml gave up on.

    The text up to libyaml's mark is nested fewer than its 1,000 levels, so
    reading it again finds the place where our limit is passed.
    """
    lines = text.split("\n", mark.line + 1)[: mark.line + 1]
    lines[-1] = lines[-1][: mark.column]
    prefix = "\n".join(lines)
    builder = _Builder(line_offset, col_offset, base, SourceMap(), Budget(), prefix)
    parser = _Parser(prefix)
    try:
        builder.build(parser)
    except SourceError as exc:
        if isinstance(exc, LimitError) and exc.message.startswith("nested more than"):
            return exc
    except yaml.YAMLError:
        pass  # the prefix ends mid-document: only the depth error matters
    finally:
        dispose = getattr(parser, "dispose", None)
        if dispose is not None:
            dispose()
    where = Pos(mark.line + 1 + line_offset, mark.column + 1 + col_offset)
    return LimitError(f"nested more than {MAX_DEPTH} levels deep", where)


def _tag_message(tag: str) -> str:
    shown = "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag
    return f"YAML tag {shown!r} is not allowed in runbooks (loading never constructs objects)"


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.split("\n", line + 1)
    if line >= len(lines) or column >= len(lines[line]):
        return ""
    return lines[line][column]
