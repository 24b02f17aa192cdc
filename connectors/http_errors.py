"""Turning a vendor's HTTP answer into data or into one of our errors, once.

Every HTTP connector goes through :func:`check_response` (and
:func:`transport_error` for failures below HTTP), so the mapping is the same
everywhere:

========================================  =====================================
what happened                             what the engine gets
========================================  =====================================
connect timeout, refused, DNS failure     ``RetryableError``, ``no_effect``
read/write timeout, the whole request     ``RetryableError``
past its total deadline, reset, bad
protocol
TLS certificate not trusted, TLS spoken   ``ConnectorError`` naming the setting
to a plain port (configuration)           to fix (``…_CA_BUNDLE``, ``…_VERIFY_TLS``,
                                          the base URL's scheme)
an invalid URL or port                    ``ConnectorError`` "cannot send …"
HTTP 429, HTTP 503                        ``RetryableError``, ``no_effect`` (``retry_after``)
HTTP 500, 502, 504 and other 5xx          ``RetryableError`` (``retry_after`` if sent)
HTTP 401/403 on a credentialed request    ``AuthenticationError``
                                          ("authentication failed for <connector>: ...")
3xx (redirects are never followed)        ``ConnectorError`` "redirected to <Location>"
other 4xx                                 ``ConnectorError`` with the vendor's message
2xx that is HTML or malformed JSON        ``ConnectorError`` saying so
========================================  =====================================

``no_effect`` says the request surely was not acted on (it was never sent,
or the vendor refused it unprocessed), so the engine may repeat even an
action that is not idempotent; after any other failure the vendor may have
acted, and such an action is not repeated.

Retry hints differ per vendor; :class:`RetryHint` names the header and how
to read it (``Retry-After`` seconds or HTTP date, CrowdStrike's
``X-RateLimit-RetryAfter`` epoch seconds *or* milliseconds, Okta's
``X-Rate-Limit-Reset`` epoch seconds). Messages never contain request
headers or bodies, and pass through the connector's own secret mask.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from bot.errors import AuthenticationError, ConnectorError, RetryableError
from bot.redact import redact_url

MAX_MESSAGE = 300
SERVICE_UNAVAILABLE = 503
EPOCH_MILLISECONDS_ABOVE = 1e12


class HintKind(StrEnum):
    """How a rate-limit header says when to come back."""

    SECONDS_OR_DATE = "seconds-or-date"  # Retry-After: 120 / Retry-After: <HTTP date>
    EPOCH = "epoch"  # an absolute time in epoch seconds, or milliseconds above 1e12


@dataclass(frozen=True, slots=True)
class RetryHint:
    """One header that may say how long to wait before trying again."""

    header: str
    kind: HintKind = HintKind.SECONDS_OR_DATE


RETRY_AFTER = RetryHint("Retry-After")
CROWDSTRIKE_RETRY_AFTER = RetryHint("X-RateLimit-RetryAfter", HintKind.EPOCH)
OKTA_RATE_LIMIT_RESET = RetryHint("X-Rate-Limit-Reset", HintKind.EPOCH)


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP date)."""
    text = value.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def parse_epoch_reset(value: str, now: float) -> float | None:
    """Seconds until an epoch time in seconds, or in milliseconds when above 1e12."""
    try:
        stamp = float(value.strip())
    except ValueError:
        return None
    if stamp > EPOCH_MILLISECONDS_ABOVE:
        stamp /= 1000.0
    return max(0.0, stamp - now)


