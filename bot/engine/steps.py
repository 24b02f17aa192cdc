"""Executing connector calls: attempts, retries with backoff, timeouts, loops and polling.

Retries apply only to errors a connector marks retryable (timeouts, connection
errors, 5xx, 429). The delay grows by ``backoff`` from ``delay`` up to
``max_delay`` with jitter (between half and all of it); a vendor's
``Retry-After`` is a floor (honoured up to one hour). An action that is
mutating and not idempotent is retried only after an error that surely had no
effect (``ConnectorError.no_effect``: never sent, 429, 503); any other failure
fails the step at once, saying why, since the vendor may have acted on it.

Polling repeats the call until ``until`` holds, inside one window of
``poll.timeout`` measured on the monotonic clock from the first poll (calls
and retries included); a retryable error retries that poll, in the same window.
When the window ran out while the bot was down, one last poll is made after
the restart, and the step fails only if ``until`` is still false.

Once the engine is stopping (its ``stop`` event is set) no further attempt or
poll starts: a pause between two calls ends early and raises
:class:`CallStopped`. A call already in flight is never cut short here.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
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


class CallStopped(Exception):
    """The engine is stopping: no further attempt, poll or item of this call was started.

    ``attempts`` is set when stopping came before the first attempt of
    :meth:`CallRunner.attempts`: the attempts made in total, not counting the
    one that was announced but never made.
    """

    def __init__(self, attempts: int | None = None) -> None:
        self.attempts = attempts
        super().__init__()


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
    """Everything needed to make one connector call (or a series of attempts).

    ``poll_started_at`` is set when a polling step resumes after a restart: its
    poll window started then (durably recorded), not when this process began.
    """

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
    poll_started_at: datetime | None = None


@dataclass(slots=True)
class Tries:
    """The attempts of one call so far (shared by every poll of a polling step)."""

    attempt: int
    budget: int
    announced: int = 0  # the last attempt ``on_attempt`` was told about


class PollWindow:
    """``poll.timeout`` measured on the monotonic clock from the first poll.

    Time spent inside calls and between retries counts; ``used`` is the part
    of the window that passed before a restart.
    """

    def __init__(self, clock: Clock, timeout: float, used: float = 0.0) -> None:
        self.clock = clock
        self.timeout = timeout
        self.used = max(0.0, used)
        self.started = clock.monotonic()

    def elapsed(self) -> float:
        return self.used + (self.clock.monotonic() - self.started)

    def fits(self, wait: float) -> bool:
        """Whether a call started after ``wait`` more seconds starts inside the window."""
        return self.elapsed() + wait <= self.timeout


CallOnce = Callable[[PollWindow | None], Awaitable[Any]]


class CallRunner:
    """Makes calls with the engine's clock and connector pool."""

    def __init__(
        self,
        actions: ActionRunner,
        clock: Clock,
        *,
        register_secret: Callable[[str], None],
        rng: Callable[[], float] = random.random,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.actions = actions
        self.clock = clock
        self.register_secret = register_secret
        self.rng = rng
        self.stop = stop or asyncio.Event()

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` on the clock before the next call, unless stopping begins first.

        Raises:
            CallStopped: the engine is stopping; the next call must not start.
        """
        if self.stop.is_set():
            raise CallStopped
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (sleeper, stopper):
                waiter.cancel()
            await asyncio.gather(sleeper, stopper, return_exceptions=True)
        if self.stop.is_set():
            raise CallStopped

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
            # The call was cut while in flight: the vendor may have acted on it.
            raise RetryableError(
                f"{plan.ref} timed out after {format_duration(plan.timeout or 0)}",
                no_effect=False,
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

        A retryable error is retried while the budget lasts, except for an
        action that is mutating and not idempotent, which is tried again only
        when the error says the request surely had no effect. While polling,
        a retryable error retries that poll, inside the same poll window.

        Returns:
            (output, attempts made so far in total)

        Raises:
            StepFailure: with the last error.
            CallStopped: the engine began stopping before the first call or between two.
        """
        if self.stop.is_set():
            # stopping began before the first attempt (its step.started may already
            # be on record): no call starts, and none was made
            raise CallStopped(attempts=first_attempt - 1)
        tries = Tries(first_attempt, max(plan.retry.attempts, first_attempt))

        async def call(window: PollWindow | None) -> Any:
            return await self._call(plan, tries, window, on_retry, on_attempt)

        try:
            return await self._with_polling(plan, call, context), tries.attempt
        except StepFailure as exc:
            exc.attempts = tries.attempt
            raise
        except (asyncio.CancelledError, CallStopped):
            raise
        except Exception as exc:
            raise StepFailure(
                f"{plan.ref} raised an unexpected {type(exc).__name__}: {exc}", tries.attempt
            ) from None

    async def _call(
        self,
        plan: CallPlan,
        tries: Tries,
        window: PollWindow | None,
        on_retry: Callable[[int, str, float], Awaitable[None]],
        on_attempt: Callable[[int], Awaitable[None]] | None,
    ) -> Any:
        """One call, retried as the policy allows; ``tries`` keeps the count."""
        while True:
            if tries.announced < tries.attempt:
                tries.announced = tries.attempt
                if on_attempt is not None:
                    await on_attempt(tries.attempt)
            try:
                return await self.once(plan, tries.attempt)
            except ConnectorError as exc:
                message = f"{plan.ref}: {exc}"
                suffix = f" (after {tries.attempt} attempts)" if tries.attempt > 1 else ""
                if not exc.retryable or tries.attempt >= tries.budget:
                    raise StepFailure(message + suffix, tries.attempt) from None
                refusal = not_retried(plan.spec, exc)
                if refusal is not None:
                    raise StepFailure(f"{message}; {refusal}{suffix}", tries.attempt) from None
                delay = retry_delay(plan.retry, tries.attempt, exc.retry_after, self.rng)
                if window is not None and not window.fits(delay):
                    raise StepFailure(
                        f"{message}; not retried: poll.timeout "
                        f"({format_duration(window.timeout)}) would run out first{suffix}",
                        tries.attempt,
                    ) from None
                await on_retry(tries.attempt, message, delay)
                await self.pause(delay)
                tries.attempt += 1

    def poll_window(self, plan: CallPlan, timeout: float) -> PollWindow:
        used = 0.0
        if plan.poll_started_at is not None:
            used = (self.clock.now() - plan.poll_started_at).total_seconds()
        return PollWindow(self.clock, timeout, used)

    async def _with_polling(
        self, plan: CallPlan, call: CallOnce, context: Mapping[str, Any]
    ) -> Any:
        if plan.until is None or plan.poll is None:
            return await call(None)
        window = self.poll_window(plan, plan.poll.timeout)
        ran_out = not window.fits(0)  # the window ran out while the bot was down
        polls = 0
        while True:
            output = await call(window)
            polls += 1
            try:
                done = evaluate(plan.until, {**context, "output": output})
            except TemplateError as exc:
                raise StepFailure(f"until: {exc.message}") from None
            if done:
                return output
            if ran_out:  # one last look after the restart, and no more
                raise StepFailure(
                    f"poll.timeout ran out while the bot was down "
                    f"({format_duration(window.elapsed())} since the step started; "
                    f"poll.timeout: {format_duration(window.timeout)}); the last poll, "
                    f"made after the restart, still found until false; "
                    f"last output: {_short(output)}"
                )
            pause = max(plan.poll.every, MIN_POLL_INTERVAL)  # `every: 0s` must not spin
            if not window.fits(pause):  # never start a poll after the window ran out
                raise StepFailure(
                    f"until was still false after {format_duration(window.elapsed())} "
                    f"({polls} polls; poll.timeout: {format_duration(window.timeout)}); "
                    f"last output: {_short(output)}"
                )
            await self.pause(pause)


def not_retried(spec: Any, error: ConnectorError) -> str | None:
    """Why a retryable ``error`` must not be retried for ``spec``, or None if it may.

    An action that changes the world and is not idempotent is repeated only
    when the failed request surely had no effect; after a timeout or a reset
    the vendor may have acted on it, and a second request could do it twice.
    """
    if error.no_effect or spec.safe_to_repeat:
        return None
    who = "the server" if spec.connector == "http" else spec.connector
    return (
        f"not retried: {spec.ref} is not idempotent and {who} may have acted on it "
        "— check before running it again"
    )


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
