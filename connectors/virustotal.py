"""VirusTotal v3: what the security vendors say about a file hash, an IP or a domain.

Settings: ``RUNBOOK_VIRUSTOTAL_API_KEY`` (sent as ``x-apikey``) and optionally
``RUNBOOK_VIRUSTOTAL_BASE_URL`` (default ``https://www.virustotal.com/api/v3``).

Every report has ``found``, the ``last_analysis_stats`` counts
(``malicious``, ``suspicious``, ``harmless``, ``undetected``) and the
community ``reputation``. An indicator VirusTotal has never seen (its 404
``NotFoundError``) is ``found: false`` with zero counts: a normal answer, not
a failure. The public API allows 4 requests a minute; its 429
(``QuotaExceededError``) carries no retry header, so the step's own retry
policy decides the wait.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, SecretStr

from connectors.base import ActionContext, ActionInput, ActionOutput, action
from connectors.http_auth import Auth, HeaderAuth
from connectors.http_client import PlannedRequest
from connectors.vendor import HTTPConnector, HTTPSettings

HASH = r"^([0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64})$"
_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
GUI = "https://www.virustotal.com/gui"


def _ip(value: str) -> str:
    return str(ipaddress.ip_address(value.strip()))


def _domain(value: str) -> str:
    name = value.strip().rstrip(".").lower()
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"not a domain name: {value!r}")
    return name


class VirusTotalSettings(HTTPSettings):
    base_url: str = "https://www.virustotal.com/api/v3"
    api_key: SecretStr


class FileInput(ActionInput):
    hash: str = Field(pattern=HASH, description="MD5, SHA-1 or SHA-256")


class IPInput(ActionInput):
    ip: Annotated[str, AfterValidator(_ip)] = Field(description="IPv4 or IPv6 address")


class DomainInput(ActionInput):
    domain: Annotated[str, AfterValidator(_domain)]


class ReportOutput(ActionOutput):
    found: bool
    indicator: str
    type: str
    malicious: int = 0
    suspicious: int = 0
    harmless: int = 0
    undetected: int = 0
    reputation: int = 0
    link: str


class VirusTotal(HTTPConnector[VirusTotalSettings]):
    """VirusTotal reputation look-ups."""

    name = "virustotal"
    title = "VirusTotal"
    Settings = VirusTotalSettings

    def make_auth(self) -> Auth:
        return HeaderAuth("x-apikey", self.cfg.api_key)

    async def _report(
        self, path: str, indicator: str, kind: str, gui: str, ctx: ActionContext
    ) -> ReportOutput:
        answer = await self.http.send(PlannedRequest("GET", path, accept=frozenset({404})), ctx)
        link = f"{GUI}/{gui}/{indicator}"
        if answer.status == 404:
            return ReportOutput(found=False, indicator=indicator, type=kind, link=link)
        with self.reading(f"GET {path}"):
            attributes: dict[str, Any] = answer.data["data"]["attributes"]
            stats = attributes.get("last_analysis_stats") or {}
            return ReportOutput(
                found=True,
                indicator=indicator,
                type=kind,
                malicious=int(stats.get("malicious", 0)),
                suspicious=int(stats.get("suspicious", 0)),
                harmless=int(stats.get("harmless", 0)),
                undetected=int(stats.get("undetected", 0)),
                reputation=int(attributes.get("reputation", 0)),
                link=link,
            )

    @action(input=FileInput, output=ReportOutput)
    async def file_report(self, ctx: ActionContext, args: FileInput) -> ReportOutput:
        """What VirusTotal knows about a file hash."""
        indicator = args.hash.lower()
        return await self._report(f"/files/{indicator}", indicator, "file", "file", ctx)

    @action(input=IPInput, output=ReportOutput)
    async def ip_report(self, ctx: ActionContext, args: IPInput) -> ReportOutput:
        """What VirusTotal knows about an IP address."""
        return await self._report(
            f"/ip_addresses/{args.ip}", args.ip, "ip_address", "ip-address", ctx
        )

    @action(input=DomainInput, output=ReportOutput)
    async def domain_report(self, ctx: ActionContext, args: DomainInput) -> ReportOutput:
        """What VirusTotal knows about a domain."""
        return await self._report(f"/domains/{args.domain}", args.domain, "domain", "domain", ctx)
