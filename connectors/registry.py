"""Finding connectors (built-in and from installed distributions) and calling their actions."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from bot.errors import ConfigError, ConnectorError, NotConfiguredError
from connectors import BUILTIN
from connectors.base import (
    ActionContext,
    ActionSpec,
    Connector,
    ConnectorRuntime,
    secret_values,
)

ENTRY_POINT_GROUP = "runbook_bot.connectors"


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _load_object(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


class ConnectorRegistry:
    """The connectors available to runbooks, by name."""

    def __init__(
        self,
        classes: Mapping[str, type[Connector]],
        warnings: list[str] | None = None,
    ) -> None:
        self._classes = dict(classes)
        self.warnings = list(warnings or [])

    @classmethod
    def discover(cls, *, include_entry_points: bool = True) -> ConnectorRegistry:
        """Built-ins plus every ``runbook_bot.connectors`` entry point.

        A plugin that fails to import is reported in ``warnings``, never fatal.
        """
        classes: dict[str, type[Connector]] = {}
        warnings: list[str] = []
        for name, target in BUILTIN.items():
            classes[name] = _load_object(target)
        if include_entry_points:
            for entry in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    loaded = entry.load()
                except Exception as exc:
                    warnings.append(f"connector plugin {entry.name!r} failed to load: {exc}")
                    continue
                if not (isinstance(loaded, type) and issubclass(loaded, Connector)):
                    warnings.append(f"connector plugin {entry.name!r} is not a Connector subclass")
                    continue
                if loaded.name in classes and classes[loaded.name] is not loaded:
                    warnings.append(
                        f"connector plugin {entry.name!r} redefines {loaded.name!r}; ignored"
                    )
                    continue
                classes[loaded.name] = loaded
        return cls(classes, warnings)

    def names(self) -> list[str]:
        return sorted(self._classes)

    def connector_class(self, name: str) -> type[Connector]:
        return self._classes[name]

    def lookup(self, ref: str) -> ActionSpec:
        """The action ``connector.action``.

        Raises:
            LookupError: with a message that suggests what was meant.
        """
        connector, _, action_name = ref.partition(".")
        if connector not in self._classes:
            raise LookupError(f"unknown connector {connector!r}{_suggest(connector, self.names())}")
        actions = self._classes[connector].actions()
        if action_name not in actions:
            hint = _suggest(action_name, sorted(actions))
            raise LookupError(f"connector {connector!r} has no action {action_name!r}{hint}")
        return actions[action_name]

    def specs(self) -> list[ActionSpec]:
        return [
            spec
            for name in self.names()
            for spec in sorted(self._classes[name].actions().values(), key=lambda s: s.name)
        ]


class ConnectorPool:
    """Live connector instances for one process, created on first use."""

    def __init__(
        self,
        registry: ConnectorRegistry,
        env: Mapping[str, str],
        *,
        register_secret: Callable[[str], None],
        sandbox_env: Mapping[str, str] | None = None,
    ) -> None:
        self.registry = registry
        self.env = dict(env)
        self.register_secret = register_secret
        self.sandbox_env = dict(sandbox_env or {})
        self._instances: dict[str, Connector] = {}

    def lookup(self, ref: str) -> ActionSpec:
        """The action spec of ``connector.action`` (LookupError if unknown)."""
        return self.registry.lookup(ref)

    def is_configured(self, name: str) -> bool:
        return self.registry.connector_class(name).is_configured(self._env_for(name))

    def is_sandboxed(self, name: str) -> bool:
        cls = self.registry.connector_class(name)
        return (
            bool(self.sandbox_env)
            and not cls.is_configured(self.env)
            and cls.is_configured(self._env_for(name))
        )

    def _env_for(self, name: str) -> dict[str, str]:
        cls = self.registry.connector_class(name)
        if self.sandbox_env and not cls.is_configured(self.env):
            merged = dict(self.env)
            merged.update(self.sandbox_env)
            return merged
        return self.env

    def instance(self, name: str) -> Connector:
        """The connector's instance, built from its settings on first use.

        Raises:
            NotConfiguredError: credentials are missing.
        """
        if name in self._instances:
            return self._instances[name]
        cls = self.registry.connector_class(name)
        env = self._env_for(name)
        try:
            settings = cls.settings_from_env(env)
        except ConfigError as exc:
            raise NotConfiguredError(str(exc), connector=name) from None
        for secret in secret_values(settings):
            self.register_secret(secret)
        runtime = ConnectorRuntime(
            register_secret=self.register_secret, sandbox=self.is_sandboxed(name)
        )
        instance = cls(settings, context=runtime)
        self._instances[name] = instance
        return instance

    def validate_args(self, spec: ActionSpec, args: Mapping[str, Any]) -> BaseModel:
        """Check rendered arguments against the action's input model.

        Raises:
            ConnectorError: (not retryable) naming each bad argument.
        """
        try:
            return spec.input_model.model_validate(dict(args))
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "arguments"
                problems.append(f"{where}: {err['msg']}")
            raise ConnectorError(
                f"bad arguments for {spec.ref}: " + "; ".join(problems), connector=spec.connector
            ) from None

    async def call(
        self, spec: ActionSpec, args: Mapping[str, Any], ctx: ActionContext
    ) -> dict[str, Any]:
        """Validate arguments, call the action and return its output as plain data."""
        model = self.validate_args(spec, args)
        instance = self.instance(spec.connector)
        ctx.sandbox = self.is_sandboxed(spec.connector)
        method = getattr(instance, spec.method)
        result = await method(ctx, model)
        return _plain_output(result, spec)

    def describe(self, spec: ActionSpec, args: Mapping[str, Any]) -> dict[str, Any] | None:
        """The request a mutating call would send, for dry runs (None if unknown)."""
        model = self.validate_args(spec, args)
        try:
            instance = self.instance(spec.connector)
        except NotConfiguredError:
            return None
        return instance.describe_call(spec, model)

    async def aclose(self) -> None:
        for instance in self._instances.values():
            await instance.aclose()
        self._instances.clear()


def _plain_output(result: Any, spec: ActionSpec) -> dict[str, Any]:
    if result is None:
        return {}
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", by_alias=True)
    if isinstance(result, Mapping):
        return dict(result)
    raise ConnectorError(
        f"{spec.ref} returned {type(result).__name__}, not an object", connector=spec.connector
    )
