"""A connector for engine tests, installed through a real entry point.

Every action appends one line to a side-effect log (``RUNBOOK_TESTKIT_LOG``),
so tests can count how often each step really ran, and, when
``RUNBOOK_TESTKIT_SIGNAL`` names a FIFO, writes one byte to it after the
effect so a crash test can wait for "N effects happened" without sleeping.

``hold`` stands for a slow vendor call: it logs ``begin`` (and signals), then
waits until the file named by ``RUNBOOK_TESTKIT_RELEASE`` exists, then logs
``end`` — so a test can act while the call is surely in flight.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from connectors.base import (
    ActionContext,
    ActionInput,
    ActionOutput,
    Connector,
    ConnectorSettings,
    action,
)


class Settings(ConnectorSettings):
    log: str
    signal: str | None = None
    release: str | None = None


class KeyInput(ActionInput):
    key: str


class Effect(ActionOutput):
    key: str
    attempt: int


class Testkit(Connector):
    name = "testkit"
    title = "Test kit"
    Settings = Settings

    def _effect(
        self, kind: str, ctx: ActionContext, args: KeyInput, *, signal: bool = True
    ) -> dict[str, Any]:
        settings = self.settings
        assert isinstance(settings, Settings)
        line = f"{kind} {ctx.run_id} {ctx.step_id} {args.key} {ctx.attempt} {ctx.idempotency_key}\n"
        fd = os.open(settings.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if settings.signal and signal:
            sig = os.open(settings.signal, os.O_WRONLY)
            try:
                os.write(sig, b".")
            finally:
                os.close(sig)
        return {"key": args.key, "attempt": ctx.attempt}

    @action(input=KeyInput, output=Effect)
    async def read(self, ctx: ActionContext, args: KeyInput) -> dict[str, Any]:
        """Read-only: safe to repeat."""
        return self._effect("read", ctx, args)

    @action(input=KeyInput, output=Effect, mutating=True, idempotent=True)
    async def touch(self, ctx: ActionContext, args: KeyInput) -> dict[str, Any]:
        """Mutating but idempotent (like containing a contained host)."""
        return self._effect("touch", ctx, args)

    @action(input=KeyInput, output=Effect, mutating=True, idempotent=False)
    async def hold(self, ctx: ActionContext, args: KeyInput) -> dict[str, Any]:
        """Mutating, not idempotent, and in flight until the release file exists."""
        settings = self.settings
        assert isinstance(settings, Settings)
        self._effect("begin", ctx, args)
        while settings.release and not os.path.exists(settings.release):
            await asyncio.sleep(0.01)  # the fake vendor at work: it ends when the test says
        return self._effect("end", ctx, args, signal=False)

    @action(input=KeyInput, output=Effect, mutating=True, idempotent=False)
    async def ticket(self, ctx: ActionContext, args: KeyInput) -> dict[str, Any]:
        """Mutating, not idempotent (like opening a ticket)."""
        return self._effect("ticket", ctx, args)
