"""Executing connector calls: attempts, retries with backoff, timeouts, loops and polling.

Retries apply only to errors a connector marks retryable (timeouts, connection
errors, 5xx, 429). The delay grows by ``backoff`` from ``delay`` up to
``max_delay`` with jitter (between half and all of it); a vendor's
``Retry-After`` is a floor (honoured up to one hour).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.engine.ports import ActionRunner, Clock
from bot.errors import ConnectorError, RetryableError
from bot.runbook.durations import format_duration
from bot.runbook.model import PollPolicy, RetryPolicy
from bot.runbook.templates import TemplateError, evaluate, render_value

MAX_OUTPUT_BYTES = 256 * 1024  # per output record in the audit log
MAX_RETRY_AFTER = 3600.0
MAX_ITEMS = 10_000
MIN_POLL_INTERVAL = 0.01  # seconds between polls, whatever `poll.every` says


class StepFailure(Exception):
    """A step (or item) failed for good; ``message`` says why."""

    def __init__(self, message: str, attempts: int = 0) -> None:
        self.message = message
        self.attempts = attempts
        super().__init__(message)


def retry_delay(
    policy: RetryPolicy, attempt: int, retry_after: float | None, rng: Callable[[], float]
) -> float:
    """Seconds to wait before attempt ``attempt + 1``."""
    delay = min(policy.max_delay, policy.delay * policy.backoff ** (attempt - 1))
    if policy.jitter:
        delay = delay / 2 + rng() * delay / 2
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


@dataclass(slots=True)
class CallPlan:
    """Everything needed to make one connector call (or a series of attempts)."""

    ref: str
    spec: Any
    args: Mapping[str, Any]
    timeout: float | None
    retry: RetryPolicy
    until: str | None
    poll: PollPolicy | None
    run_id: str
    step_id: str
    idempotency_key: str


class CallRunner:
    """Makes calls with the engine's clock and connector pool."""

    def __init__(
        self,
        actions: ActionRunner,
        clock: Clock,
        *,
        register_secret: Callable[[str], None],
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.actions = actions
        self.clock = clock
        self.register_secret = register_secret
        self.rng = rng

    async def once(self, plan: CallPlan, attempt: int) -> Any:
        """One attempt: call with the per-attempt timeout."""
        from connectors.base import ActionContext

        ctx = ActionContext(
            run_id=plan.run_id,
            step_id=plan.step_id,
            attempt=attempt,
            idempotency_key=plan.idempotency_key,
            sleep=self.clock.sleep,
            register_secret=self.register_secret,
        )
        try:
            return await self.clock.timeout(
                self.actions.call(plan.spec, plan.args, ctx), plan.timeout
            )
        except TimeoutError:
            raise RetryableError(
                f"{plan.ref} timed out after {format_duration(plan.timeout or 0)}"
            ) from None

    async def attempts(
        self,
        plan: CallPlan,
        *,
        first_attempt: int,
        context: Mapping[str, Any],
        on_retry: Callable[[int, str, float], Awaitable[None]],
        on_attempt: Callable[[int], Awaitable[None]] | None = None,
    ) -> tuple[Any, int]:
        """Attempt until success, a permanent error, or no attempts left.

        Returns:
            (output, attempts made so far in total)

        Raises:
            StepFailure: with the last error.
        """
        attempt = first_attempt
        budget = max(plan.retry.attempts, first_attempt)
        while True:
            if on_attempt is not None:
                await on_attempt(attempt)
            try:
                output = await self._with_polling(plan, attempt, context)
                return output, attempt
            except ConnectorError as exc:
                message = f"{plan.ref}: {exc}"
                if exc.retryable and attempt < budget:
                    delay = retry_delay(plan.retry, attempt, exc.retry_after, self.rng)
                    await on_retry(attempt, message, delay)
                    await self.clock.sleep(delay)
                    attempt += 1
                    continue
                suffix = f" (after {attempt} attempts)" if attempt > 1 else ""
                raise StepFailure(message + suffix, attempt) from None
            except StepFailure as exc:
                exc.attempts = attempt
                raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise StepFailure(
                    f"{plan.ref} raised an unexpected {type(exc).__name__}: {exc}", attempt
                ) from None

    async def _with_polling(self, plan: CallPlan, attempt: int, context: Mapping[str, Any]) -> Any:
        if plan.until is None or plan.poll is None:
            return await self.once(plan, attempt)
        waited = 0.0
        polls = 0
        while True:
            output = await self.once(plan, attempt)
            polls += 1
            try:
                done = evaluate(plan.until, {**context, "output": output})
            except TemplateError as exc:
                raise StepFailure(f"until: {exc.message}") from None
            if done:
                return output
            pause = max(plan.poll.every, MIN_POLL_INTERVAL)  # `every: 0s` must not spin
            if waited + pause > plan.poll.timeout:
                raise StepFailure(
                    f"until was still false after {format_duration(plan.poll.timeout)} "
                    f"({polls} polls); last output: {_short(output)}"
                )
            await self.clock.sleep(pause)
            waited += pause


def render_args(with_: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """Render ``with`` arguments.

    Raises:
        StepFailure: a template failed (undefined name, sandbox violation, ...).
    """
    try:
        rendered = render_value(dict(with_), context)
    except TemplateError as exc:
        raise StepFailure(f"with: {exc.message}") from None
    return dict(rendered)


def for_each_items(expression: str, context: Mapping[str, Any]) -> list[Any]:
    """Evaluate ``for_each`` to a list.

    Raises:
        StepFailure: not a list, or too long.
    """
    try:
        items = evaluate(expression, context)
    except TemplateError as exc:
        raise StepFailure(f"for_each: {exc.message}") from None
    if isinstance(items, (str, bytes)) or not isinstance(items, (list, tuple)):
        raise StepFailure(f"for_each must give a list, got {type(items).__name__}")
    if len(items) > MAX_ITEMS:
        raise StepFailure(f"for_each gave {len(items)} items; the limit is {MAX_ITEMS}")
    return list(items)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:197] + "..."
