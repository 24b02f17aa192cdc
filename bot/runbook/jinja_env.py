"""The Jinja2 sandbox that every runbook template runs in, with size limits.

Jinja's ``ImmutableSandboxedEnvironment`` already refuses private
attributes, unsafe callables and changes to data. On top of it this module
refuses operations that would build huge values from a short template,
before they are built: ``'x' * 10**9``, ``2 ** 10**9``, format widths
(``'%999999999d'``, ``'{:>999999999}'``), padding methods and filters
(``ljust``, ``center``, ``indent``), ``replace`` and ``join`` whose result
would pass :data:`MAX_STRING` characters, and slicing a list into millions
of parts, ``wordwrap`` and ``batch`` that would explode, ``sum`` over
anything but numbers, integers multiplied past :data:`MAX_INT_BITS`.
``~`` concatenation is checked like ``+``. ``range`` gives at most 100,000
items. One rendering may iterate at most :data:`MAX_ITERATIONS` times in all:
every ``for`` loop over anything (a string, a list, a mapping, the deeper
levels of a ``recursive`` loop) and every ``range`` call count against it.
Rendered text is counted while it is produced: no one output (the template's,
a macro's, a ``{% set %}`` block's) may pass :data:`MAX_STRING` characters,
and all the text one rendering builds (outputs and ``~``/``+``/``*`` results
together) may not pass :data:`MAX_BUILT`. ``lipsum`` is not offered at all.
:func:`rendering` opens these budgets.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import object_type_repr
from markupsafe import Markup

MAX_STRING = 1_000_000
MAX_WIDTH = 10_000
MAX_POWER_BITS = 4096
MAX_PARTS = 10_000
MAX_INT_BITS = 65_536
MAX_ITERATIONS = 1_000_000
MAX_RANGE = 100_000
MAX_BUILT = 20 * MAX_STRING
JINJA_GLOBALS = frozenset({"range", "dict", "cycler", "joiner", "namespace"})

_BRACE_FIELD = re.compile(r"\{[^{}]*\}")


@dataclass(slots=True)
class Budget:
    """What one rendering may still spend: iterations and characters built."""

    iterations: int = MAX_ITERATIONS
    characters: int = MAX_BUILT

    def iterate(self, count: int = 1) -> None:
        self.iterations -= count
        if self.iterations < 0:
            raise SecurityError(
                f"a template may iterate (loops and range() together) at most "
                f"{MAX_ITERATIONS:,} times in all"
            )

    def build(self, count: int) -> None:
        self.characters -= count
        if self.characters < 0:
            raise SecurityError(
                f"a template may build at most {MAX_BUILT:,} characters of text in all"
            )


_budget: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "template_budget", default=None
)


_escape: contextvars.ContextVar[Callable[[str], str] | None] = contextvars.ContextVar(
    "template_escape", default=None
)


@contextlib.contextmanager
def rendering(escape: Callable[[str], str] | None = None) -> Iterator[None]:
    """One rendering's budgets (see the module docstring).

    Args:
        escape: applied to the text of every ``{{ ... }}`` output (the data put
            into the template), never to the template's own text.
    """
    token = _budget.set(Budget())
    escape_token = _escape.set(escape)
    try:
        yield
    finally:
        _escape.reset(escape_token)
        _budget.reset(token)


@pass_context  # so that Jinja never applies it at compile time, to constants
def escape_output(_context: Any, value: Any) -> Any:
    """The environment's ``finalize``: the rendering's escape, if it has one.

    What is already markup (a ``Markup``: the result of a macro or of a
    ``{% set %}`` block in the markup environment, whose data was escaped
    where it was printed) is kept as it is, so nothing is escaped twice.
    """
    escape = _escape.get()
    if escape is None or hasattr(value, "__html__"):
        return value
    return Markup(escape(str(value)))  # noqa: S704 (escaped just now)


def bounded_range(*args: int) -> range:
    """``range`` with Jinja's size limit plus the rendering's shared iteration budget."""
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SecurityError(f"range() may give at most {MAX_RANGE:,} items")
    budget = _budget.get()
    if budget is not None:
        budget.iterations -= len(numbers)
        if budget.iterations < 0:
            raise SecurityError(
                f"a template may iterate over range() at most {MAX_ITERATIONS:,} times in all"
            )
    return numbers


def counted(iterable: Iterable[Any]) -> Iterable[Any]:
    """``iterable`` with each item taken charged to the rendering's iteration budget.

    A ``range`` from the template was charged in full when it was made.
    """
    budget = _budget.get()
    if budget is None or isinstance(iterable, range):
        return iterable
    return _charged(iterable, budget)


def _charged(iterable: Iterable[Any], budget: Budget) -> Iterator[Any]:
    for item in iterable:
        budget.iterate()
        yield item


def _built(value: Any) -> Any:
    """Charge a string (or list) just built to the rendering's character budget."""
    if isinstance(value, (str, list, tuple)):
        budget = _budget.get()
        if budget is not None:
            budget.build(len(value))
    return value


