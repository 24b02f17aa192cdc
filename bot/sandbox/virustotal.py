"""A fake VirusTotal v3 API: file, IP address and domain reports.

``x-apikey`` header (401 ``WrongCredentialsError`` otherwise). Known
indicators answer ``{"data": {"id", "type", "attributes":
{"last_analysis_stats", "reputation", …}}}``; unknown ones 404
``NotFoundError``. A 429 is ``QuotaExceededError`` without a retry header,
as VirusTotal answers.

Seeded: the EICAR test file (malicious), a clean hash, ``evil.example`` and
``203.0.113.66`` (malicious), ``example.com`` (harmless). :meth:`FakeVirusTotal.add`
adds more.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute

from bot.sandbox.fake import FakeRequest, FakeVendor, Fault, json_response, new_secret

EICAR_SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
EICAR_MD5 = "44d88612fea8a8f36de82e1278abb02f"
CLEAN_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
KIND_PATHS = {"files": "file", "ip_addresses": "ip_address", "domains": "domain"}


def stats(malicious: int, suspicious: int, harmless: int, undetected: int) -> dict[str, int]:
    return {
        "malicious": malicious,
        "suspicious": suspicious,
        "harmless": harmless,
        "undetected": undetected,
        "timeout": 0,
    }


class FakeVirusTotal(FakeVendor):
    """Fake VirusTotal."""

    name = "virustotal"

    def default_credentials(self) -> dict[str, str]:
        return {"api_key": new_secret("vt-key-", 64)}

    def seed(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.add("file", EICAR_SHA256, stats(62, 1, 0, 8), reputation=-95, aliases=[EICAR_MD5])
        self.add("file", CLEAN_SHA256, stats(0, 0, 0, 71), reputation=0)
        self.add("domain", "evil.example", stats(14, 3, 50, 24), reputation=-38)
        self.add("domain", "example.com", stats(0, 0, 70, 21), reputation=18)
        self.add("ip_address", "203.0.113.66", stats(9, 2, 55, 26), reputation=-12)
        self.add("ip_address", "198.51.100.7", stats(0, 0, 60, 32), reputation=0)

    def add(
        self,
        kind: str,
        indicator: str,
        analysis: dict[str, int],
        *,
        reputation: int = 0,
        aliases: list[str] | None = None,
    ) -> None:
        """Make an indicator known (``kind``: file, ip_address or domain)."""
        record = {
            "id": indicator,
            "type": kind,
            "links": {"self": f"https://www.virustotal.com/api/v3/{kind}s/{indicator}"},
            "attributes": {
                "last_analysis_stats": analysis,
                "reputation": reputation,
                "last_analysis_date": 1763800000,
            },
        }
        with self._lock:
            for key in [indicator, *(aliases or [])]:
                self.objects[(kind, key.lower())] = record

    def env(self, base: str) -> dict[str, str]:
        return {
            "RUNBOOK_VIRUSTOTAL_BASE_URL": base,
            "RUNBOOK_VIRUSTOTAL_API_KEY": self.credentials["api_key"],
        }

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        return json_response(
            {"error": {"code": code or "InternalError", "message": message}}, status
        )

    def rate_limited(self, fault: Fault) -> Response:
        return self.error(429, "Quota exceeded", "QuotaExceededError")

    def token_expired(self) -> Response:
        return self.error(401, "Wrong API key", "WrongCredentialsError")

    async def authenticate(self, request: FakeRequest) -> Response | None:
        key = request.headers.get("x-apikey")
        if key is None:
            return self.error(401, "API key is missing", "AuthenticationRequiredError")
        if key != self.credentials["api_key"]:
            return self.token_expired()
        return None

    def routes(self) -> list[BaseRoute]:
        return [self.route("/{collection}/{indicator}", self._get, ["GET"])]

    async def _get(self, request: FakeRequest) -> Response:
        kind = KIND_PATHS.get(request.path_params["collection"])
        if kind is None:
            return self.error(404, "Resource not found", "NotFoundError")
        indicator = request.path_params["indicator"].lower()
        with self._lock:
            record = self.objects.get((kind, indicator))
        if record is None:
            label = {"file": "File", "ip_address": "IP address", "domain": "Domain"}[kind]
            return self.error(404, f'{label} "{indicator}" not found', "NotFoundError")
        return json_response({"data": record})