def retry_after(headers: Mapping[str, str], hints: Sequence[RetryHint], now: float) -> float | None:
    """The first usable wait among ``hints`` (header lookups are case-insensitive)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    for hint in hints:
        raw = lowered.get(hint.header.lower())
        if raw is None:
            continue
        if hint.kind is HintKind.EPOCH:
            seconds = parse_epoch_reset(raw, now)
        else:
            seconds = parse_retry_after(raw, now)
        if seconds is not None:
            return seconds
    return None


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        found: list[str] = []
        for item in value:
            found.extend(_texts(item))
        return found
    if isinstance(value, dict):
        for key in ("message", "detail", "title", "errorSummary", "error_description"):
            if isinstance(value.get(key), str) and value[key].strip():
                return [value[key]]
        return [f"{key}: {'; '.join(_texts(item))}" for key, item in value.items() if _texts(item)]
    return []


def vendor_message(data: Any, mask: Callable[[str], str] = lambda text: text) -> str | None:
    """The human message in a vendor's error body, whatever its envelope.

    Understands CrowdStrike/SentinelOne ``errors: [{message|detail|title}]``,
    Microsoft/VirusTotal/ServiceNow ``error: {code, message, detail}``, OAuth
    ``error`` + ``error_description``, Jira ``errorMessages`` + ``errors``,
    Okta ``errorSummary`` + ``errorCauses``, PagerDuty ``message`` +
    ``errors``, AWX ``detail`` and Slack ``error``. ``mask`` runs before the
    message is shortened, so that no cut secret escapes it.
    """
    if not isinstance(data, dict):
        return None
    parts: list[str] = []
    error = data.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        text = "; ".join(
            str(error[key]) for key in ("message", "detail") if error.get(key) not in (None, "")
        )
        parts.append(f"{code}: {text}" if code and text else str(text or code or ""))
    elif isinstance(error, str) and error:
        description = data.get("error_description")
        parts.append(f"{error}: {description}" if description else error)
    if isinstance(data.get("errorSummary"), str):
        code = data.get("errorCode")
        parts.append(f"{code}: {data['errorSummary']}" if code else data["errorSummary"])
        parts.extend(_texts(data.get("errorCauses")))
    errors = data.get("errors")
    if "errorMessages" in data:  # Jira: general messages plus {field: message}
        parts.extend(_texts(data["errorMessages"]))
        parts.extend(_texts(errors if isinstance(errors, dict) else None))
    elif errors and not parts:
        if isinstance(data.get("message"), str):
            parts.append(data["message"])
        parts.extend(_texts(errors))
    if not parts:
        for key in ("message", "detail", "title"):
            if isinstance(data.get(key), str) and data[key].strip():
                parts.append(data[key])
                break
    if not parts:
        # DRF-style field errors: {"extra_vars": ["..."]}
        field_errors = [
            f"{key}: {'; '.join(_texts(value))}"
            for key, value in data.items()
            if isinstance(value, list) and _texts(value)
        ]
        parts.extend(field_errors)
    text = "; ".join(part for part in parts if part)
    return shorten(mask(text)) if text else None


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """One line of at most ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def looks_like_html(content_type: str, text: str) -> bool:
    head = text.lstrip()[:64].lower()
    return "html" in content_type.lower() or head.startswith(("<!doctype", "<html", "<"))


@dataclass(frozen=True, slots=True)
class Answer:
    """A vendor's answer we accepted: status, headers, parsed JSON and text.

    Attributes:
        status: the HTTP status.
        headers: response headers (lower-case names).
        data: the parsed JSON body, or None when the body was empty.
        text: the body as text.
    """

    status: int
    headers: Mapping[str, str]
    data: Any
    text: str


@dataclass(frozen=True, slots=True)
class Exchange:
    """What we need to know about one request and its raw answer to judge it."""

    connector: str
    method: str
    path: str
    status: int
    headers: Mapping[str, str]
    text: str
    credentialed: bool


def describe_request(method: str, path: str) -> str:
    return f"{method} {path}"


