"""/runbook: reading the text (pure), and what each subcommand answers over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from slack_harness import ALICE, BOB, DAVE, actions_of, approval_posts, audit_records

from bot.chat.slack.commands import CommandError, Verb, clean_text, parse_command

WORDS = {"isolate": "isolate-host"}


def parse(text: str) -> Any:
    return parse_command(text, WORDS.get)


def test_parse_verbs_and_quoted_values() -> None:
    assert parse("").verb is Verb.HELP
    assert parse("help").verb is Verb.HELP
    assert parse("list").verb is Verb.LIST
    command = parse("run isolate-host host=web-1 reason=\"two words\" note='a b'")
    assert (command.verb, command.runbook) == (Verb.RUN, "isolate-host")
    assert command.inputs == {"host": "web-1", "reason": "two words", "note": "a b"}
    assert parse("isolate host=web-1").runbook == "isolate-host"
    assert parse("status r-0ab3").run_id == "r-0ab3"
    assert parse("CANCEL `r-0ab3`").verb is Verb.CANCEL
    assert parse("run x hosts=a,b empty=").inputs == {"hosts": "a,b", "empty": ""}


def test_parse_undoes_what_slack_does_to_text() -> None:
    # curly quotes, HTML escapes and auto-linked host names
    assert parse("run x reason=“two words” q=&lt;b&gt;&amp;").inputs == {
        "reason": "two words",
        "q": "<b>&",
    }
    assert parse("run x host=<http://web-1.example.com|web-1.example.com>").inputs == {
        "host": "web-1.example.com"
    }
    assert clean_text("<@U0BOB|bob> <#C0OPS|ops> <https://x.y>") == "bob ops https://x.y"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('run x reason="unclosed', "No closing quotation"),
        ("run", "which runbook"),
        ("run x host", "expected key=value"),
        ("run x a=1 a=2", "given twice"),
        ("status", "usage: `status RUN_ID`"),
        ("status nope", "is not a run id"),
        ("frobnicate", "unknown command"),
        ("list extra", "takes nothing"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse(text)
    assert message in caught.value.message


CONTAIN = """
name: contain-host
title: Contain a host
channel: "#soc-incidents"
run_by: {groups: [soc-leads]}
inputs:
  host: {type: string, pattern: '^[a-z0-9-]+$', description: Host name}
  count: {type: integer, default: 1}
triggers:
  - command: contain
steps:
  - id: ask
    approval:
      prompt: "Contain {{ inputs.host }}?"
      approvers: {users: [U0BOB]}
  - id: done
    uses: core.noop
"""


async def test_help_list_and_input_errors_answer_privately_in_the_ack(start_app: Any) -> None:
    app = await start_app({"contain.yaml": CONTAIN})
    help_answer = (await app.command("help"))[0].json()
    assert help_answer["response_type"] == "ephemeral"
    assert "/runbook run NAME key=value" in help_answer["text"]
    assert "`contain`" in help_answer["text"]
    listed = (await app.command("list"))[0].json()["text"]
    assert "`contain-host` — Contain a host" in listed and "/runbook contain" in listed

    bad = (await app.command("contain host=Web_1!"))[0].json()["text"]
    assert "input 'host'" in bad and "does not match pattern" in bad
    assert "Inputs of `contain-host`" in bad and "`count` integer, default `1`" in bad
    missing = (await app.command("run contain-host"))[0].json()["text"]
    assert "input 'host': required but not given (Host name)" in missing
    unknown = (await app.command("run contain-host host=a hots=b"))[0].json()["text"]
    assert "input 'hots': not an input of this runbook" in unknown
    typed = (await app.command("contain host=a count=many"))[0].json()["text"]
    assert "expected an integer" in typed
    nobook = (await app.command("run nope"))[0].json()["text"]
    assert "There is no runbook `nope`" in nobook and "`contain-host`" in nobook
    quote = (await app.command('contain host="web'))[0].json()["text"]
    assert "No closing quotation" in quote
    await app.settle()
    assert audit_records(app.settings.data_dir, "run.started") == []


async def test_run_by_status_and_cancel(start_app: Any) -> None:
    app = await start_app({"contain.yaml": CONTAIN})
    # DAVE is not in soc-leads (run_by): answered privately after the ack
    response, key = await app.command("contain host=web-1", user=DAVE)
    assert "Starting" in response.json()["text"]
    await app.until(lambda: bool(app.fake.responses(key)))
    assert "You may not start `contain-host`" in app.fake.responses(key)[0]["text"]
    assert app.fake.responses(key)[0]["response_type"] == "ephemeral"

    response, key = await app.command("contain host=web-1 count=3", user=ALICE)
    await app.until(lambda: len(approval_posts(app.fake)) == 1)
    value = actions_of(approval_posts(app.fake)[0].args["blocks"])[0]["value"]
    run_id = value.split(":")[1]
    await app.until(lambda: bool(app.fake.responses(key)))
    assert f"Started run `{run_id}`" in app.fake.responses(key)[0]["text"]
    assert "#soc-incidents" in app.fake.responses(key)[0]["text"]

    status = (await app.command(f"status {run_id}"))[0].json()
    assert "Status: waiting" in status["text"] or "waiting" in status["text"]
    shown = str(status["blocks"])
    assert "waiting for approval (0/1)" in shown and "started by <@U024BE7LH>" in shown
    assert "There is no run" in (await app.command("status r-0000"))[0].json()["text"]

    # DAVE may not cancel (not the requester, not in run_by, not an approver)
    response, key = await app.command(f"cancel {run_id}", user=DAVE)
    assert "Cancelling" in response.json()["text"]
    await app.until(lambda: bool(app.fake.responses(key)))
    assert "may not cancel" in app.fake.responses(key)[0]["text"]
    assert app.engine.store.get_run(run_id).status == "waiting"
    # BOB, an approver, may
    response, key = await app.command(f"cancel {run_id}", user=BOB)
    run = await app.run_until(run_id, lambda r: r.ended)
    assert run.status == "cancelled"
    await app.until(lambda: bool(app.fake.responses(key)))
    assert f"Run `{run_id}` is cancelled" in app.fake.responses(key)[0]["text"]
    again = (await app.command(f"cancel {run_id}", user=BOB))[0].json()["text"]
    assert "already ended (cancelled)" in again
    (started,) = audit_records(app.settings.data_dir, "run.started")
    assert started["data"]["inputs"] == {"host": "web-1", "count": 3}
    assert audit_records(app.settings.data_dir, "run.cancelled")[0]["actor"] == "slack:U0BOB"


async def test_the_ack_comes_before_the_run_and_a_repeat_starts_nothing_twice(
    start_app: Any,
) -> None:
    app = await start_app({"contain.yaml": CONTAIN})
    from slack_harness import command_body

    body, _ = command_body(app.sandbox, "contain host=web-9", user=ALICE)
    first = await app.post(body)
    assert first.status_code == 200
    # same request again (a retry): acknowledged, nothing new
    again = await app.post(body, headers={"X-Slack-Retry-Num": "1"})
    assert again.status_code == 200
    await app.until(lambda: len(approval_posts(app.fake)) == 1)
    await app.settle()
    assert len(audit_records(app.settings.data_dir, "run.started")) == 1
