"""Templates and expressions: Jinja2 in its sandbox, analysed at load, rendered lazily.

Strings in ``with``, ``prompt``, ``text``, trigger ``inputs`` and ``dedup_key``
are templates; ``if``, ``until``, ``for_each`` and a trigger's ``if`` are bare
expressions. A template that is exactly one ``{{ expr }}`` keeps the
expression's native type. Data in the context is never rendered as a
template: only runbook text is ever compiled.

Analysis (done once per distinct text, cached) yields the references a
template makes (``inputs.host``, ``steps.find.output``) so the loader can
check them. Jinja's parser costs ~200 µs a template, so analysis avoids it
where it safely can: ``{{ a.b.c | filter('x') }}`` expressions are matched by
a regular expression, a template is analysed one ``{{ }}`` expression at a
time (expressions repeat across runbooks far more than whole templates do),
and a template with ``{% %}`` tags is parsed with its literal text blanked
out, so templates that differ only in wording share one parse. Whenever a
shortcut does not apply, Jinja parses the real text and has the last word.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from jinja2 import TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.parser import Parser

from bot.runbook.jinja_env import (
    JINJA_GLOBALS,
    MAX_STRING,
    environment,
    markup_environment,
    rendering,
)

__all__ = [
    "JINJA_GLOBALS",
    "MAX_STRING",
    "RUN_FUNCTIONS",
    "Analysis",
    "Ref",
    "TemplateError",
    "analyse_expression",
    "analyse_template",
    "environment",
    "evaluate",
    "is_template",
    "render_string",
    "render_value",
]

RUN_FUNCTIONS = frozenset({"failure", "success"})

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_IDENT_RE = re.compile(_IDENT)
_LITERAL = r"""(?:'[^'\\]*'|"[^"\\]*"|-?\d+(?:\.\d+)?|true|false|none|True|False|None)"""
_FILTER = rf"\|\s*({_IDENT})\s*(?:\(\s*(?:{_LITERAL}(?:\s*,\s*{_LITERAL})*)?\s*\))?"
_FILTER_RE = re.compile(_FILTER)
_FAST_EXPR = re.compile(
    rf"(?P<ref>{_IDENT}(?:\.{_IDENT}|\[\d+\])*)\s*(?P<filters>(?:{_FILTER}\s*)*)"
)
_CONSTANT_NAMES = frozenset({"true", "false", "none", "True", "False", "None", "not"})
_OPEN_RE = re.compile(r"\{[{%#]")
_CLOSERS = {"{{": "}}", "{%": "%}", "{#": "#}"}
_SEGMENT = re.compile(rf"\.({_IDENT})|\[(\d+)\]")
_SINGLE = re.compile(r"\A\{\{(?P<expr>.*)\}\}\Z", re.DOTALL)