def check_response(
    exchange: Exchange,
    *,
    accept: frozenset[int] = frozenset(),
    hints: Sequence[RetryHint] = (RETRY_AFTER,),
    now: float,
    mask: Callable[[str], str] = lambda text: text,
    want_json: bool = True,
) -> Answer:
    """Accept a 2xx (or an ``accept``-ed status) as an :class:`Answer`; raise otherwise.

    Raises:
        RetryableError: 429 or 5xx.
        AuthenticationError: 401/403 on a request that carried our credentials.
        ConnectorError: any other status, or a body that is HTML or malformed JSON.
    """
    name = exchange.connector
    status = exchange.status
    where = describe_request(exchange.method, exchange.path)
    content_type = exchange.headers.get("content-type", "")
    data, problem = _parse(content_type, exchange.text)
    accepted = 200 <= status < 300 or status in accept
    if accepted:
        if problem is not None and (want_json or problem.kind is BodyKind.MALFORMED):
            raise ConnectorError(
                f"{name}: {problem.text} (HTTP {status} on {where})",
                connector=name,
                status=status,
            )
        return Answer(status, exchange.headers, data, exchange.text)
    # mask, then shorten: a secret cut in two would escape the mask
    if problem is None:
        message = vendor_message(data, mask)
    elif problem.kind is BodyKind.TEXT:
        message = shorten(mask(exchange.text), 200)
    else:
        message = mask(problem.text)
    detail = message or "no message"

    if status == 429:
        wait = retry_after(exchange.headers, hints, now)
        hint = f"; retry after {wait:.0f}s" if wait is not None else ""
        raise RetryableError(
            f"{name}: rate limited (HTTP 429 on {where}): {detail}{hint}",
            retry_after=wait,
            connector=name,
            status=status,
            no_effect=True,
        )
    if status >= 500:
        raise RetryableError(
            f"{name}: server error (HTTP {status} on {where}): {detail}",
            retry_after=retry_after(exchange.headers, hints, now),
            connector=name,
            status=status,
            # 503: the service did not take the request on; 500/502/504 may
            # come after it was (partly) processed.
            no_effect=status == SERVICE_UNAVAILABLE,
        )
    if status in (401, 403) and exchange.credentialed:
        raise AuthenticationError(
            f"authentication failed for {name}: {detail} (HTTP {status} on {where})",
            connector=name,
            status=status,
        )
    location = exchange.headers.get("location")
    if 300 <= status < 400 and location:
        # Following would send our credentials to wherever the answer points;
        # the usual cause is an http:// base URL or the wrong regional host.
        detail = (
            f"redirected to {shorten(mask(redact_url(location)), 200)} "
            "(redirects are not followed; check the base URL setting)"
        )
    raise ConnectorError(
        f"{name}: HTTP {status} on {where}: {detail}", connector=name, status=status
    )


class BodyKind(StrEnum):
    """What a body that is not the JSON we expected turned out to be."""

    HTML = "html"
    TEXT = "text"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class BodyProblem:
    kind: BodyKind
    text: str


def _parse(content_type: str, text: str) -> tuple[Any, BodyProblem | None]:
    """(parsed JSON or None, what is wrong with the body if it is not JSON)."""
    if not text.strip():
        return None, None
    says_json = "json" in content_type.lower() or text.lstrip().startswith(("{", "["))
    if not says_json:
        if looks_like_html(content_type, text):
            return None, BodyProblem(BodyKind.HTML, "answered an HTML page instead of JSON")
        return None, BodyProblem(BodyKind.TEXT, "answered plain text instead of JSON")
    try:
        return json.loads(text), None
    except RecursionError:
        return None, BodyProblem(BodyKind.MALFORMED, "answered malformed JSON (nested too deeply)")
    except json.JSONDecodeError as exc:
        return None, BodyProblem(
            BodyKind.MALFORMED,
            f"answered malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
        )


def default_setting(connector: str) -> Callable[[str], str]:
    """``field`` → ``RUNBOOK_<CONNECTOR>_<FIELD>``, for hints in messages."""
    return lambda field: f"RUNBOOK_{connector.upper()}_{field.upper()}"


