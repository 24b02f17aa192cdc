"""Keeping secrets out of everything we write or show.

One process-wide :data:`REDACTOR` knows every secret value: configured
credentials (Slack, API tokens, alert secrets, connector settings) and tokens
obtained with them at run time. Audit records, command output, chat messages
and log lines pass through it on the way out.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, SecretStr

MASK = "***"
MIN_SECRET_LENGTH = 4
WEAK_SECRET_LENGTH = 16  # shorter API tokens and alert secrets are taken, with a warning
_SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|API_KEY|ROUTING_KEY|PRIVATE_KEY)", re.I)


class Redactor:
    """Replaces known secret values with ``***``."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._serialised: re.Pattern[str] | None = None  # secrets as they appear in JSON
        self._lock = threading.Lock()

    def add(self, value: str | SecretStr | None) -> None:
        """Remember a secret value (short values are ignored: they would mask everything)."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not value or len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if value in self._secrets:
                return
            self._secrets.add(value)
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))
            # In serialised JSON a secret may appear escaped (quotes, backslashes,
            # control characters): look for both forms there.
            forms = {s for secret in ordered for s in (secret, _json_form(secret))}
            self._serialised = re.compile(
                "|".join(re.escape(s) for s in sorted(forms, key=len, reverse=True))
            )

    def add_settings(self, settings: BaseModel, env: Mapping[str, str]) -> None:
        """Register every secret in the settings and every secret-looking variable."""
        for name in type(settings).model_fields:
            value = getattr(settings, name)
            if isinstance(value, SecretStr):
                self.add(value)
            elif isinstance(value, dict):
                for item in value.values():
                    if isinstance(item, SecretStr):
                        self.add(item)
        for key, value in env.items():
            if (key.startswith("RUNBOOK_") or key.startswith("SLACK_")) and _SECRET_NAME.search(
                key
            ):
                self.add(value)

    def text(self, value: str) -> str:
        pattern = self._pattern
        if pattern is None:
            return value
        return pattern.sub(MASK, value)

    def contains_secret(self, value: str) -> bool:
        """Whether ``value`` (plain text or serialised JSON) holds a secret in any form."""
        pattern = self._serialised
        return pattern is not None and pattern.search(value) is not None

    def value(self, value: Any) -> Any:
        """Redact strings anywhere inside dicts, lists and tuples."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(item) for item in value]
        return value

    def clear(self) -> None:
        """Forget every secret (tests)."""
        with self._lock:
            self._secrets.clear()
            self._pattern = None
            self._serialised = None


def _json_form(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


REDACTOR = Redactor()


def redact_text(value: str) -> str:
    return REDACTOR.text(value)


_SECRET_PARAM = re.compile(
    r"(secret|token|password|passwd|pwd|key|sig|signature|auth|credential|session|code)", re.I
)


def redact_url(url: str) -> str:
    """``url`` fit to show: user and password, and secret-looking query values, masked.

    For URLs a vendor sends us (a redirect's ``Location``), which may carry
    credentials we never registered: ``https://user:pw@host/?token=x`` →
    ``https://***@host/?token=***``. Known secrets are masked too.
    """
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTOR.text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(name, MASK if _SECRET_PARAM.search(name) else value) for name, value in pairs],
            safe="*",
        )
    fragment = MASK if "=" in parts.fragment else parts.fragment  # OAuth: #access_token=…
    return REDACTOR.text(urlunsplit((parts.scheme, netloc, parts.path, query, fragment)))
