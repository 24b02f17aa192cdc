"""Connectors that misbehave: unexpected exceptions, odd outputs, hangs — defined outcomes."""

from __future__ import annotations

from typing import Any

from bot.errors import RetryableError
from connectors.base import ActionContext, ActionInput, Connector, action
from connectors.core import Core
from connectors.registry import ConnectorRegistry
from tests.engine.harness import make_engine


class Dummy(ActionInput):
    pass


class Broken(Connector):
    name = "broken"

    @action(input=Dummy)
    async def explode(self, ctx: ActionContext, args: Dummy) -> dict[str, Any]:
        """Raises something no connector should."""
        raise ZeroDivisionError("division by zero deep inside a vendor SDK")

    @action(input=Dummy)
    async def listy(self, ctx: ActionContext, args: Dummy) -> Any:
        """Returns a list instead of an object."""
        return [1, 2, 3]

    @action(input=Dummy)
    async def throttled(self, ctx: ActionContext, args: Dummy) -> dict[str, Any]:
        """Always rate limited, asking for 30 s."""
        raise RetryableError("429 Too Many Requests", retry_after=30, connector="broken")


REGISTRY = ConnectorRegistry({"core": Core, "broken": Broken})


async def test_unexpected_exception_fails_the_step_with_a_clear_error() -> None:
    h = make_engine(
        """
name: explode
steps:
  - id: a
    uses: broken.explode
  - id: b
    needs: []
    uses: broken.listy
    continue_on_error: true
""",
        registry=REGISTRY,
    )
    run = await h.start("explode")
    assert run.status == "failed"
    assert run.steps["a"].error == (
        "broken.explode raised an unexpected ZeroDivisionError: "
        "division by zero deep inside a vendor SDK"
    )
    assert run.steps["b"].outcome == "failed"
    assert "not an object" in (run.steps["b"].error or "")
    await h.close()


async def test_retry_after_is_honoured_as_a_floor_then_a_clear_failure() -> None:
    h = make_engine(
        """
name: storm
steps:
  - id: a
    uses: broken.throttled
    retry: {attempts: 3, delay: 1s, jitter: false}
""",
        registry=REGISTRY,
    )
    result = await h.engine.start_run("storm", {}, requester="cli:x")
    await h.clock.advance(0)
    assert [r["data"]["delay"] for r in h.of("step.retrying")] == [30.0]
    await h.clock.advance(29)
    assert len(h.of("step.started")) == 1  # not before the vendor said
    await h.clock.advance(1)
    await h.clock.advance(30)
    run = await h.settle(result.run.id)
    assert run.steps["a"].outcome == "failed"
    assert run.steps["a"].error == "broken.throttled: 429 Too Many Requests (after 3 attempts)"
    assert run.steps["a"].attempts == 3
    await h.close()


def test_cli_status_choices_are_the_engine_statuses() -> None:
    from bot.cli.parsers import RUN_STATUSES
    from bot.engine.state import RunStatus

    assert tuple(status.value for status in RunStatus) == RUN_STATUSES


def test_run_ids_increase_even_within_one_millisecond() -> None:
    from bot.engine.defaults import new_run_id

    ids = [new_run_id() for _ in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(len(i) == 18 and i.startswith("r-") for i in ids)
