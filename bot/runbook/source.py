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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
import yaml.cyaml as _cyaml
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
MAX_NODES = 10_000

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


@dataclass(frozen=True, slots=True)
class Pos:
    """A 1-based line and column in the original file."""

    line: int
    column: int


@dataclass(slots=True)
class SourceMap:
    """Positions of keys and values by path (``("steps", 2, "uses")``)."""

    values: dict[Path, Pos] = field(default_factory=dict)
    keys: dict[Path, Pos] = field(default_factory=dict)

    def value(self, path: Path) -> Pos:
        """Where the value at ``path`` starts (or its nearest known ancestor)."""
        return self._lookup(self.values, path)

    def key(self, path: Path) -> Pos:
        """Where the key at ``path`` starts (or the value, or an ancestor)."""
        if path in self.keys:
            return self.keys[path]
        return self._lookup(self.values, path)

    def _lookup(self, table: dict[Path, Pos], path: Path) -> Pos:
        probe = path
        while probe:
            if probe in table:
                return table[probe]
            probe = probe[:-1]
        return table.get((), Pos(1, 1))


class SourceError(Exception):
    """A problem reading the document; ``pos`` says where."""

    def __init__(self, message: str, pos: Pos) -> None:
        self.message = message
        self.pos = pos
        super().__init__(message)


@dataclass(slots=True)
class _Frame:
    kind: str  # "map" or "seq"
    value: Any
    path: Path
    anchor: str | None
    start: Pos
    pending_key: str | None = None
    pending_key_pos: Pos | None = None
    keys_seen: set[str] = field(default_factory=set)


def _resolve_plain(text: str) -> Any:
    if text in _NULL:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
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


class _Builder:
    """Turns libyaml events into plain Python data plus a SourceMap."""

    def __init__(self, line_offset: int, col_offset: int, base: Path, smap: SourceMap) -> None:
        self.line_offset = line_offset
        self.col_offset = col_offset
        self.base = base
        self.smap = smap
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.nodes = 0

    def pos(self, mark: Any) -> Pos:
        return Pos(mark.line + 1 + self.line_offset, mark.column + 1 + self.col_offset)

    def count(self, amount: int, pos: Pos) -> None:
        self.nodes += amount
        if self.nodes > MAX_NODES:
            raise SourceError(
                f"document expands to more than {MAX_NODES:,} nodes (alias bomb?)", pos
            )

    def build(self, events: Iterator[Any]) -> tuple[Any, bool]:
        """Return (document, found) for the first document; refuse a second one."""
        stack: list[_Frame] = []
        result: Any = None
        found = False
        sizes: list[int] = []  # node count of each open collection, for anchors

        def attach(value: Any, pos: Pos, size: int, anchor: str | None) -> None:
            nonlocal result, found
            if anchor is not None:
                self.anchors[anchor] = (value, size)
            if not stack:
                result = value
                found = True
                self.smap.values[self.base] = pos
                return
            top = stack[-1]
            if sizes:
                sizes[-1] += size
            if top.kind == "seq":
                index = len(top.value)
                top.value.append(value)
                self.smap.values[(*top.path, index)] = pos
                return
            if top.pending_key is None:
                if isinstance(value, (dict, list)):
                    raise SourceError("mapping keys must be plain strings", pos)
                if not isinstance(value, str):
                    value = _key_text(value)
                if value in top.keys_seen:
                    raise SourceError(f"duplicate key {value!r}", pos)
                top.keys_seen.add(value)
                top.pending_key = value
                top.pending_key_pos = pos
                return
            key = top.pending_key
            top.value[key] = value
            child = (*top.path, key)
            self.smap.values[child] = pos
            assert top.pending_key_pos is not None
            self.smap.keys[child] = top.pending_key_pos
            top.pending_key = None

        def child_path() -> Path:
            if not stack:
                return self.base
            top = stack[-1]
            if top.kind == "seq":
                return (*top.path, len(top.value))
            if top.pending_key is None:
                return (*top.path, "<key>")
            return (*top.path, top.pending_key)

        for event in events:
            if isinstance(event, (ev.StreamStartEvent, ev.DocumentStartEvent)):
                if isinstance(event, ev.DocumentStartEvent) and found:
                    raise SourceError(
                        "more than one YAML document in the file", self.pos(event.start_mark)
                    )
                continue
            if isinstance(event, (ev.DocumentEndEvent, ev.StreamEndEvent)):
                continue
            pos = self.pos(event.start_mark)
            if isinstance(event, ev.AliasEvent):
                if event.anchor not in self.anchors:
                    raise SourceError(f"unknown alias *{event.anchor}", pos)
                value, size = self.anchors[event.anchor]
                self.count(size, pos)
                attach(value, pos, size, None)
                continue
            tag = getattr(event, "tag", None)
            if isinstance(event, ev.ScalarEvent):
                self.count(1, pos)
                if tag is not None and tag != "!" and tag not in _ALLOWED_TAGS:
                    raise SourceError(f"YAML tag {tag!r} is not allowed in runbooks", pos)
                if tag in _ALLOWED_TAGS:
                    value = _construct_tagged(tag, event.value, pos)
                elif event.implicit[0] and tag is None:
                    value = _resolve_plain(event.value)
                else:
                    value = event.value
                attach(value, pos, 1, event.anchor)
                continue
            if isinstance(event, (ev.SequenceStartEvent, ev.MappingStartEvent)):
                self.count(1, pos)
                is_map = isinstance(event, ev.MappingStartEvent)
                wanted = _CORE + ("map" if is_map else "seq")
                if tag not in (None, "!", wanted):
                    raise SourceError(f"YAML tag {tag!r} is not allowed in runbooks", pos)
                if len(stack) >= MAX_DEPTH:
                    raise SourceError(f"nested more than {MAX_DEPTH} levels deep", pos)
                path = child_path()
                container: Any = {} if is_map else []
                frame = _Frame("map" if is_map else "seq", container, path, event.anchor, pos)
                stack.append(frame)
                sizes.append(1)
                continue
            if isinstance(event, (ev.SequenceEndEvent, ev.MappingEndEvent)):
                frame = stack.pop()
                attach(frame.value, frame.start, sizes.pop(), frame.anchor)
                continue
        return result, found


def load_yaml(
    text: str,
    *,
    smap: SourceMap | None = None,
    line_offset: int = 0,
    col_offset: int = 0,
    base: Path = (),
) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain data and a SourceMap.

    Raises:
        SourceError: for syntax errors, disallowed tags, duplicate keys,
            alias bombs and excessive nesting, with the position.
    """
    smap = smap if smap is not None else SourceMap()
    builder = _Builder(line_offset, col_offset, base, smap)
    parser = _Parser(text)
    try:
        data, _found = builder.build(_events(parser))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = builder.pos(mark) if mark is not None else Pos(1 + line_offset, 1 + col_offset)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SourceError(f"YAML syntax error: {problem}", pos) from exc
    except yaml.YAMLError as exc:
        raise SourceError(f"YAML syntax error: {exc}", Pos(1 + line_offset, 1)) from exc
    finally:
        dispose = getattr(parser, "dispose", None)
        if dispose is not None:
            dispose()
    return data, smap


def _events(parser: Any) -> Iterator[Any]:
    while True:
        event = parser.get_event()
        if event is None:
            return
        yield event
        if isinstance(event, ev.StreamEndEvent):
            return
