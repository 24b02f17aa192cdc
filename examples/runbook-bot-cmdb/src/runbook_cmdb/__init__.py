"""Acme CMDB: an example Runbook Bot connector that lives in its own package.

The CMDB's REST API (made up for this example, shaped like most):

- ``GET /api/v1/assets?hostname=<name>`` → ``{"assets": [{"id", "hostname",
  "owner", "criticality", "tags"}]}``
- ``POST /api/v1/assets/{id}/tags`` with ``{"tag": "<tag>"}`` → 200 ``{"id", "tags"}``
  (adding a tag the asset already has changes nothing)
- ``Authorization: Token <token>``; errors ``{"error": "<message>"}``; 429
  with ``Retry-After`` seconds.

Settings: ``RUNBOOK_CMDB_BASE_URL`` and ``RUNBOOK_CMDB_TOKEN`` (plus the
``RUNBOOK_CMDB_CONNECT_TIMEOUT``/``_READ_TIMEOUT`` every HTTP connector has).
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from connectors.base import ActionContext, ActionInput, ActionOutput, action
from connectors.http_auth import Auth, HeaderAuth
from connectors.http_client import PlannedRequest
from connectors.vendor import HTTPConnector, HTTPSettings


class CMDBSettings(HTTPSettings):
    base_url: str  # no default: every customer has their own CMDB
    token: SecretStr  # SecretStr: registered for redaction, masked in dry runs


class FindAssetInput(ActionInput):
    hostname: str = Field(min_length=1, max_length=253)


class AssetOutput(ActionOutput):
    found: bool
    asset_id: str | None = None
    hostname: str
    owner: str | None = None
    criticality: str | None = Field(None, description="low, medium, high, crown-jewel")
    tags: list[str] = Field(default_factory=list)


class TagInput(ActionInput):
    asset_id: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    tag: str = Field(pattern=r"^[a-z0-9][a-z0-9:_-]{0,63}$")


class TagOutput(ActionOutput):
    asset_id: str
    tags: list[str]


class CMDB(HTTPConnector[CMDBSettings]):
    """Acme CMDB assets."""

    name = "cmdb"
    title = "Acme CMDB"
    Settings = CMDBSettings

    def make_auth(self) -> Auth:
        return HeaderAuth("Authorization", self.cfg.token, prefix="Token ")

    @action(input=FindAssetInput, output=AssetOutput)
    async def find_asset(self, ctx: ActionContext, args: FindAssetInput) -> AssetOutput:
        """Look an asset up by host name; found: false when the CMDB has none."""
        data = await self.send(
            PlannedRequest("GET", "/api/v1/assets", params={"hostname": args.hostname}), ctx
        )
        with self.reading("GET /api/v1/assets"):  # a missing key becomes a clear error
            assets = data["assets"]
            if not assets:
                return AssetOutput(found=False, hostname=args.hostname)
            asset = assets[0]
            return AssetOutput(
                found=True,
                asset_id=str(asset["id"]),
                hostname=asset["hostname"],
                owner=asset.get("owner"),
                criticality=asset.get("criticality"),
                tags=list(asset.get("tags") or []),
            )

    # A dry run shows what plan_<action> returns instead of sending it.
    def plan_tag_asset(self, args: TagInput, ctx: ActionContext | None) -> PlannedRequest:
        return PlannedRequest(
            "POST", f"/api/v1/assets/{args.asset_id}/tags", json={"tag": args.tag}
        )

    @action(input=TagInput, output=TagOutput, mutating=True, idempotent=True)
    async def tag_asset(self, ctx: ActionContext, args: TagInput) -> TagOutput:
        """Add a tag to an asset (adding it twice changes nothing)."""
        data = await self.send(self.plan_tag_asset(args, ctx), ctx)
        with self.reading(f"POST /api/v1/assets/{args.asset_id}/tags"):
            return TagOutput(asset_id=str(data["id"]), tags=list(data["tags"]))
