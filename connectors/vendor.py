"""The base of connectors that speak a vendor's HTTP API.

An :class:`HTTPConnector` gets its settings (``base_url``, credentials,
``connect_timeout``/``read_timeout``/``total_timeout``, ``max_answer_mib``,
``verify_tls``, ``ca_bundle``) from
``RUNBOOK_<CONNECTOR>_<FIELD>``, owns one :class:`~connectors.http_client.VendorHTTP`
and closes it in :meth:`aclose`. Each action builds its request in a
``plan_<action>(args, ctx)`` method and sends it; :meth:`describe_call` uses
the same method to show a dry run the request it would send, secrets masked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Generic, TypeVar, cast

from pydantic import BaseModel, Field, SecretStr

from connectors.base import (
    ActionContext,
    ActionSpec,
    Connector,
    ConnectorRuntime,
    ConnectorSettings,
)
from connectors.http_auth import Auth
from connectors.http_client import MIB, PlannedRequest, Timeouts, VendorHTTP
from connectors.http_errors import RETRY_AFTER, RetryHint, expect_shape

DRY_RUN_KEY = "<idempotency key of the step>"


class HTTPSettings(ConnectorSettings):
    """Settings every HTTP connector has besides its base URL and credentials.

    Subclasses add ``base_url`` (with the vendor's default where there is one
    for everybody, required where every customer has their own host).
    """

    connect_timeout: float = Field(5.0, gt=0, le=300, description="seconds to connect")
    read_timeout: float = Field(
        30.0, gt=0, le=3600, description="seconds to wait for (each part of) an answer"
    )
    total_timeout: float = Field(
        60.0,
        gt=0,
        le=86400,
        description="seconds one whole request may take, however slowly its answer comes",
    )
    max_answer_mib: float = Field(
        16.0, gt=0, le=1024, description="MiB of an answer read at most (larger ones fail)"
    )
    verify_tls: bool = True
    ca_bundle: str | None = None


S = TypeVar("S", bound=HTTPSettings)


class HTTPConnector(Connector, Generic[S]):
    """A connector with one shared HTTP client; subclasses say how to authenticate."""

    retry_hints: ClassVar[tuple[RetryHint, ...]] = (RETRY_AFTER,)
    base_url_setting: ClassVar[str] = "base_url"

    def __init__(self, settings: ConnectorSettings, *, context: ConnectorRuntime) -> None:
        super().__init__(settings, context=context)
        self.cfg: S = cast(S, settings)
        secrets = {
            value.get_secret_value()
            for name in type(settings).model_fields
            if isinstance(value := getattr(settings, name), SecretStr)
        }
        self.http = VendorHTTP(
            connector=self.name,
            base_url=str(getattr(settings, self.base_url_setting, "") or ""),
            auth=None,
            timeouts=Timeouts(
                connect=self.cfg.connect_timeout,
                read=self.cfg.read_timeout,
                total=self.cfg.total_timeout,
            ),
            hints=self.retry_hints,
            register_secret=context.register_secret,
            user_agent=context.user_agent,
            verify_tls=self.cfg.verify_tls,
            ca_bundle=self.cfg.ca_bundle,
            secrets=secrets,
            max_answer_bytes=int(self.cfg.max_answer_mib * MIB),
            setting=self.setting_name,
        )
        self.http.auth = self.make_auth()

    @classmethod
    def setting_name(cls, field_name: str) -> str:
        """The variable of a setting; ``base_url`` names the one this connector has."""
        if field_name == "base_url":
            field_name = cls.base_url_setting
        return cls.env_name(field_name)

    def make_auth(self) -> Auth | None:
        """How requests are authenticated (None: the credential travels in the body)."""
        return None

    async def send(self, request: PlannedRequest, ctx: ActionContext | None = None) -> Any:
        """Send ``request``; the answer's parsed JSON body (None when empty)."""
        return (await self.http.send(request, ctx)).data

    @contextmanager
    def reading(self, what: str) -> Iterator[None]:
        """Turn a missing key or wrong type in a vendor's answer into a clear error."""
        try:
            yield
        except (KeyError, TypeError, IndexError, ValueError, AttributeError) as exc:
            raise expect_shape(self.name, what, exc) from None

    async def aclose(self) -> None:
        await self.http.aclose()

    def describe_call(self, spec: ActionSpec, args: BaseModel) -> dict[str, Any] | None:
        planner = getattr(self, f"plan_{spec.name}", None)
        if planner is None:
            return None
        request: PlannedRequest = planner(args, None)
        return self.http.describe(request)


def idempotency_key(ctx: ActionContext | None) -> str:
    """The step's idempotency key (a placeholder in dry runs, which have no call context)."""
    return ctx.idempotency_key if ctx is not None else DRY_RUN_KEY


def run_note(ctx: ActionContext | None) -> str:
    """A comment that ties a vendor-side action to the run that made it."""
    if ctx is None:
        return "Runbook Bot run <run id>, step <step id>"
    return f"Runbook Bot run {ctx.run_id}, step {ctx.step_id}"
