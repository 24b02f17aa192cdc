"""How connectors and their actions are declared.

A connector is a class with a ``name``, a pydantic ``Settings`` model read
from ``RUNBOOK_<CONNECTOR>_<FIELD>``, and actions declared with
:func:`action`, which only records metadata::

    class Pager(Connector):
        name = "pager"

        class Settings(ConnectorSettings):
            base_url: str = "https://pager.example"
            token: SecretStr

        @action(input=PageIn, output=PageOut, mutating=True, idempotent=True)
        async def page(self, ctx: ActionContext, args: PageIn) -> PageOut: ...

Read-only actions (``mutating=False``) are safe to run again after a crash
and are called for real in a dry run; mutating ones declare whether doing
them twice is harmless (``idempotent``). This module imports no HTTP client:
loading and validating runbooks stays cheap.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from bot.errors import ConfigError, ConnectorError

ActionFunc = Callable[..., Awaitable[Any]]
F = TypeVar("F", bound=ActionFunc)


class ActionInput(BaseModel):
    """Base for action inputs: unknown arguments are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ActionOutput(BaseModel):
    """Base for action outputs; vendors may add keys beyond the declared ones."""

    model_config = ConfigDict(extra="allow")


class AnyInput(BaseModel):
    """Input model of actions that take any keys (``core.echo``)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class NoInput(ActionInput):
    """Input model of actions that take no arguments."""


class ConnectorSettings(BaseModel):
    """Base for connector settings; fields come from ``RUNBOOK_<CONNECTOR>_<FIELD>``."""

    model_config = ConfigDict(extra="ignore", frozen=True)


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """Metadata of one action.

    Attributes:
        connector: the connector's name.
        name: the action's name (``find_host``).
        input_model: pydantic model of its arguments.
        output_model: pydantic model of its output, if declared.
        mutating: whether it changes the outside world.
        idempotent: whether running it twice is harmless.
        description: one line for ``runbook connectors``.
        retryable: what kinds of failure it may retry (documentation).
    """

    connector: str
    name: str
    input_model: type[BaseModel]
    output_model: type[BaseModel] | None
    mutating: bool
    idempotent: bool
    description: str
    method: str = ""
    retryable: tuple[str, ...] = ("timeout", "connection", "5xx", "429")

    @property
    def ref(self) -> str:
        return f"{self.connector}.{self.name}"

    @property
    def safe_to_repeat(self) -> bool:
        """Read-only or idempotent: may run again after a crash."""
        return not self.mutating or self.idempotent


@dataclass(frozen=True, slots=True)
class _ActionMark:
    name: str | None
    input_model: type[BaseModel]
    output_model: type[BaseModel] | None
    mutating: bool
    idempotent: bool
    description: str | None


def action(
    name: str | None = None,
    *,
    input: type[BaseModel] = NoInput,
    output: type[BaseModel] | None = None,
    mutating: bool = False,
    idempotent: bool | None = None,
    description: str | None = None,
) -> Callable[[F], F]:
    """Declare a connector method as an action; records metadata only.

    Args:
        name: action name (default: the method's name).
        input: pydantic model of the arguments.
        output: pydantic model of the result.
        mutating: whether it changes the outside world.
        idempotent: whether doing it twice is harmless (default: not mutating).
        description: one line (default: the docstring's first line).
    """

    def mark(func: F) -> F:
        func.__runbook_action__ = _ActionMark(  # type: ignore[attr-defined]
            name=name,
            input_model=input,
            output_model=output,
            mutating=mutating,
            idempotent=(not mutating) if idempotent is None else idempotent,
            description=description,
        )
        return func

    return mark


@dataclass(slots=True)
class ActionContext:
    """What an action knows about the call it serves.

    Attributes:
        run_id: the run.
        step_id: the step.
        attempt: 1 for the first try.
        idempotency_key: stable across retries and restarts of one step (and item).
        dry_run: True when nothing may change.
        sleep: the engine clock's sleep (so tests control time).
        register_secret: call with any token obtained with a credential so it is redacted.
    """

    run_id: str
    step_id: str
    attempt: int
    idempotency_key: str
    dry_run: bool = False
    sleep: Callable[[float], Awaitable[None]] | None = None
    register_secret: Callable[[str], None] = field(default=lambda _value: None)
    sandbox: bool = False


class Connector:
    """Base class of connectors; subclasses set ``name`` and declare actions."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    Settings: ClassVar[type[ConnectorSettings]] = ConnectorSettings
    _actions: ClassVar[dict[str, ActionSpec]]

    def __init__(self, settings: ConnectorSettings, *, context: ConnectorRuntime) -> None:
        self.settings = settings
        self.runtime = context

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, ActionSpec] = {}
        for attr, func in inspect.getmembers(cls, inspect.isfunction):
            mark: _ActionMark | None = getattr(func, "__runbook_action__", None)
            if mark is None:
                continue
            action_name = mark.name or attr
            doc = (func.__doc__ or "").strip().splitlines()
            found[action_name] = ActionSpec(
                connector=cls.name,
                name=action_name,
                input_model=mark.input_model,
                output_model=mark.output_model,
                mutating=mark.mutating,
                idempotent=mark.idempotent,
                description=mark.description or (doc[0] if doc else ""),
                method=attr,
            )
        cls._actions = found

    @classmethod
    def actions(cls) -> dict[str, ActionSpec]:
        """The declared actions by name."""
        return dict(cls._actions)

    @classmethod
    def required_settings(cls) -> list[str]:
        """Setting fields without a default: credentials the connector cannot do without."""
        return [name for name, info in cls.Settings.model_fields.items() if info.is_required()]

    @classmethod
    def secret_settings(cls) -> list[str]:
        return [
            name for name, info in cls.Settings.model_fields.items() if _is_secret(info.annotation)
        ]

    @classmethod
    def env_name(cls, field_name: str) -> str:
        """The environment variable of a setting (``RUNBOOK_CROWDSTRIKE_CLIENT_ID``)."""
        if cls.name == "slack" and field_name == "api_url":
            return "RUNBOOK_SLACK_API_URL"
        return f"RUNBOOK_{cls.name.upper()}_{field_name.upper()}"

    @classmethod
    def settings_from_env(cls, env: Mapping[str, str]) -> ConnectorSettings:
        """Read this connector's settings from an environment mapping.

        Raises:
            ConfigError: a setting is missing or malformed.
        """
        values = {
            name: env[cls.env_name(name)]
            for name in cls.Settings.model_fields
            if cls.env_name(name) in env and env[cls.env_name(name)] != ""
        }
        try:
            return cls.Settings.model_validate(values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field_name = str(err["loc"][0]) if err["loc"] else "?"
                problems.append(f"{cls.env_name(field_name)}: {err['msg']}")
            raise ConfigError(f"{cls.name} is not configured: " + "; ".join(problems)) from None

    @classmethod
    def is_configured(cls, env: Mapping[str, str]) -> bool:
        return all(env.get(cls.env_name(name)) for name in cls.required_settings())

    async def aclose(self) -> None:
        """Release clients and connections."""
        return

    def describe_call(self, spec: ActionSpec, args: BaseModel) -> dict[str, Any] | None:
        """What a mutating call would send (for ``--dry-run``); None when not HTTP."""
        return None


@dataclass(slots=True)
class ConnectorRuntime:
    """What the registry hands a connector instance besides its settings."""

    register_secret: Callable[[str], None]
    sandbox: bool = False
    user_agent: str = "runbook-bot"
    extra: dict[str, Any] = field(default_factory=dict)


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return SecretStr in getattr(annotation, "__args__", ())


def secret_values(settings: BaseModel) -> list[str]:
    """Every secret value held by a settings model (for redaction)."""
    found = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
    return found


class ActionFailed(ConnectorError):
    """A permanent failure raised by an action with the vendor's message."""
