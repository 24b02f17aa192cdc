"""The built-in ``core`` connector: glue and test actions, all read-only."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field

from bot.errors import ConnectorError, RetryableError
from connectors.base import (
    ActionContext,
    ActionInput,
    ActionOutput,
    AnyInput,
    Connector,
    NoInput,
    action,
)


class FailInput(ActionInput):
    message: str
    retryable: bool = False


class FlakyInput(ActionInput):
    failures: int = Field(ge=0)


class FlakyOutput(ActionOutput):
    attempt: int


class SleepInput(ActionInput):
    seconds: float = Field(ge=0, le=86400)


class SleepOutput(ActionOutput):
    slept: float


class Core(Connector):
    """Always present; for tests and glue."""

    name = "core"
    title = "Core"

    @action(input=NoInput, output=ActionOutput)
    async def noop(self, ctx: ActionContext, args: NoInput) -> dict[str, Any]:
        """Do nothing; output {}."""
        return {}

    @action(input=AnyInput, output=ActionOutput)
    async def echo(self, ctx: ActionContext, args: AnyInput) -> dict[str, Any]:
        """Return the given keys and values."""
        return dict(args.model_extra or {})

    @action(input=FailInput)
    async def fail(self, ctx: ActionContext, args: FailInput) -> dict[str, Any]:
        """Always fail with the message (retryably if asked)."""
        raise ConnectorError(args.message, retryable=args.retryable, connector="core")

    @action(input=FlakyInput, output=FlakyOutput)
    async def flaky(self, ctx: ActionContext, args: FlakyInput) -> dict[str, Any]:
        """Fail retryably while the attempt is at most `failures`."""
        if ctx.attempt <= args.failures:
            raise RetryableError(
                f"flaky failure on attempt {ctx.attempt} of {args.failures}", connector="core"
            )
        return {"attempt": ctx.attempt}

    @action(input=SleepInput, output=SleepOutput)
    async def sleep(self, ctx: ActionContext, args: SleepInput) -> dict[str, Any]:
        """Sleep for `seconds`."""
        if ctx.sleep is not None:
            await ctx.sleep(args.seconds)
        else:
            await asyncio.sleep(args.seconds)
        return {"slept": args.seconds}