# OpenSSL reasons that mean TLS met something that does not speak TLS (an
# https:// URL to a plain-HTTP port) or a TLS it cannot agree with: trying
# again changes nothing.
PROTOCOL_MISMATCH = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "PACKET_LENGTH_TOO_LONG",
        "RECORD_LAYER_FAILURE",
        "HTTP_REQUEST",
        "UNSUPPORTED_PROTOCOL",
        "NO_PROTOCOLS_AVAILABLE",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "VERSION_TOO_LOW",
    }
)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (httpx → httpcore → ssl)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def tls_problem(
    connector: str, where: str, exc: BaseException, setting: Callable[[str], str]
) -> ConnectorError | None:
    """A permanent error for a TLS failure that is a configuration mistake, else None."""
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = shorten(cause.verify_message or cause.reason or str(cause), 120)
            return ConnectorError(
                f"{connector}: TLS certificate not trusted on {where}: {reason} "
                f"(set {setting('ca_bundle')} to the PEM file of the CA that signed it, "
                f"or {setting('verify_tls')}=false for a lab server)",
                connector=connector,
            )
        if isinstance(cause, ssl.SSLError) and cause.reason in PROTOCOL_MISMATCH:
            return ConnectorError(
                f"{connector}: TLS handshake failed on {where}: {cause.reason} "
                f"(the server does not speak TLS there: check the scheme, https:// or http://, "
                f"and the port of {setting('base_url')})",
                connector=connector,
            )
    return None


def transport_error(
    connector: str,
    method: str,
    path: str,
    exc: BaseException,
    *,
    setting: Callable[[str], str] | None = None,
) -> ConnectorError:
    """Map an httpx exception below HTTP (timeout, connection, TLS) to our error.

    Uses class names so that this module does not import httpx.
    """
    where = describe_request(method, path)
    setting = setting or default_setting(connector)
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    # Nothing of the request was sent when the connection (or a pooled one)
    # could not be had: connect timeout, refused, DNS, TLS handshake.
    unsent = bool({"ConnectTimeout", "PoolTimeout", "ConnectError"} & kinds)
    if "TimeoutException" in kinds:
        phase = {
            "ConnectTimeout": "connecting",
            "ReadTimeout": "waiting for the answer",
            "WriteTimeout": "sending the request",
            "PoolTimeout": "waiting for a free connection",
        }.get(type(exc).__name__, "")
        text = f" while {phase}" if phase else ""
        return RetryableError(
            f"{connector}: timed out{text} on {where}", connector=connector, no_effect=unsent
        )
    if {"UnsupportedProtocol", "InvalidURL", "LocalProtocolError"} & kinds:
        return cannot_send(connector, where, exc)
    tls = tls_problem(connector, where, exc, setting)
    if tls is not None:
        return tls
    reason = shorten(str(exc)) or type(exc).__name__
    return RetryableError(
        f"{connector}: connection failed on {where}: {reason}",
        connector=connector,
        no_effect=unsent,
    )


def cannot_send(connector: str, where: str, exc: BaseException) -> ConnectorError:
    """A permanent error for a request that cannot be sent (a bad URL or port)."""
    reason = shorten(str(exc)) or type(exc).__name__
    return ConnectorError(
        f"{connector}: cannot send {where}: {reason} (check the base URL setting)",
        connector=connector,
    )


def expect_shape(connector: str, what: str, exc: Exception) -> ConnectorError:
    """A permanent error for a JSON answer that lacks what we need."""
    if isinstance(exc, KeyError):
        detail = f"missing {exc}"
    elif isinstance(exc, (TypeError, AttributeError)) and (found := _wrong_type(exc)):
        detail = f"expected an object, got {found}"
    else:
        detail = shorten(str(exc))
    return ConnectorError(
        f"{connector}: unexpected answer to {what}: {detail}", connector=connector
    )


def json_kind(value: Any) -> str:
    """How a JSON value is called in messages: null, a list, a string ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _wrong_type(exc: Exception) -> str | None:
    """What JSON value an action indexed as an object, from Python's own wording.

    ``None["x"]``, ``[...]["x"]`` and ``None.get`` are what reading a vendor's
    answer raises when a key holds null or a list where we expect an object.
    """
    text = str(exc)
    for python, json_name in (
        ("'NoneType' object", "null"),
        ("list indices must be", "a list"),
        ("'list' object", "a list"),
        ("string indices must be", "a string"),
        ("'str' object", "a string"),
        ("'int' object", "a number"),
        ("'float' object", "a number"),
        ("'bool' object", "a boolean"),
    ):
        if text.startswith(python):
            return json_name
    return None
