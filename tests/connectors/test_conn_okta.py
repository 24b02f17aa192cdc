"""okta.* against the fake Okta org."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import ConnectorError
from bot.sandbox import Sandbox


async def test_find_user_by_login_or_id(vendor: Any, sandbox: Sandbox) -> None:
    by_login = await vendor.call("okta.find_user", login="alice@example.com")
    assert by_login == {
        "found": True,
        "user_id": "00u1alice0000000001",
        "login": "alice@example.com",
        "email": "alice@example.com",
        "status": "ACTIVE",
    }
    by_id = await vendor.call("okta.find_user", login="00u1alice0000000001")
    assert by_id == by_login
    assert sandbox.okta.calls[0].headers["authorization"].startswith("SSWS ")


async def test_an_unknown_user_is_found_false(vendor: Any) -> None:
    out = await vendor.call("okta.find_user", login="mallory@example.com")
    assert out["found"] is False and out["user_id"] is None


async def test_a_login_cannot_escape_the_users_path(vendor: Any, sandbox: Sandbox) -> None:
    with pytest.raises(ConnectorError, match=r"bad arguments for okta\.find_user: login"):
        await vendor.call("okta.find_user", login="../groups/00g1")
    assert sandbox.okta.calls == []


async def test_suspend_is_idempotent(vendor: Any, sandbox: Sandbox) -> None:
    user = sandbox.okta.user("bob@example.com")
    first = await vendor.call("okta.suspend_user", user_id=user.id)
    assert first == {"user_id": user.id, "status": "SUSPENDED", "changed": True}
    assert user.status == "SUSPENDED"
    second = await vendor.call("okta.suspend_user", user_id=user.id)
    assert second == {"user_id": user.id, "status": "SUSPENDED", "changed": False}


async def test_suspending_a_deprovisioned_user_carries_oktas_message(
    vendor: Any, sandbox: Sandbox
) -> None:
    user = sandbox.okta.user("carol@example.com")
    user.status = "DEPROVISIONED"
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("okta.suspend_user", user_id=user.id)
    assert "Cannot suspend a user that is not active" in str(caught.value)
    assert not caught.value.retryable


async def test_clear_sessions(vendor: Any, sandbox: Sandbox) -> None:
    user = sandbox.okta.user("alice@example.com")
    out = await vendor.call("okta.clear_sessions", user_id=user.id, revoke_oauth_tokens=True)
    assert out == {"user_id": user.id, "cleared": True}
    assert user.sessions == 0
    (call,) = sandbox.okta.calls_to("/sessions", "DELETE")
    assert call.param("oauthTokens") == "true"


async def test_clearing_sessions_of_an_unknown_user(vendor: Any) -> None:
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("okta.clear_sessions", user_id="00u0nobody")
    assert caught.value.status == 404
    assert "E0000007" in str(caught.value)


async def test_rate_limit_reset_header(vendor: Any, sandbox: Sandbox) -> None:
    sandbox.okta.rate_limit(retry_after=40)
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("okta.find_user", login="alice@example.com")
    assert caught.value.retry_after is not None
    assert 38.5 <= caught.value.retry_after <= 40