class TemplateError(Exception):
    """A template or expression that cannot be parsed or evaluated.

    Attributes:
        line: 1-based line inside the template text, when known.
        undefined: the data has no such value (a missing key), rather than a bad one.
    """

    def __init__(self, message: str, line: int | None = None, *, undefined: bool = False) -> None:
        self.message = message
        self.line = line
        self.undefined = undefined
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference from a context name: ``steps.find.output`` is ('steps', ('find', 'output'))."""

    root: str
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Analysis:
    """What a template or expression refers to."""

    refs: tuple[Ref, ...] = ()
    calls: frozenset[str] = frozenset()
    filters: frozenset[str] = frozenset()
    tests: frozenset[str] = frozenset()
    private: tuple[str, ...] = ()  # attribute names starting with "_"
    misused: tuple[str, ...] = ()  # failure/success not called, or called with arguments
    native: bool = False  # exactly one {{ expr }}: renders to the native value
    literal: bool = False  # no template syntax at all

    @property
    def roots(self) -> frozenset[str]:
        return frozenset(ref.root for ref in self.refs)

    @property
    def refers_to_failure(self) -> bool:
        """Mentions ``failure()`` or some ``steps.<id>.outcome``."""
        if "failure" in self.calls:
            return True
        return any(
            ref.root == "steps" and len(ref.path) >= 2 and ref.path[1] == "outcome"
            for ref in self.refs
        )


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def _fast_expression(expr: str) -> Analysis | None:
    """Analyse ``a.b[0].c | filter('x') | other`` without Jinja's parser; None otherwise."""
    match = _FAST_EXPR.fullmatch(expr)
    if match is None:
        return None
    dotted = match.group("ref")
    root = _IDENT_RE.match(dotted).group(0)  # type: ignore[union-attr]
    if root in _CONSTANT_NAMES or root in RUN_FUNCTIONS:
        return None
    segments = tuple(name or index for name, index in _SEGMENT.findall(dotted, len(root)))
    filters = frozenset(f.group(1) for f in _FILTER_RE.finditer(match.group("filters")))
    # a root name is checked as a name (unknown), as the full parse does
    private = tuple(seg for seg in segments if seg.startswith("_"))
    if "attr" in filters:
        return None  # let the parser see what attribute it reaches
    return Analysis(refs=(Ref(root, segments),), filters=filters, private=private, native=True)


class _RefCollector:
    def __init__(self) -> None:
        self.refs: list[Ref] = []
        self.calls: set[str] = set()
        self.filters: set[str] = set()
        self.tests: set[str] = set()
        self.private: list[str] = []
        self.misused: list[str] = []
        self.locals: set[str] = set()

    def visit(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Name):
            if node.ctx in ("store", "param"):
                self.locals.add(node.name)
            elif node.name not in self.locals:
                if node.name in RUN_FUNCTIONS:
                    self.misused.append(f"{node.name} is a function: write {node.name}()")
                self.refs.append(Ref(node.name, ()))
            return
        if (
            isinstance(node, nodes.Call)
            and isinstance(node.node, nodes.Name)
            and node.node.name in RUN_FUNCTIONS
            and node.node.name not in self.locals
        ):
            self.calls.add(node.node.name)
            self.refs.append(Ref(node.node.name, ()))
            if node.args or node.kwargs or node.dyn_args or node.dyn_kwargs:
                self.misused.append(f"{node.node.name}() takes no arguments")
            for argument in (*node.args, *node.kwargs, node.dyn_args, node.dyn_kwargs):
                if argument is not None:
                    self.visit(argument)
            return
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            chain: list[str] = []
            private: list[str] = []
            cur: nodes.Node = node
            while isinstance(cur, (nodes.Getattr, nodes.Getitem)):
                if isinstance(cur, nodes.Getattr):
                    chain.append(cur.attr)
                    if cur.attr.startswith("_"):
                        private.append(cur.attr)
                elif isinstance(cur.arg, nodes.Const) and isinstance(cur.arg.value, (str, int)):
                    key = str(cur.arg.value)
                    chain.append(key)
                    if key.startswith("_"):
                        private.append(key)
                else:
                    chain.clear()
                    self.visit(cur.arg)
                cur = cur.node
            self.private.extend(reversed(private))  # in the order they are written
            if isinstance(cur, nodes.Name) and cur.ctx == "load" and cur.name not in self.locals:
                self.refs.append(Ref(cur.name, tuple(reversed(chain))))
            else:
                self.visit(cur)
            return
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name):
            self.calls.add(node.node.name)
        if isinstance(node, nodes.Filter):
            self.filters.add(node.name)
            if node.name == "attr":
                for arg in node.args:
                    if isinstance(arg, nodes.Const) and str(arg.value).startswith("_"):
                        self.private.append(str(arg.value))
        elif isinstance(node, nodes.Test):
            self.tests.add(node.name)
        if isinstance(node, nodes.For):
            # loop targets (and Jinja's ``loop``) are locals for the body
            self.visit(node.iter)
            self.visit(node.target)
            self.locals.add("loop")
            for child in (*node.body, *node.else_):
                self.visit(child)
            if node.test is not None:
                self.visit(node.test)
            return
        for child in node.iter_child_nodes():
            self.visit(child)

    def analysis(self, *, native: bool) -> Analysis:
        return Analysis(
            refs=tuple(self.refs),
            calls=frozenset(self.calls),
            filters=frozenset(self.filters),
            tests=frozenset(self.tests),
            private=tuple(self.private),
            misused=tuple(self.misused),
            native=native,
        )