def bounded_concat(pieces: Iterable[Any]) -> str:
    """Join rendered pieces, failing as soon as the text passes :data:`MAX_STRING`."""
    budget = _budget.get()
    parts: list[str] = []
    size = 0
    for piece in pieces:
        text = str(piece)
        size += len(text)
        if size > MAX_STRING:
            raise SecurityError(f"the rendered text would be over {MAX_STRING:,} characters")
        if budget is not None:
            budget.build(len(text))
        parts.append(text)
    return "".join(parts)


def bounded_str_join(pieces: Iterable[Any], markup: bool = False) -> str:
    """``a ~ b ~ c``: like Jinja's ``str_join``, bounded like ``+``.

    With ``markup`` (an autoescaping template), joining markup with data gives
    markup, the data escaped with the rendering's escape (like ``markup_join``).
    """
    values = list(pieces)
    texts = [str(piece) for piece in values]
    if sum(len(text) for text in texts) > MAX_STRING:
        raise _too_large("~")
    if markup and any(hasattr(piece, "__html__") for piece in values):
        escape = _escape.get() or str
        texts = [
            text if hasattr(piece, "__html__") else escape(text)
            for piece, text in zip(values, texts, strict=True)
        ]
        return Markup(_built("".join(texts)))  # noqa: S704 (markup and escaped data)
    return str(_built("".join(texts)))


class BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with ``~`` and every ``for`` loop going through our checks."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_str_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        if frame.eval_ctx.volatile:  # inside {% autoescape %}: known when it runs
            self.write("), context.eval_ctx.autoescape)")
        else:
            self.write(f"), {bool(frame.eval_ctx.autoescape)!r})")

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        iterable = nodes.Call(
            nodes.EnvironmentAttribute("counted", lineno=node.lineno),
            [node.iter],
            [],
            None,
            None,
            lineno=node.lineno,
        )
        budgeted = nodes.For(
            node.target,
            iterable,
            node.body,
            node.else_,
            node.test,
            node.recursive,
            lineno=node.lineno,
        )
        super().visit_For(budgeted, frame)


def _joined_length(items: Any, glue: str) -> int:
    if not hasattr(items, "__len__"):
        return 0
    total = max(len(items) - 1, 0) * len(glue)
    for item in items:
        total += len(item) if isinstance(item, str) else len(str(item))
        if total > MAX_STRING:
            break
    return total


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}")
_NESTED_SPEC = re.compile(r":[^{}]*\{")
_PADDING_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})


def _too_large(what: str) -> SecurityError:
    return SecurityError(f"the result of {what} would be too large")


def _ints(values: Any) -> list[int]:
    if isinstance(values, Mapping):
        values = list(values.values())
    elif not isinstance(values, (list, tuple)):
        values = [values]
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def check_percent_format(fmt: str, args: Any) -> None:
    """Refuse ``%``-formatting with a width or precision beyond :data:`MAX_WIDTH`."""
    for match in _PERCENT_SPEC.finditer(fmt):
        for group in match.groups():
            if group == "*":
                if any(abs(n) > MAX_WIDTH for n in _ints(args)):
                    raise _too_large("% formatting")
            elif group and int(group) > MAX_WIDTH:
                raise _too_large("% formatting")


