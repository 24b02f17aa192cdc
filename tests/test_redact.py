"""The redactor masks secrets in every form they take, also when cut short."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus, urlencode

from bot.redact import Redactor

CS_SECRET = "csSECRET+/=&x?y#1234567890"
JIRA = 'jiraTOKEN"quote\\back-é-1234567890'
OKTA = "okta-SSWS-TOKEN-0123456789abcdefghijklmnopqrstuvwxyz"


def redactor() -> Redactor:
    r = Redactor()
    for secret in (CS_SECRET, JIRA, OKTA):
        r.add(secret)
    return r


def test_url_encoded_and_json_escaped_secrets_are_masked() -> None:
    r = redactor()
    body = urlencode({"client_id": "cs-id", "client_secret": CS_SECRET})
    assert r.text(f"bad request: {body}") == "bad request: client_id=cs-id&client_secret=***"
    for form in (quote(CS_SECRET, safe=""), quote_plus(CS_SECRET), quote(CS_SECRET)):
        assert r.text(f"x {form} y") == "x *** y"
        assert r.contains_secret(json.dumps({"m": f"x {form}"}))
    for text in (json.dumps(JIRA), json.dumps(JIRA, ensure_ascii=False)):
        assert r.text(text) == '"***"'


def test_a_secret_escaped_for_chat_markup_is_masked() -> None:
    from bot.runbook.templates import escape_markup, render_string

    r = redactor()
    r.add("pw<with>&angles")
    for secret in (CS_SECRET, "pw<with>&angles"):
        markup = render_string("*key* {{ s }}!", {"s": secret}, escape=escape_markup)
        assert markup != f"*key* {secret}!"  # the data was escaped ...
        assert r.text(markup) == "*key* ***!"  # ... and is still masked
        assert r.text(json.dumps({"m": markup})) == json.dumps({"m": "*key* ***!"})


def test_a_secret_cut_short_is_masked() -> None:
    r = redactor()
    for length in (8, 17, 47, len(OKTA) - 1):
        assert r.text(f"SSWS {OKTA[:length]}… (HTTP 401)") == "SSWS ***… (HTTP 401)"
        assert r.text(f"SSWS {OKTA[:length]}...") == "SSWS ***..."
        assert r.contains_secret(f'{{"error": "SSWS {OKTA[:length]}…"}}')
    assert r.text(json.dumps(f"k={quote_plus(CS_SECRET)[:20]}…")) == '"k=***\\u2026"'


def test_ordinary_text_is_left_alone() -> None:
    r = redactor()
    # a prefix without a cut mark is an identifier that begins like a secret ends: kept
    for text in ("wait… then go...", "okta-SS… is short", "ok…", "", "csSEC… is five", OKTA[:20]):
        assert r.text(text) == text
        assert not r.contains_secret(text)
