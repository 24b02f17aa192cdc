"""A fake Slack Web API that records every call, for the chat adapter and the ``slack`` connector.

Mounted at ``<sandbox>/slack``; point ``RUNBOOK_SLACK_API_URL`` at
``<sandbox>/slack/api/`` (``Sandbox.env`` does). Every method is
``POST /api/<method>`` (GET works too) with a JSON or form body and
``Authorization: Bearer xoxb-…`` (or a ``token`` argument). Like Slack, it
answers HTTP 200 ``{"ok": false, "error": …}`` for failures: ``not_authed``,
``invalid_auth``, ``channel_not_found``, ``not_in_channel``,
``message_not_found``, ``no_text``, ``expired_trigger_id`` …; rate limiting
is HTTP 429 ``{"ok": false, "error": "ratelimited"}`` with ``Retry-After``.

Served: ``auth.test``, ``chat.postMessage``, ``chat.update``,
``chat.postEphemeral``, ``chat.delete``, ``chat.getPermalink``,
``views.open``/``views.update``/``views.push``, ``usergroups.list``,
``usergroups.users.list``, ``users.info``, ``users.list``,
``conversations.info``/``list``/``members``/``join``/``open``/``history``/``replies``.
``POST /response/<key>`` stands in for the ``response_url`` Slack puts in
slash commands and clicks (``https://hooks.slack.com/...``): bodies posted
there are recorded under ``<key>``.

For tests::

    slack = sandbox.slack
    slack.fail("chat.postMessage", "channel_not_found")   # the next call fails so
    slack.rate_limit(retry_after=3, match="chat.update")  # the next chat.update is a 429
    slack.api_calls("chat.postMessage")                   # [SlackCall(method, args, ...)]
    slack.messages("soc-incidents")                       # what the channel shows now
    slack.wait_for("chat.postMessage", count=2)           # block until two arrived
    slack.wait_until(lambda: ..., timeout=10)             # block until handled calls satisfy it
    slack.responses("r1")                                 # bodies posted to <mount>/response/r1
    headers = slack.sign(body)                            # signed like Slack, for the app

Seeded workspace ``T0SANDBOX``: the bot ``U0RUNBOOK``; people ``U024BE7LH``
(alice), ``U0BOB`` (bob), ``U0CAROL`` (carol), ``U0DAVE`` (dave); user groups
``soc`` (everyone), ``soc-leads`` (alice, carol), ``soc-managers`` (carol);
channels ``#soc-incidents``, ``#soc-leads``, ``#ops`` (bot is a member) and
``#general`` (it is not).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute

from bot.sandbox.fake import FakeRequest, FakeVendor, Fault, bearer, json_response, new_secret
from bot.sandbox.slack_workspace import (
    BOT_ID,
    BOT_USER,
    TEAM_ID,
    Channel,
    SlackCall,
    SlackError,
    arguments,
)


class FakeSlack(FakeVendor):
    """Fake Slack Web API (see the module docstring)."""

    name = "slack"

    def default_credentials(self) -> dict[str, str]:
        return {
            "bot_token": new_secret("xoxb-sandbox-", 40),
            "signing_secret": new_secret("slack-signing-", 32),
        }

    @property
    def bot_token(self) -> str:
        return self.credentials["bot_token"]

    @property
    def signing_secret(self) -> str:
        return self.credentials["signing_secret"]

    def seed(self) -> None:
        self._ts = itertools.count(1)
        self.failures: dict[str, list[str]] = {}
        self.slack_calls: list[SlackCall] = []
        self.users: dict[str, dict[str, Any]] = {}
        for uid, name, real in [
            (BOT_USER, "runbook-bot", "Runbook Bot"),
            ("U024BE7LH", "alice", "Alice Analyst"),
            ("U0BOB", "bob", "Bob Builder"),
            ("U0CAROL", "carol", "Carol Chief"),
            ("U0DAVE", "dave", "Dave Duty"),
        ]:
            self.add_user(uid, name, real)
        people = ["U024BE7LH", "U0BOB", "U0CAROL", "U0DAVE"]
        self.usergroups: dict[str, dict[str, Any]] = {}
        self.add_usergroup("soc", people, group_id="S0SOC")
        self.add_usergroup("soc-leads", ["U024BE7LH", "U0CAROL"], group_id="S0SOCLEADS")
        self.add_usergroup("soc-managers", ["U0CAROL"], group_id="S0SOCMGR")
        self.channels: dict[str, Channel] = {}
        self.add_channel("soc-incidents", members=people, channel_id="C0SOCINC")
        self.add_channel("soc-leads", members=["U024BE7LH", "U0CAROL"], channel_id="C0SOCLEAD")
        self.add_channel("ops", members=people, channel_id="C0OPS")
        self.add_channel("general", members=people, member=False, channel_id="C0GENERAL")
        self.views: dict[str, dict[str, Any]] = {}
        self.response_posts: list[tuple[str, Any]] = []

    # -- state helpers (tests) ---------------------------------------------

    def add_user(self, user_id: str, name: str, real_name: str = "") -> None:
        with self._lock:
            self.users[user_id] = {
                "id": user_id,
                "team_id": TEAM_ID,
                "name": name,
                "real_name": real_name or name,
                "is_bot": user_id == BOT_USER,
                "deleted": False,
                "profile": {"display_name": name, "real_name": real_name or name},
            }

    def add_usergroup(self, handle: str, users: list[str], *, group_id: str | None = None) -> str:
        with self._lock:
            gid = group_id or "S0" + handle.upper().replace("-", "")[:9]
            self.usergroups[gid] = {
                "id": gid,
                "team_id": TEAM_ID,
                "handle": handle,
                "name": handle.replace("-", " ").title(),
                "users": list(users),
                "user_count": len(users),
                "date_delete": 0,
            }
            return gid

    def add_channel(
        self,
        name: str,
        *,
        members: list[str] | None = None,
        member: bool = True,
        channel_id: str | None = None,
    ) -> str:
        with self._lock:
            cid = channel_id or "C0" + name.upper().replace("-", "")[:9]
            self.channels[cid] = Channel(cid, name, is_member=member, members=list(members or []))
            return cid

    def channel(self, ref: str) -> Channel | None:
        """A channel by id, name or ``#name``."""
        with self._lock:
            if ref in self.channels:
                return self.channels[ref]
            name = ref.removeprefix("#")
            return next((c for c in self.channels.values() if c.name == name), None)

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """The messages a channel shows now (updates applied, deletions gone)."""
        found = self.channel(channel)
        with self._lock:
            return [dict(m) for m in found.messages] if found else []

    def fail(self, method: str, error: str, *, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer ``{"ok": false, "error": error}``."""
        with self._lock:
            self.failures.setdefault(method, []).extend([error] * times)

    def api_calls(self, method: str | None = None) -> list[SlackCall]:
        with self._lock:
            return [c for c in self.slack_calls if method is None or c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> list[SlackCall]:
        """Block until ``count`` calls of ``method`` arrived; returns them."""
        self.wait_for_calls(f"/api/{method}", count, timeout)
        return self.api_calls(method)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Block until ``predicate()`` holds, re-checked after every handled call.

        Raises:
            TimeoutError: it did not hold within ``timeout`` seconds.
        """
        with self._call_added:
            if not self._call_added.wait_for(predicate, timeout):
                raise TimeoutError("fake Slack: the awaited condition did not hold")

    def responses(self, key: str | None = None) -> list[Any]:
        """Bodies posted to ``/response/<key>`` (all keys when None)."""
        with self._lock:
            return [body for k, body in self.response_posts if key is None or k == key]

    def _handled(self) -> None:
        with self._call_added:
            self._call_added.notify_all()

    def sign(self, body: bytes | str, timestamp: int | None = None) -> dict[str, str]:
        """Headers Slack would send with ``body`` to the app (the real v0 signature)."""
        raw = body.encode() if isinstance(body, str) else body
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        base = b"v0:" + stamp.encode() + b":" + raw
        digest = hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}

    def env(self, base: str) -> dict[str, str]:
        return {"RUNBOOK_SLACK_API_URL": base + "/api/", "SLACK_BOT_TOKEN": self.bot_token}

    def app_env(self, base: str) -> dict[str, str]:
        """Settings for the Slack chat adapter: the connector's plus the signing secret."""
        return {**self.env(base), "SLACK_SIGNING_SECRET": self.signing_secret}

    # -- formats -------------------------------------------------------------

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        return json_response({"ok": False, "error": code or "fatal_error"}, status)

    def rate_limited(self, fault: Fault) -> Response:
        return json_response(
            {"ok": False, "error": "ratelimited"},
            429,
            {"Retry-After": str(int(fault.retry_after))},
        )

    def token_expired(self) -> Response:
        return json_response({"ok": False, "error": "invalid_auth"})

    # -- serving -------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            self.route("/api/{method}", self._call, ["GET", "POST"], auth=False),
            self.route("/response/{key}", self._response, ["POST"], auth=False),
        ]

    async def _response(self, request: FakeRequest) -> Response:
        with self._lock:
            self.response_posts.append((request.path_params["key"], request.body))
        self._handled()
        return Response("ok", media_type="text/plain")

    async def _call(self, request: FakeRequest) -> Response:
        method = request.path_params["method"]
        args = arguments(request)
        token = bearer(request.headers) or args.pop("token", None)
        call = SlackCall(method, args, authorized=token == self.bot_token)
        with self._lock:
            self.slack_calls.append(call)
        try:
            if token is None:
                raise SlackError("not_authed")
            if token != self.bot_token:
                raise SlackError("invalid_auth")
            with self._lock:
                queued = self.failures.get(method)
                if queued:
                    raise SlackError(queued.pop(0))
                handler = getattr(self, "m_" + method.replace(".", "_"), None)
                if handler is None:
                    raise SlackError("unknown_method")
                result: dict[str, Any] = handler(args)
        except SlackError as exc:
            call.ok, call.error = False, exc.error
            self._handled()
            return json_response({"ok": False, "error": exc.error})
        call.ok = True
        self._handled()
        return json_response({"ok": True, **result})

    # -- methods (called with the lock held) ----------------------------------

    def _next_ts(self) -> str:
        n = next(self._ts)
        return f"{1763800000 + n}.{n:06d}"

    def _writable(self, ref: Any) -> Channel:
        if not isinstance(ref, str) or not ref:
            raise SlackError("channel_not_found")
        if ref.startswith(("U", "W")) and ref in self.users:
            return self._dm(ref)
        found = self.channel(ref)
        if found is None:
            raise SlackError("channel_not_found")
        if not found.is_member:
            raise SlackError("not_in_channel")
        return found

    def _dm(self, user: str) -> Channel:
        cid = "D0" + user[1:]
        if cid not in self.channels:
            self.channels[cid] = Channel(cid, user, is_im=True, members=[user, BOT_USER])
        return self.channels[cid]

    @staticmethod
    def _content(args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("text") and not args.get("blocks") and not args.get("attachments"):
            raise SlackError("no_text")
        return {k: args[k] for k in ("text", "blocks", "attachments") if k in args}

    def m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://runbook-sandbox.slack.com/",
            "team": "Runbook Bot Sandbox",
            "user": "runbook-bot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable(args.get("channel"))
        message = {
            "type": "message",
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "ts": self._next_ts(),
            **self._content(args),
        }
        if args.get("thread_ts"):
            message["thread_ts"] = args["thread_ts"]
        channel.messages.append(message)
        return {"channel": channel.id, "ts": message["ts"], "message": dict(message)}

    def _message(self, args: dict[str, Any]) -> tuple[Channel, dict[str, Any]]:
        channel = self._writable(args.get("channel"))
        message = next((m for m in channel.messages if m["ts"] == args.get("ts")), None)
        if message is None:
            raise SlackError("message_not_found")
        if message.get("user") != BOT_USER:
            raise SlackError("cant_update_message")
        return channel, message

    def m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, message = self._message(args)
        content = self._content(args)
        message.update(content)
        if "blocks" not in args and "text" in args:
            message.pop("blocks", None)
        message["edited"] = {"user": BOT_USER, "ts": self._next_ts()}
        return {
            "channel": channel.id,
            "ts": message["ts"],
            "text": message.get("text", ""),
            "message": dict(message),
        }

    def m_chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, message = self._message(args)
        channel.messages.remove(message)
        return {"channel": channel.id, "ts": message["ts"]}

    def m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable(args.get("channel"))
        user = args.get("user")
        if user not in self.users:
            raise SlackError("user_not_found")
        if not channel.is_im and user not in channel.members:
            raise SlackError("user_not_in_channel")
        self._content(args)
        return {"message_ts": self._next_ts()}

    def m_chat_getPermalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, message = self._message_any(args.get("channel"), args.get("message_ts"))
        ts = str(message["ts"]).replace(".", "")
        return {
            "channel": channel.id,
            "permalink": f"https://runbook-sandbox.slack.com/archives/{channel.id}/p{ts}",
        }

    def _message_any(self, ref: Any, ts: Any) -> tuple[Channel, dict[str, Any]]:
        channel = self.channel(str(ref or ""))
        if channel is None:
            raise SlackError("channel_not_found")
        message = next((m for m in channel.messages if m["ts"] == ts), None)
        if message is None:
            raise SlackError("message_not_found")
        return channel, message

    def _view(self, view: Any, view_id: str | None = None) -> dict[str, Any]:
        if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
            raise SlackError("invalid_arguments")
        vid = view_id or f"V0{len(self.views) + 1:08d}"
        stored = {**view, "id": vid, "team_id": TEAM_ID, "state": {"values": {}}}
        self.views[vid] = stored
        return {"view": stored}

    def m_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger = args.get("trigger_id")
        if not trigger:
            raise SlackError("invalid_arguments")
        if trigger == "expired":
            raise SlackError("expired_trigger_id")
        return self._view(args.get("view"))

    def m_views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.m_views_open(args)

    def m_views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id = args.get("view_id")
        if view_id not in self.views:
            raise SlackError("not_found")
        return self._view(args.get("view"), str(view_id))

    def m_usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        include = str(args.get("include_users", "")).lower() in ("true", "1")
        groups = []
        for group in self.usergroups.values():
            entry = dict(group)
            if not include:
                entry.pop("users")
            groups.append(entry)
        return {"usergroups": groups}

    def m_usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = self.usergroups.get(str(args.get("usergroup", "")))
        if group is None:
            raise SlackError("no_such_subteam")
        return {"users": list(group["users"])}

    def m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user", "")))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": user}

    def m_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"members": list(self.users.values()), "response_metadata": {"next_cursor": ""}}

    def _known(self, ref: Any) -> Channel:
        channel = self.channel(str(ref or ""))
        if channel is None:
            raise SlackError("channel_not_found")
        return channel

    def m_conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": self._known(args.get("channel")).as_entity()}

    def m_conversations_list(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "channels": [c.as_entity() for c in self.channels.values() if not c.is_im],
            "response_metadata": {"next_cursor": ""},
        }

    def m_conversations_members(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._known(args.get("channel"))
        return {"members": list(channel.members), "response_metadata": {"next_cursor": ""}}

    def m_conversations_join(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._known(args.get("channel"))
        channel.is_member = True
        return {"channel": channel.as_entity()}

    def m_conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = args.get("users")
        first = (users if isinstance(users, str) else "").split(",")[0].strip()
        if first not in self.users:
            raise SlackError("user_not_found")
        return {"channel": self._dm(first).as_entity()}

    def m_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._known(args.get("channel"))
        top = [m for m in channel.messages if m.get("thread_ts", m["ts"]) == m["ts"]]
        return {"messages": list(reversed(top)), "has_more": False}

    def m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._known(args.get("channel"))
        ts = args.get("ts")
        thread = [m for m in channel.messages if m["ts"] == ts or m.get("thread_ts") == ts]
        if not thread:
            raise SlackError("thread_not_found")
        return {"messages": thread, "has_more": False}