def _syntax_error(exc: TemplateSyntaxError) -> TemplateError:
    return TemplateError(f"template syntax error: {exc.message}", exc.lineno)


def _too_deep() -> TemplateError:
    # Jinja's parser and compiler recurse: ~100 nested brackets exhaust Python's stack.
    return TemplateError("template nested too deeply (brackets, blocks or operators)")


def _split_tags(text: str) -> list[tuple[str, str]] | None:
    """Split a template into ``("data", text)`` and ``("{{"|"{%"|"{#", tag)`` pieces.

    A naive split (it does not know string literals), used only to choose a
    cache key or a shortcut: whenever the pieces do not parse, the whole
    text is parsed by Jinja, which has the last word. None when a tag is
    never closed.
    """
    pieces: list[tuple[str, str]] = []
    pos = 0
    while True:
        match = _OPEN_RE.search(text, pos)
        if match is None:
            if pos < len(text):
                pieces.append(("data", text[pos:]))
            return pieces
        start = match.start()
        if start > pos:
            pieces.append(("data", text[pos:start]))
        opener = match.group(0)
        end = text.find(_CLOSERS[opener], start + 2)
        if end < 0:
            return None
        pieces.append((opener, text[start : end + 2]))
        pos = end + 2


@functools.lru_cache(maxsize=65536)
def _expression_analysis(expr: str) -> Analysis:
    """Analyse the text of one ``{{ ... }}`` or a bare expression; cached by text.

    Raises:
        TemplateError: when it does not parse.
    """
    fast = _fast_expression(expr)
    if fast is not None:
        return fast
    try:
        parser = Parser(environment(), expr, state="variable")  # lexes: may raise too
        tree = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            raise TemplateSyntaxError(f"unexpected {token.value!r}", token.lineno)
        collector = _RefCollector()
        collector.visit(tree)
    except TemplateSyntaxError as exc:
        raise _syntax_error(exc) from exc
    except RecursionError:
        raise _too_deep() from None
    return collector.analysis(native=True)


@functools.lru_cache(maxsize=16384)
def _parsed_analysis(text: str) -> Analysis:
    """Analyse a whole template with Jinja's parser; cached by text.

    Raises:
        TemplateError: when the template does not parse.
    """
    try:
        tree = environment().parse(text)
        collector = _RefCollector()
        collector.visit(tree)
    except TemplateSyntaxError as exc:
        raise _syntax_error(exc) from exc
    except RecursionError:
        raise _too_deep() from None
    native = (
        len(tree.body) == 1
        and isinstance(tree.body[0], nodes.Output)
        and len(tree.body[0].nodes) == 1
        and not isinstance(tree.body[0].nodes[0], nodes.TemplateData)
        and _SINGLE.match(text) is not None
    )
    return collector.analysis(native=native)


def _combine(parts: list[Analysis], *, native: bool) -> Analysis:
    return Analysis(
        refs=tuple(ref for part in parts for ref in part.refs),
        calls=frozenset().union(*(part.calls for part in parts)),
        filters=frozenset().union(*(part.filters for part in parts)),
        tests=frozenset().union(*(part.tests for part in parts)),
        private=tuple(name for part in parts for name in part.private),
        misused=tuple(message for part in parts for message in part.misused),
        native=native,
    )


