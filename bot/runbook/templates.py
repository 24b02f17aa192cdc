"""Templates and expressions: Jinja2 in its sandbox, analysed at load, rendered lazily.

Strings in ``with``, ``prompt``, ``text``, trigger ``inputs`` and ``dedup_key``
are templates; ``if``, ``until``, ``for_each`` and a trigger's ``if`` are bare
expressions. A template that is exactly one ``{{ expr }}`` keeps the
expression's native type. Data in the context is never rendered as a
template: only runbook text is ever compiled.

Analysis (done once per distinct text, cached) yields the references a
template makes (``inputs.host``, ``steps.find.output``) so the loader can
check them; plain ``{{ a.b.c }}`` templates take a fast path that skips
Jinja's parser, which costs ~200 µs a template.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_STRING = 1_000_000
MAX_POWER_BITS = 4096
JINJA_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace"})
RUN_FUNCTIONS = frozenset({"failure", "success"})

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = re.compile(rf"\s*-?\s*({_IDENT}(?:\.{_IDENT}|\[\d+\])*)\s*-?\s*")
_SEGMENT = re.compile(rf"\.({_IDENT})|\[(\d+)\]")
_SINGLE = re.compile(r"\A\{\{(?P<expr>.*)\}\}\Z", re.DOTALL)


class TemplateError(Exception):
    """A template or expression that cannot be parsed or evaluated.

    Attributes:
        line: 1-based line inside the template text, when known.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line
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
    private: tuple[str, ...] = ()  # attribute names starting with "_"
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


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with limits on operators that can exhaust memory or CPU."""

    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(left, int) and isinstance(right, int):
                if (
                    right > 0
                    and abs(left) > 1
                    and right * max(abs(left).bit_length(), 1) > (MAX_POWER_BITS)
                ):
                    raise SecurityError("the result of ** would be too large")
            return operator.pow(left, right)
        if operator_name == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, (str, list, tuple))
                    and isinstance(count, int)
                    and len(seq) * count > MAX_STRING
                ):
                    raise SecurityError("the result of * would be too large")
            return operator.mul(left, right)
        result = operator.add(left, right)
        if isinstance(result, (str, list, tuple)) and len(result) > MAX_STRING:
            raise SecurityError("the result of + would be too large")
        return result


@functools.cache
def environment() -> _Sandbox:
    """The one sandboxed environment; undefined names are errors."""
    env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.globals = {k: v for k, v in env.globals.items() if k in JINJA_GLOBALS}
    return env


def _fast_analysis(text: str) -> Analysis | None:
    """Analyse ``lit {{ a.b }} lit`` templates without Jinja's parser; None when not simple."""
    if "{%" in text or "{#" in text:
        return None
    refs: list[Ref] = []
    pos = 0
    pieces = 0
    literal_seen = False
    while True:
        start = text.find("{{", pos)
        if start < 0:
            literal_seen = literal_seen or pos < len(text)
            break
        if start > pos:
            literal_seen = True
        end = text.find("}}", start + 2)
        if end < 0:
            return None
        match = _DOTTED.fullmatch(text, start + 2, end)
        if match is None:
            return None
        dotted = match.group(1)
        root = re.match(_IDENT, dotted).group(0)  # type: ignore[union-attr]
        segments = tuple(name or index for name, index in _SEGMENT.findall(dotted, len(root)))
        if root in {"true", "false", "none", "True", "False", "None"}:
            return None
        refs.append(Ref(root, segments))
        pieces += 1
        pos = end + 2
    private = tuple(seg for ref in refs for seg in (ref.root, *ref.path) if seg.startswith("_"))
    return Analysis(
        refs=tuple(refs),
        private=private,
        native=pieces == 1 and not literal_seen,
        literal=pieces == 0,
    )


