"""Connectors against the fake vendors: one sandbox server per session, reset per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from bot.sandbox import Sandbox
from connectors.base import ActionContext
from connectors.registry import ConnectorPool, ConnectorRegistry


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(sandbox_server: Sandbox) -> Iterator[Sandbox]:
    sandbox_server.reset()
    yield sandbox_server
    sandbox_server.reset()


@pytest.fixture(scope="session")
def registry() -> ConnectorRegistry:
    return ConnectorRegistry.discover(include_entry_points=False)


class Harness:
    """Calls actions through a real ConnectorPool configured for the sandbox."""

    def __init__(self, sandbox: Sandbox, registry: ConnectorRegistry) -> None:
        self.sandbox = sandbox
        self.registry = registry
        self.overrides: dict[str, str] = {}
        self.registered: list[str] = []
        self.attempt = 1
        self.idempotency_key = "r-test:step"
        self._pool: ConnectorPool | None = None
        self._old: list[ConnectorPool] = []

    @property
    def env(self) -> dict[str, str]:
        return {**self.sandbox.env, **self.overrides}

    def configure(self, **env: str) -> None:
        """Change settings; the next call builds fresh connector instances."""
        self.overrides.update(env)
        if self._pool is not None:
            self._old.append(self._pool)
            self._pool = None

    @property
    def pool(self) -> ConnectorPool:
        if self._pool is None:
            self._pool = ConnectorPool(
                self.registry, self.env, register_secret=self.registered.append
            )
        return self._pool

    def ctx(self) -> ActionContext:
        return ActionContext(
            run_id="r-test",
            step_id="step",
            attempt=self.attempt,
            idempotency_key=self.idempotency_key,
            register_secret=self.registered.append,
        )

    async def call(self, ref: str, **args: Any) -> dict[str, Any]:
        spec = self.registry.lookup(ref)
        return await self.pool.call(spec, args, self.ctx())

    def instance(self, name: str) -> Any:
        return self.pool.instance(name)

    def describe(self, ref: str, **args: Any) -> dict[str, Any] | None:
        return self.pool.describe(self.registry.lookup(ref), args)

    async def aclose(self) -> None:
        for pool in [*self._old, *([self._pool] if self._pool else [])]:
            await pool.aclose()


@pytest.fixture
async def vendor(sandbox: Sandbox, registry: ConnectorRegistry) -> AsyncIterator[Harness]:
    harness = Harness(sandbox, registry)
    yield harness
    await harness.aclose()
