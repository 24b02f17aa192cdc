"""Keeping secrets out of everything we write or show.

One process-wide :data:`REDACTOR` knows every secret value: configured
credentials (Slack, API tokens, alert secrets, connector settings) and tokens
obtained with them at run time. Audit records, command output, chat messages
and log lines pass through it on the way out.

Each secret is also known in the forms it takes on the way to a vendor and
back: JSON-escaped (quotes, backslashes, non-ASCII) and URL-encoded (``quote``
and ``quote_plus``, as in a form body), and as chat markup shows data (``&``,
``<`` and ``>`` escaped). A secret that something cut short
(a prefix of at least :data:`MIN_CUT_PREFIX` characters right before ``…``
or ``...``) is masked too, so that a truncation done before redaction cannot
leak its first part. Every truncation in the product happens after masking and
marks the cut; a prefix at the plain end of a text is left alone, so that an
identifier which happens to end like a secret begins (hex ids, hex keys) is
never damaged.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, SecretStr

MASK = "***"
MIN_SECRET_LENGTH = 4
MIN_CUT_PREFIX = 8  # a shorter piece of a secret before a cut is left alone
WEAK_SECRET_LENGTH = 16  # shorter API tokens and alert secrets are taken, with a warning
_CUT = re.compile(r"…|\.\.\.|\\u2026")  # also "…" in ASCII-only JSON
_SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|API_KEY|ROUTING_KEY|PRIVATE_KEY)", re.I)


class Redactor:
    """Replaces known secret values with ``***``."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._forms: tuple[str, ...] = ()  # every form of every secret, longest first
        self._pattern: re.Pattern[str] | None = None
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
            forms = {form for secret in self._secrets for form in _forms(secret)}
            self._forms = tuple(sorted(forms, key=len, reverse=True))
            self._pattern = re.compile("|".join(re.escape(form) for form in self._forms))

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
        return _mask_cut(pattern.sub(MASK, value), self._forms)

    def contains_secret(self, value: str) -> bool:
        """Whether ``value`` (plain text or serialised JSON) holds a secret in any form."""
        pattern = self._pattern
        if pattern is None:
            return False
        return pattern.search(value) is not None or _mask_cut(value, self._forms) != value

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
            self._forms = ()
            self._pattern = None


def _forms(secret: str) -> set[str]:
    """``secret`` as written, JSON-escaped, URL-encoded and escaped for chat markup."""
    # as data in a Slack prompt or notice is: & < > escaped (then maybe JSON-escaped)
    markup = secret.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    forms = {
        secret,
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(secret)[1:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        markup,
        json.dumps(markup, ensure_ascii=False)[1:-1],
        json.dumps(markup)[1:-1],
    }
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def _cut_prefix(text: str, end: int, secret: str) -> int:
    """The length of the longest proper prefix of ``secret`` that ends at ``text[end]``."""
    if end < MIN_CUT_PREFIX or len(secret) <= MIN_CUT_PREFIX:
        return 0
    tail = text[end - MIN_CUT_PREFIX : end]
    best = 0
    found = secret.find(tail, 0, len(secret) - 1)
    while found != -1:
        length = found + MIN_CUT_PREFIX
        if length > best and text.startswith(secret[:length], end - length):
            best = length
        found = secret.find(tail, found + 1, len(secret) - 1)
    return best


def _mask_cut(text: str, forms: tuple[str, ...]) -> str:
    """``text`` with any piece of a secret cut short before ``…`` or ``...`` masked."""
    ends = [match.start() for match in _CUT.finditer(text)]
    for end in reversed(ends):  # from the right: earlier positions stay valid
        length = max((_cut_prefix(text, end, form) for form in forms), default=0)
        if length:
            text = text[: end - length] + MASK + text[end:]
    return text


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