def check_brace_format(fmt: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Refuse ``str.format`` with a field width or precision beyond :data:`MAX_WIDTH`,
    or whose fields would repeat the arguments past :data:`MAX_STRING` characters."""
    fields = len(_BRACE_FIELD.findall(fmt))
    if fields:
        longest = max((len(str(v)) for v in [*args, *kwargs.values()]), default=0)
        if len(fmt) + fields * longest > MAX_STRING:
            raise _too_large("format()")
    for match in _BRACE_SPEC.finditer(fmt):
        if any(int(n) > MAX_WIDTH for n in re.findall(r"\d+", match.group(1))):
            raise _too_large("format()")
    if _NESTED_SPEC.search(fmt) and any(
        abs(n) > MAX_WIDTH for n in [*_ints(list(args)), *_ints(kwargs)]
    ):
        raise _too_large("format()")


def _estimate_replace(text: str, old: str, new: str, count: int | None = None) -> int:
    hits = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


def _checked_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a built-in filter with a check of its arguments."""

    # A filter marked @pass_eval_context (etc.) gets that before the value.
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)  # keeps jinja_pass_arg
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check_filter(name, list(args[skip:]), kwargs)
        return func(*args, **kwargs)

    return wrapper


def _check_filter(name: str, values: list[Any], kwargs: dict[str, Any]) -> None:
    if name in ("center", "indent"):
        width = kwargs.get("width", values[1] if len(values) > 1 else 0)
        size = len(width) if isinstance(width, str) else width
        if isinstance(size, int) and size > MAX_WIDTH:
            raise _too_large(f"the {name} filter")
        text = str(values[0]) if values else ""
        if isinstance(size, int) and (text.count("\n") + 1) * size > MAX_STRING:
            raise _too_large(f"the {name} filter")
    elif name == "replace" and len(values) >= 3:
        text, old, new = (str(v) for v in values[:3])
        count = values[3] if len(values) > 3 else kwargs.get("count")
        if _estimate_replace(text, old, new, count) > MAX_STRING:
            raise _too_large("the replace filter")
    elif name == "join" and values:
        glue = str(kwargs.get("d", values[1] if len(values) > 1 else ""))
        if _joined_length(values[0], glue) > MAX_STRING:
            raise _too_large("the join filter")
    elif name == "wordwrap" and values:
        text = str(values[0])
        width = kwargs.get("width", values[1] if len(values) > 1 else 79)
        wrap = kwargs.get("wrapstring", values[3] if len(values) > 3 else None)
        if isinstance(width, int) and width > 0:
            lines = len(text) // width + text.count("\n") + 1
            if len(text) + lines * len(str(wrap or "\n")) > MAX_STRING:
                raise _too_large("the wordwrap filter")
    elif name == "batch" and len(values) > 1:
        if isinstance(values[1], int) and values[1] > MAX_PARTS:
            raise _too_large("the batch filter")
    elif name == "sum":
        start = kwargs.get("start", values[2] if len(values) > 2 else 0)
        if not isinstance(start, (int, float)) or isinstance(start, bool):
            raise SecurityError("sum() adds numbers only")
    elif name == "format" and values:
        check_percent_format(str(values[0]), values[1:] or kwargs)
    elif name == "slice" and len(values) > 1:
        if isinstance(values[1], int) and values[1] > MAX_PARTS:
            raise _too_large("the slice filter")
    elif name == "tojson":
        indent = kwargs.get("indent", values[1] if len(values) > 1 else None)
        if isinstance(indent, int) and indent > 100:
            raise _too_large("the tojson filter")


class RunbookSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with limits on what can exhaust memory or CPU."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = BoundedCodeGenerator

    @staticmethod
    def counted(iterable: Iterable[Any]) -> Iterable[Any]:
        return counted(iterable)

    @staticmethod
    def bounded_str_join(pieces: Iterable[Any], markup: bool = False) -> str:
        return bounded_str_join(pieces, markup)

    def concat(self, pieces: Iterable[Any]) -> str:
        return bounded_concat(pieces)

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(left, int) and isinstance(right, int):
                if right > 0 and abs(left) > 1 and right * abs(left).bit_length() > MAX_POWER_BITS:
                    raise _too_large("**")
            return operator.pow(left, right)
        if operator_name == "*":
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and left.bit_length() + right.bit_length() > MAX_INT_BITS
            ):
                raise _too_large("*")
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, (str, list, tuple))
                    and isinstance(count, int)
                    and len(seq) * count > MAX_STRING
                ):
                    raise _too_large("*")
            return _built(operator.mul(left, right))
        if operator_name == "%":
            if isinstance(left, str):
                check_percent_format(left, right)
            return operator.mod(left, right)
        for seq, other in ((left, right), (right, left)):
            if (
                isinstance(seq, (str, list, tuple))
                and isinstance(other, (str, list, tuple))
                and len(seq) + len(other) > MAX_STRING
            ):
                raise _too_large("+")
        result = operator.add(left, right)
        if isinstance(result, (str, list, tuple)) and len(result) > MAX_STRING:
            raise _too_large("+")
        return _built(result)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = str(value.__self__)
        is_map = value.__name__ == "format_map"

        def checked(*args: Any, **kwargs: Any) -> str:
            if is_map and args and isinstance(args[0], Mapping):
                check_brace_format(fmt, (), args[0])
            else:
                check_brace_format(fmt, args, kwargs)
            return wrapped(*args, **kwargs)

        return checked

    def getitem(self, obj: Any, argument: Any) -> Any:
        """``x['key']`` on a mapping is its key or undefined, never a method of the dict.

        Jinja falls back to attributes, so ``alert['items']`` on an alert without
        ``items`` would be ``dict.items`` (a bound method, shown with its address).
        """
        # private names still go to Jinja, which refuses them as unsafe
        if isinstance(obj, Mapping) and isinstance(argument, str) and argument[:1] != "_":
            try:
                return obj[argument]
            except KeyError:
                return self.undefined(
                    f"'{object_type_repr(obj)}' has no key {argument!r}", obj=obj, name=argument
                )
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(__obj, LoopContext) and args:
            # loop(children) in a recursive loop: the deeper levels count too
            args = (counted(args[0]), *args[1:])
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name in _PADDING_METHODS and any(n > MAX_WIDTH for n in _ints(list(args))):
                raise _too_large(f"str.{name}")
            if name == "expandtabs":
                size = args[0] if args and isinstance(args[0], int) else kwargs.get("tabsize", 8)
                if isinstance(size, int) and len(owner) + owner.count("\t") * size > MAX_STRING:
                    raise _too_large("str.expandtabs")
            if name == "replace" and len(args) >= 2:
                count = args[2] if len(args) > 2 and isinstance(args[2], int) else None
                if _estimate_replace(owner, str(args[0]), str(args[1]), count) > MAX_STRING:
                    raise _too_large("str.replace")
            if name == "join" and args and _joined_length(args[0], owner) > MAX_STRING:
                raise _too_large("str.join")
        return super().call(__context, __obj, *args, **kwargs)


@functools.cache
def environment() -> RunbookSandbox:
    """The sandboxed environment every template runs in; undefined names are errors."""
    return _sandbox(autoescape=False)


@functools.cache
def markup_environment() -> RunbookSandbox:
    """The same sandbox for rendering chat markup (see :func:`rendering`'s ``escape``).

    It autoescapes, so Jinja gives the results of macros and ``{% set %}``
    blocks as ``Markup`` (their data was escaped where it was printed, their
    own text is the author's); ``finalize`` escapes every other output with
    the rendering's escape, once.
    """
    return _sandbox(autoescape=True)


def _sandbox(*, autoescape: bool) -> RunbookSandbox:
    env = RunbookSandbox(
        undefined=StrictUndefined,
        autoescape=autoescape,
        keep_trailing_newline=True,
        finalize=escape_output,
    )
    env.globals = {k: v for k, v in env.globals.items() if k in JINJA_GLOBALS}
    env.globals["range"] = bounded_range
    checked = (
        "center",
        "indent",
        "replace",
        "join",
        "format",
        "slice",
        "tojson",
        "wordwrap",
        "batch",
        "sum",
    )
    for name in checked:
        if name in env.filters:
            env.filters[name] = _checked_filter(name, env.filters[name])
    return env
