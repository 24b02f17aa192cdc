"""Data put into a prompt or notice cannot add links or mentions in Slack; the author's can."""

from __future__ import annotations

import json
from typing import Any

from slack_harness import BOB, actions_of, approval_posts, audit_records

# The alert's fields are data: a mention, a disguised link, a broadcast, an ampersand.
HOSTILE = {
    "host": "<!channel> <https://evil.example/x|click here> & <@U0MALLORY>",
    "title": "a<b",
}
HOST_ESCAPED = "&lt;!channel&gt; &lt;https://evil.example/x|click here&gt; &amp; &lt;@U0MALLORY&gt;"

RUNBOOK = """
name: markup
channel: "#soc-incidents"
steps:
  - id: ask
    approval:
      prompt: >-
        {% set title %}{{ alert.title }}{% endset %}{% set wiki %}<https://wiki.example/ir|ir>{% endset %}*Contain* {{ alert.host }}? {{ title }} See {{ wiki }} or <https://wiki.example/ir|the playbook>
      approvers: {users: [U0BOB]}
  - id: tell
    notify:
      text: >-
        *Contained* {{ alert.host }} ({{ alert.title }}), see <https://wiki.example/ir|the playbook>
"""


def _leaks(shown: str) -> list[str]:
    live = ("<!channel>", "<https://evil.example", "<@U0MALLORY>", "a<b", "&amp;amp;", "&amp;lt;")
    return [needle for needle in live if needle in shown]


async def test_alert_data_is_escaped_once_and_the_authors_mrkdwn_kept(start_app: Any) -> None:
    app = await start_app({"markup.yaml": RUNBOOK})
    started = await app.engine.start_run(
        "markup",
        requester=None,
        trigger={"kind": "alert", "source": "test"},
        alert=HOSTILE,
    )
    run_id = started.run.id
    await app.until(lambda: len(approval_posts(app.fake)) == 1)

    (gate,) = approval_posts(app.fake)
    for shown in (json.dumps(gate.args["blocks"]), gate.args["text"]):
        shown = shown.replace("\\", "")  # JSON escapes nothing we look for but the quotes
        assert _leaks(shown) == []
        assert f"*Contain* {HOST_ESCAPED}? a&lt;b See " in shown
        # the author's links, written in the template or in a set block, stay links
        assert "<https://wiki.example/ir|ir> or <https://wiki.example/ir|the playbook>" in shown

    value = actions_of(gate.args["blocks"])[0]["value"]
    await app.click("approval_approve", value, user=BOB)
    run = await app.run_until(run_id, lambda r: r.ended)
    assert run.status == "succeeded"
    await app.settle()

    (notice,) = [
        c
        for c in app.fake.api_calls("chat.postMessage")
        if str(c.args.get("text", "")).startswith("*Contained*")
    ]
    text = notice.args["text"]
    assert _leaks(text) == []
    assert text == (
        f"*Contained* {HOST_ESCAPED} (a&lt;b), see <https://wiki.example/ir|the playbook>"
    )
    assert "blocks" not in notice.args

    # the audit log keeps the plain text, readable
    requested = audit_records(app.settings.data_dir, "approval.requested")[0]["data"]
    assert requested["prompt"].startswith(f"*Contain* {HOSTILE['host']}? a<b See ")
