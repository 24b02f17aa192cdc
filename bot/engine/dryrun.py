"""Dry runs: what a mutating call would have returned is unknown, so it renders as a placeholder.

A dry run (``runbook run --dry-run``) calls read-only actions for real and
prints mutating ones. The output of a call it did not make is a
:class:`Placeholder`; everything downstream of one must still render:

- arguments holding a placeholder are checked against the action's input
  model except in the fields the placeholder reaches (a ``<steps.x.output…>``
  is no integer, and matches no pattern), and such a call is printed, not
  made, even when the action is read-only (its real arguments are unknown);
- an ``if`` that reads a placeholder counts as true (the step runs);
- a ``for_each`` over a placeholder has one placeholder item;
- ``until`` is read once: a placeholder counts as true, and a real answer
  that is not yet what the step waits for is printed instead of polled
  (the calls that would change it were not made).

:func:`dry_run_engine` builds an engine with these rules.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bot.engine.plan import Action, RunbookPlan, StepDecision
from bot.engine.state import RunState
from bot.engine.steps import CallOnce, CallPlan, CallRunner, StepFailure
from bot.errors import ConnectorError
from bot.runbook.durations import format_duration
from bot.runbook.model import CallStep, NotifyStep
from bot.runbook.templates import TemplateError, analyse_expression, evaluate

if TYPE_CHECKING:
    from bot.engine.catalog import RunbookCatalog
    from bot.engine.engine import Engine


class Placeholder:
    """Stands in for the output of a call a dry run did not make.

    Renders as ``<steps.id.output…>``; attribute and item access give deeper
    placeholders, so later templates still render. Iterating gives one
    placeholder item (``<steps.id.output[0]…>``).
    """

    def __init__(self, path: str) -> None:
        self._path = path

    def __getattr__(self, name: str) -> Placeholder:
        if name.startswith("_"):
            raise AttributeError(name)
        return Placeholder(f"{self._path}.{name}")

    def __getitem__(self, key: Any) -> Placeholder:
        return Placeholder(f"{self._path}[{key!r}]")

    def __str__(self) -> str:
        return f"<{self._path}…>"

    __repr__ = __str__

    def __iter__(self) -> Iterator[Any]:
        return iter((Placeholder(f"{self._path}[0]"),))

    def __len__(self) -> int:
        return 1

    def __bool__(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Placeholder) and other._path == self._path

    def __hash__(self) -> int:
        return hash(self._path)


_PLACEHOLDER_TEXT = re.compile(r"<steps\.[^<>]*…>")


def has_placeholder(value: Any) -> bool:
    """Whether a placeholder (or its rendered text) is anywhere inside ``value``."""
    if isinstance(value, Placeholder):
        return True
    if isinstance(value, str):
        return "…>" in value and _PLACEHOLDER_TEXT.search(value) is not None
    if isinstance(value, Mapping):
        return any(has_placeholder(k) or has_placeholder(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(has_placeholder(item) for item in value)
    return False


def check_args(spec: Any, args: Mapping[str, Any]) -> Any:
    """Validate ``args`` against the action's input model, except where a placeholder is.

    Returns:
        The validated model, or — when only fields holding a placeholder are
        invalid — a model built without validation (for describing the call).

    Raises:
        ConnectorError: a field without a placeholder is invalid (the message of
            a real call's bad arguments).
    """
    model_type = spec.input_model
    try:
        return model_type.model_validate(dict(args))
    except ValidationError as exc:
        unknown = {key for key, value in args.items() if has_placeholder(value)}
        problems = []
        for err in exc.errors():
            loc = err["loc"]
            if (loc and loc[0] in unknown) or (not loc and unknown):
                continue
            where = ".".join(str(p) for p in loc) or "arguments"
            problems.append(f"{where}: {err['msg']}")
        if problems or not unknown:
            raise ConnectorError(
                f"bad arguments for {spec.ref}: " + "; ".join(problems), connector=spec.connector
            ) from None
    try:
        return model_type.model_construct(**dict(args))
    except Exception:
        return None


class DryRunActions:
    """The connector pool, describing calls whose arguments hold placeholders too."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def lookup(self, ref: str) -> Any:
        return self.pool.lookup(ref)

    def is_sandboxed(self, connector: str) -> bool:
        return bool(self.pool.is_sandboxed(connector))

    async def call(self, spec: Any, args: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.pool.call(spec, args, ctx)
        return result

    def describe(self, spec: Any, args: Mapping[str, Any]) -> dict[str, Any] | None:
        """The request the call would send (None if unknown); checks the arguments."""
        if not has_placeholder(args):
            result: dict[str, Any] | None = self.pool.describe(spec, args)
            return result
        model = check_args(spec, args)
        if model is None:
            return None
        try:
            instance = self.pool.instance(spec.connector)
            described: dict[str, Any] | None = instance.describe_call(spec, model)
        except Exception:  # a placeholder where the connector needs a real value
            return None
        return described


class DryRunCalls(CallRunner):
    """Makes read-only calls for real, unless their arguments hold placeholders; never polls."""

    def __init__(self, engine: Engine, actions: DryRunActions, **kwargs: Any) -> None:
        super().__init__(actions, engine.clock, **kwargs)
        self.engine = engine
        self.dry_actions = actions

    def _run(self, plan: CallPlan) -> RunState | None:
        return self.engine.store.world.runs.get(plan.run_id)

    async def attempts(
        self,
        plan: CallPlan,
        *,
        first_attempt: int,
        context: Mapping[str, Any],
        on_retry: Callable[[int, str, float], Awaitable[None]],
        on_attempt: Callable[[int], Awaitable[None]] | None = None,
    ) -> tuple[Any, int]:
        if not has_placeholder(plan.args):
            return await super().attempts(
                plan,
                first_attempt=first_attempt,
                context=context,
                on_retry=on_retry,
                on_attempt=on_attempt,
            )
        if on_attempt is not None:
            await on_attempt(first_attempt)
        try:
            description = self.dry_actions.describe(plan.spec, plan.args)
        except ConnectorError as exc:
            raise StepFailure(f"{plan.ref}: {exc}", first_attempt) from None
        run = self._run(plan)
        if run is not None:
            await self.engine.record(
                run,
                "step.dry_run",
                step=plan.step_id,
                data={
                    "uses": plan.ref,
                    "args": dict(plan.args),
                    "request": description,
                    "unknown_args": True,
                },
            )
        return Placeholder(_output_path(plan)), first_attempt

    async def _with_polling(
        self, plan: CallPlan, call: CallOnce, context: Mapping[str, Any]
    ) -> Any:
        output = await call(None)
        if plan.until is None or plan.poll is None:
            return output
        if has_placeholder(output):
            return output
        try:
            done = evaluate(plan.until, {**context, "output": output})
        except TemplateError as exc:
            if _reads_placeholder(plan.until, context):
                return output
            raise StepFailure(f"until: {exc.message}") from None
        run = self._run(plan)
        if not done and run is not None:
            await self.engine.record(
                run,
                "step.dry_run",
                step=plan.step_id,
                data={
                    "poll": {
                        "until": plan.until,
                        "every": plan.poll.every,
                        "timeout": plan.poll.timeout,
                    }
                },
            )
        return output


def _output_path(plan: CallPlan) -> str:
    """``steps.id.output`` (or ``…output[i]`` for a ``for_each`` item) of a call not made."""
    base = f"steps.{plan.step_id}.output"
    prefix = f"{plan.run_id}:{plan.step_id}:"
    if plan.idempotency_key.startswith(prefix):
        rest = plan.idempotency_key[len(prefix) :]
        if rest.isdigit():
            return f"{base}[{rest}]"
        return f"steps.{plan.step_id}.{rest}"
    return base


def _reads_placeholder(expression: str, context: Mapping[str, Any]) -> bool:
    """Whether ``expression`` reads a value that holds a placeholder."""
    try:
        refs = analyse_expression(expression).refs
    except TemplateError:
        return False
    for ref in refs:
        value: Any = context.get(ref.root)
        if ref.root == "steps":
            try:
                for key in ref.path[:2]:  # steps.<id>.output, not the rest of the path
                    value = value[key]
            except (KeyError, TypeError, IndexError):
                continue
        if has_placeholder(value):
            return True
    return False


class DryRunPlan(RunbookPlan):
    """A plan whose ``if`` and ``for_each`` tolerate placeholders."""

    def decide(
        self,
        run: RunState,
        step_id: str,
        evaluate_if: Callable[[str], Any],
    ) -> StepDecision | None:
        from bot.engine.context import build_context

        def lenient(expression: str) -> Any:
            if _reads_placeholder(expression, build_context(run)):
                return True
            return evaluate_if(expression)

        decision = super().decide(run, step_id, lenient)
        info = self.steps[step_id]
        step = info.step
        if (
            decision is not None
            and decision.action is Action.RUN
            and isinstance(step, (CallStep, NotifyStep))
            and step.for_each
        ):
            self._one_item_if_unknown(run, step_id, step)
        return decision

    def _one_item_if_unknown(
        self, run: RunState, step_id: str, step: CallStep | NotifyStep
    ) -> None:
        from dataclasses import replace

        from bot.engine.context import build_context

        expression = step.for_each
        assert expression is not None
        try:
            items = evaluate(expression, build_context(run))
        except TemplateError:
            return
        if isinstance(items, Placeholder):
            copy = step.model_copy(update={"for_each": f"({expression}) | list"})
            self.steps[step_id] = replace(self.steps[step_id], step=copy)


class DryRunCatalog:
    """A catalog whose plans are :class:`DryRunPlan` s (one per definition)."""

    def __init__(self, catalog: RunbookCatalog) -> None:
        self._catalog = catalog
        self._plans: dict[str, RunbookPlan] = {}

    def plan(self, digest: str, name: str = "") -> RunbookPlan:
        if digest not in self._plans:
            self._plans[digest] = DryRunPlan(self._catalog.definition(digest, name))
        return self._plans[digest]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._catalog, name)


def dry_run_engine(store: Any, catalog: RunbookCatalog, pool: Any, **kwargs: Any) -> Engine:
    """An engine for one dry run (give it an in-memory store): nothing mutating is called."""
    from bot.engine.engine import Engine
    from bot.redact import REDACTOR

    actions = DryRunActions(pool)
    engine = Engine(store, DryRunCatalog(catalog), actions, dry_run=True, **kwargs)  # type: ignore[arg-type]
    engine.calls = DryRunCalls(engine, actions, register_secret=REDACTOR.add)
    return engine


def describe_poll(poll: Mapping[str, Any]) -> str:
    """``until X (every 10s, up to 10m)`` for the timeline."""
    every = format_duration(float(poll.get("every") or 0))
    timeout = format_duration(float(poll.get("timeout") or 0))
    return f"until {poll.get('until')} (every {every}, up to {timeout})"