def _shortcut_analysis(text: str) -> Analysis | None:
    """Analysis without parsing ``text`` itself, from pieces cached across runbooks.

    ``lit {{ a }} lit {{ b | f }}`` is analysed one expression at a time;
    a template with ``{% %}`` tags is parsed with its literal text replaced
    by a placeholder, so templates that differ only in their wording share
    one parse. Returns None to ask for a full parse.
    """
    pieces = _split_tags(text)
    if pieces is None:
        return None
    if all(kind in ("data", "{{") for kind, _ in pieces):
        parts: list[Analysis] = []
        for kind, piece in pieces:
            if kind == "data":
                continue
            inner = piece[2:-2]
            if inner.startswith("-"):
                inner = inner[1:]
            if inner.endswith("-"):
                inner = inner[:-1]
            if inner.startswith("+") or not inner.strip():
                return None
            try:
                parts.append(_expression_analysis(inner.strip()))
            except TemplateError:
                return None
        native = len(pieces) == 1 and pieces[0][0] == "{{"
        return _combine(parts, native=native)
    skeleton = "".join("x" if kind == "data" else piece for kind, piece in pieces if kind != "{#")
    try:
        info = _parsed_analysis(skeleton)
    except TemplateError:
        return None
    return Analysis(
        refs=info.refs,
        calls=info.calls,
        filters=info.filters,
        tests=info.tests,
        private=info.private,
        native=False,
    )


@functools.lru_cache(maxsize=65536)
def analyse_template(text: str) -> Analysis:
    """Parse a template once and report what it refers to.

    Raises:
        TemplateError: when the template does not parse.
    """
    if not is_template(text):
        return Analysis(literal=True)
    shortcut = _shortcut_analysis(text)
    if shortcut is not None:
        return shortcut
    return _parsed_analysis(text)


@functools.lru_cache(maxsize=65536)
def analyse_expression(text: str) -> Analysis:
    """Parse a bare expression (``if``, ``until``, ``for_each``) once.

    Raises:
        TemplateError: when the expression does not parse.
    """
    stripped = text.strip()
    if not stripped:
        raise TemplateError("empty expression")
    if "{{" in stripped or "{%" in stripped:
        single = _SINGLE.match(stripped)
        bare = single.group("expr").strip() if single else "inputs.dry"
        if len(bare) > 60:
            bare = bare[:57] + "..."
        raise TemplateError(f"expressions are bare: write {bare!r} rather than '{{{{ {bare} }}}}'")
    return _expression_analysis(stripped)


# -- rendering -----------------------------------------------------------------


_Built = TypeVar("_Built")


def _compile(build: Callable[[], _Built]) -> _Built:
    """``build()``, with Jinja's syntax errors and runaway nesting as our TemplateError."""
    try:
        return build()
    except TemplateSyntaxError as exc:
        raise _syntax_error(exc) from exc
    except RecursionError:
        raise _too_deep() from None


@functools.lru_cache(maxsize=8192)
def _compiled_expression(text: str) -> Callable[..., Any]:
    return _compile(lambda: environment().compile_expression(text, undefined_to_none=False))


@functools.lru_cache(maxsize=8192)
def _compiled_template(text: str) -> Any:
    return _compile(lambda: environment().from_string(text))


@functools.lru_cache(maxsize=1024)
def _compiled_markup_template(text: str) -> Any:
    return _compile(lambda: markup_environment().from_string(text))


def _check_defined(value: Any, text: str) -> Any:
    if isinstance(value, Undefined):
        try:
            str(value)
        except UndefinedError as exc:
            raise TemplateError(f"{exc.message} (in {text!r})", undefined=True) from exc
        raise TemplateError(f"undefined value (in {text!r})", undefined=True)
    return value


_PATH = re.compile(rf"\s*({_IDENT})((?:\.{_IDENT}|\[\d+\])*)\s*")
_MISS = object()