class _RefCollector:
    def __init__(self) -> None:
        self.refs: list[Ref] = []
        self.calls: set[str] = set()
        self.private: list[str] = []
        self.locals: set[str] = set()

    def visit(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Name):
            if node.ctx in ("store", "param"):
                self.locals.add(node.name)
            elif node.name not in self.locals:
                self.refs.append(Ref(node.name, ()))
            return
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            chain: list[str] = []
            cur: nodes.Node = node
            while isinstance(cur, (nodes.Getattr, nodes.Getitem)):
                if isinstance(cur, nodes.Getattr):
                    chain.append(cur.attr)
                    if cur.attr.startswith("_"):
                        self.private.append(cur.attr)
                elif isinstance(cur.arg, nodes.Const) and isinstance(cur.arg.value, (str, int)):
                    key = str(cur.arg.value)
                    chain.append(key)
                    if key.startswith("_"):
                        self.private.append(key)
                else:
                    chain.clear()
                    self.visit(cur.arg)
                cur = cur.node
            if isinstance(cur, nodes.Name) and cur.ctx == "load" and cur.name not in self.locals:
                self.refs.append(Ref(cur.name, tuple(reversed(chain))))
            else:
                self.visit(cur)
            return
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name):
            self.calls.add(node.node.name)
        if isinstance(node, nodes.For):
            # loop targets are locals for the body
            self.visit(node.iter)
            self.visit(node.target)
            for child in (*node.body, *node.else_):
                self.visit(child)
            if node.test is not None:
                self.visit(node.test)
            return
        for child in node.iter_child_nodes():
            self.visit(child)


def _syntax_error(exc: TemplateSyntaxError) -> TemplateError:
    return TemplateError(f"template syntax error: {exc.message}", exc.lineno)


@functools.lru_cache(maxsize=65536)
def analyse_template(text: str) -> Analysis:
    """Parse a template once and report what it refers to.

    Raises:
        TemplateError: when the template does not parse.
    """
    if not is_template(text):
        return Analysis(literal=True)
    fast = _fast_analysis(text)
    if fast is not None:
        return fast
    env = environment()
    try:
        tree = env.parse(text)
    except TemplateSyntaxError as exc:
        raise _syntax_error(exc) from exc
    collector = _RefCollector()
    collector.visit(tree)
    native = (
        len(tree.body) == 1
        and isinstance(tree.body[0], nodes.Output)
        and len(tree.body[0].nodes) == 1
        and not isinstance(tree.body[0].nodes[0], nodes.TemplateData)
        and _SINGLE.match(text) is not None
    )
    return Analysis(
        refs=tuple(collector.refs),
        calls=frozenset(collector.calls),
        private=tuple(collector.private),
        native=native,
    )


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
        raise TemplateError(
            "expressions are bare: write 'inputs.dry' rather than '{{ inputs.dry }}'"
        )
    fast = _fast_analysis("{{ " + stripped + " }}")
    if fast is not None:
        return Analysis(refs=fast.refs, private=fast.private, native=True)
    env = environment()
    try:
        parser = Parser(env, stripped, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            raise TemplateSyntaxError(f"unexpected {token.value!r}", token.lineno)
    except TemplateSyntaxError as exc:
        raise _syntax_error(exc) from exc
    collector = _RefCollector()
    collector.visit(expr)
    return Analysis(
        refs=tuple(collector.refs),
        calls=frozenset(collector.calls),
        private=tuple(collector.private),
        native=True,
    )


# -- rendering -----------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def _compiled_expression(text: str) -> Callable[..., Any]:
    try:
        return environment().compile_expression(text, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise _syntax_error(exc) from exc


@functools.lru_cache(maxsize=8192)
def _compiled_template(text: str) -> Any:
    try:
        return environment().from_string(text)
    except TemplateSyntaxError as exc:
        raise _syntax_error(exc) from exc


def _check_defined(value: Any, text: str) -> Any:
    if isinstance(value, Undefined):
        try:
            str(value)
        except UndefinedError as exc:
            raise TemplateError(f"{exc.message} (in {text!r})") from exc
        raise TemplateError(f"undefined value (in {text!r})")
    return value


def evaluate(text: str, context: Mapping[str, Any]) -> Any:
    """Evaluate a bare expression to its native value.

    Raises:
        TemplateError: naming what was undefined or forbidden.
    """
    try:
        return _check_defined(_compiled_expression(text.strip())(**context), text)
    except TemplateError:
        raise
    except (UndefinedError, SecurityError) as exc:
        raise TemplateError(f"{exc} (in {text!r})") from exc
    except Exception as exc:
        raise TemplateError(f"cannot evaluate {text!r}: {exc}") from exc


def render_string(text: str, context: Mapping[str, Any]) -> Any:
    """Render one template string; exactly one ``{{ expr }}`` keeps its native type."""
    info = analyse_template(text)
    if info.literal:
        return text
    if info.native:
        match = _SINGLE.match(text)
        assert match is not None
        return evaluate(match.group("expr"), context)
    try:
        return _compiled_template(text).render(**context)
    except (UndefinedError, SecurityError) as exc:
        raise TemplateError(f"{exc} (in {text!r})") from exc
    except TemplateError:
        raise
    except Exception as exc:
        raise TemplateError(f"cannot render {text!r}: {exc}") from exc


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