@functools.lru_cache(maxsize=65536)
def _plain_path(text: str) -> tuple[str, tuple[str | int, ...]] | None:
    """``a.b[0].c`` as (root, segments), or None for anything else."""
    match = _PATH.fullmatch(text)
    if match is None:
        return None
    segments = tuple(
        name if name else int(index) for name, index in _SEGMENT.findall(match.group(2))
    )
    return match.group(1), segments


def _lookup(path: tuple[str, tuple[str | int, ...]], context: Mapping[str, Any]) -> Any:
    """Resolve a plain path the way Jinja's sandbox would, or _MISS to let Jinja do it.

    Only plain lookups are taken: a key of a mapping that the mapping's type has no
    attribute of that name for (so Jinja's getattr would fall through to the key),
    or an index into a list within range. Anything else — a missing key, a private
    name, an attribute, an undefined value — goes to Jinja, so errors stay the same.
    """
    root, segments = path
    if root.startswith("_") or root not in context:
        return _MISS
    value = context[root]
    for segment in segments:
        if isinstance(segment, int):
            if not isinstance(value, (list, tuple)) or not -len(value) <= segment < len(value):
                return _MISS
            value = value[segment]
        elif (
            segment.startswith("_")
            or not isinstance(value, Mapping)
            or hasattr(type(value), segment)
            or segment not in value
        ):
            return _MISS
        else:
            value = value[segment]
    if callable(value) or isinstance(value, Undefined):
        return _MISS
    return value


def evaluate(text: str, context: Mapping[str, Any]) -> Any:
    """Evaluate a bare expression to its native value.

    Raises:
        TemplateError: naming what was undefined or forbidden.
    """
    path = _plain_path(text)
    if path is not None:  # most expressions are plain paths: no Jinja context needed
        value = _lookup(path, context)
        if value is not _MISS:
            return value
    try:
        with rendering():
            return _check_defined(_compiled_expression(text.strip())(**context), text)
    except TemplateError:
        raise
    except UndefinedError as exc:
        raise TemplateError(f"{exc} (in {text!r})", undefined=True) from exc
    except SecurityError as exc:
        raise TemplateError(f"{exc} (in {text!r})") from exc
    except Exception as exc:
        raise TemplateError(f"cannot evaluate {text!r}: {exc}") from exc


def escape_markup(text: str) -> str:
    """Escape ``&``, ``<`` and ``>``: what chat markup (Slack mrkdwn) gives meaning to."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_string(
    text: str, context: Mapping[str, Any], *, escape: Callable[[str], str] | None = None
) -> Any:
    """Render one template string; exactly one ``{{ expr }}`` keeps its native type.

    Args:
        text: the template.
        context: the names it may use.
        escape: when given, the result is text and each ``{{ ... }}`` output
            (the data) passes through ``escape`` exactly once; the template's own
            text does not, nor does what a macro or a ``{% set %}`` block made
            (its data was escaped where it was printed inside it).
    """
    info = analyse_template(text)
    if info.literal:
        return text
    if info.native:
        match = _SINGLE.match(text)
        assert match is not None
        value = evaluate(match.group("expr"), context)
        return value if escape is None else escape(str(value))
    try:
        template = _compiled_template(text) if escape is None else _compiled_markup_template(text)
        with rendering(escape):
            result = template.render(**context)
    except (UndefinedError, SecurityError) as exc:
        raise TemplateError(f"{exc} (in {text!r})") from exc
    except TemplateError:
        raise
    except Exception as exc:
        raise TemplateError(f"cannot render {text!r}: {exc}") from exc
    if len(result) > MAX_STRING:
        raise TemplateError(f"the rendered text would be over {MAX_STRING:,} characters")
    return result


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template string inside ``value`` (dicts and lists walked)."""
    if isinstance(value, str):
        return render_string(value, context)
    if isinstance(value, dict):
        return {key: render_value(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render_value(item, context) for item in value]
    return value


@dataclass(slots=True)
class TemplateSite:
    """A template or expression found in a runbook, for the checker."""

    text: str
    path: tuple[str | int, ...]
    expression: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
