"""Scenario tests: one or more per rule of SPEC §1.3 (ordering, readiness, failure, retries...)."""

from __future__ import annotations

import pytest

from bot.errors import InputError, NotFoundError, PermissionDenied
from tests.engine.harness import make_engine

BRANCH = """
name: branch
inputs:
  x: {type: boolean}
steps:
  - id: a
    uses: core.noop
  - id: b
    needs: [a]
    if: inputs.x
    uses: core.echo
    with: {branch: b}
  - id: c
    needs: [a]
    if: not inputs.x
    uses: core.echo
    with: {branch: c}
  - id: d
    needs: [b, c]
    uses: core.echo
    with: {after: join}
"""


@pytest.mark.parametrize("x, taken, skipped", [(True, "b", "c"), (False, "c", "b")])
async def test_branch_join_runs_after_whichever_branch_ran(
    x: bool, taken: str, skipped: str
) -> None:
    h = make_engine(BRANCH)
    run = await h.start("branch", {"x": x})
    assert run.status == "succeeded"
    assert run.steps[taken].outcome == "succeeded"
    assert run.steps[skipped].outcome == "skipped"
    assert run.steps["d"].outcome == "succeeded"
    await h.close()


async def test_default_ordering_is_document_order_and_needs_empty_starts_at_once() -> None:
    h = make_engine("""
name: order
steps:
  - id: first
    uses: core.sleep
    with: {seconds: 5}
  - id: second
    uses: core.noop
  - id: independent
    needs: []
    uses: core.noop
""")
    result = await h.engine.start_run("order", {}, requester="cli:x")
    await h.clock.advance(0)
    run = h.store.get_run(result.run.id)
    # independent ran while first was still sleeping; second waits for first
    assert run.steps["independent"].outcome == "succeeded"
    assert run.steps["second"].outcome is None
    await h.clock.advance(5)
    run = await h.settle(result.run.id)
    assert run.status == "succeeded"
    order = [r["step"] for r in h.of("step.succeeded")]
    assert order.index("first") < order.index("second")
    await h.close()


async def test_fan_out_runs_concurrently_and_fan_in_waits_for_all() -> None:
    h = make_engine("""
name: fan
steps:
  - id: start
    uses: core.noop
  - id: slow
    needs: [start]
    uses: core.sleep
    with: {seconds: 10}
  - id: fast
    needs: [start]
    uses: core.sleep
    with: {seconds: 1}
  - id: join
    needs: [slow, fast]
    uses: core.noop
""")
    result = await h.engine.start_run("fan", {}, requester="cli:x")
    await h.clock.advance(1)
    run = h.store.get_run(result.run.id)
    assert run.steps["fast"].outcome == "succeeded"
    assert run.steps["slow"].running and run.steps["join"].outcome is None
    await h.clock.advance(9)
    run = await h.settle(result.run.id)
    assert run.steps["join"].outcome == "succeeded"
    # both sleeps were started before either ended: they overlapped
    events = [(r["event"], r["step"]) for r in h.records]
    assert events.index(("step.started", "fast")) < events.index(("step.succeeded", "slow"))
    assert events.index(("step.started", "slow")) < events.index(("step.succeeded", "fast"))
    await h.close()


async def test_need_failed_skips_dependents_and_fails_run() -> None:
    h = make_engine("""
name: fails
steps:
  - id: a
    uses: core.fail
    with: {message: broken}
  - id: b
    uses: core.noop
  - id: c
    uses: core.noop
""")
    run = await h.start("fails")
    assert run.status == "failed"
    assert run.steps["a"].outcome == "failed" and run.steps["a"].error == "core.fail: broken"
    assert run.steps["b"].outcome == "skipped"
    assert run.steps["c"].outcome == "skipped"
    await h.close()


async def test_continue_on_error_lets_dependents_run_and_run_succeed() -> None:
    h = make_engine("""
name: coe
steps:
  - id: a
    uses: core.fail
    with: {message: tolerable}
    continue_on_error: true
  - id: b
    uses: core.echo
    with: {saw: "{{ steps.a.outcome }}: {{ steps.a.error }}"}
""")
    run = await h.start("coe")
    assert run.status == "succeeded"
    assert run.steps["b"].output == {"saw": "failed: core.fail: tolerable"}
    await h.close()


async def test_all_needs_skipped_skips_the_step() -> None:
    h = make_engine("""
name: skipchain
steps:
  - id: a
    if: "false"
    uses: core.noop
  - id: b
    uses: core.noop
  - id: c
    needs: [b]
    if: "true"
    uses: core.noop
""")
    run = await h.start("skipchain")
    assert run.steps["a"].outcome == "skipped"
    assert run.steps["b"].outcome == "skipped"  # its only need was skipped: a branch not taken
    assert run.steps["c"].outcome == "succeeded"  # explicit if alone decides
    assert run.status == "succeeded"
    await h.close()


FAILURE = """
name: failure
steps:
  - id: isolate
    uses: core.echo
    with: {host: web-1}
    compensate:
      uses: core.echo
      with: {undo: "{{ steps.isolate.output.host }}"}
  - id: collect
    uses: core.echo
    with: {evidence: yes}
    compensate:
      uses: core.echo
      with: {undo: collect}
  - id: parallel
    needs: [isolate]
    uses: core.sleep
    with: {seconds: 3}
  - id: boom
    needs: [collect]
    uses: core.fail
    with: {message: ticket system down}
  - id: never
    needs: [boom]
    uses: core.noop
  - id: page
    needs: [boom]
    if: failure()
    uses: core.echo
    with: {page: "{{ steps.boom.error }}"}
  - id: after_page
    needs: [page]
    uses: core.noop
"""


async def test_failure_runs_handlers_lets_running_steps_finish_then_compensates_in_reverse() -> (
    None
):
    h = make_engine(FAILURE)
    result = await h.engine.start_run("failure", {}, requester="cli:x")
    await h.clock.advance(0)
    run = h.store.get_run(result.run.id)
    assert run.steps["boom"].outcome == "failed"
    assert run.steps["parallel"].running  # already running: it finishes first
    assert not run.ended
    await h.clock.advance(3)
    run = await h.settle(result.run.id)
    assert run.status == "failed"
    assert run.steps["page"].outcome == "succeeded"
    assert run.steps["page"].output == {"page": "core.fail: ticket system down"}
    assert run.steps["never"].outcome == "skipped"
    assert run.steps["after_page"].outcome == "skipped"  # not a failure handler
    comps = [(r["event"], r["step"]) for r in h.records if r["event"].startswith("compensation.")]
    # reverse order of completion: collect completed after isolate
    assert comps == [
        ("compensation.started", "collect"),
        ("compensation.succeeded", "collect"),
        ("compensation.started", "isolate"),
        ("compensation.succeeded", "isolate"),
    ]
    undo = next(r for r in h.of("compensation.succeeded") if r["step"] == "isolate")
    assert undo["data"]["output"] == {"undo": "web-1"}  # its own output is in scope
    events = h.events(result.run.id)
    assert events.index("compensation.started") > max(
        i for i, e in enumerate(events) if e == "step.succeeded"
    )
    assert events[-1] == "run.finished"
    await h.close()


async def test_failed_compensation_is_recorded_and_others_still_run() -> None:
    h = make_engine("""
name: comp
steps:
  - id: a
    uses: core.noop
    compensate: {uses: core.echo, with: {undo: a}}
  - id: b
    uses: core.noop
    compensate: {uses: core.fail, with: {message: cannot undo b}}
  - id: c
    uses: core.fail
    with: {message: stop}
""")
    run = await h.start("comp")
    assert run.status == "failed"
    assert [
        (r["event"], r["step"])
        for r in h.records
        if r["event"].startswith("compensation.") and r["event"] != "compensation.started"
    ] == [("compensation.failed", "b"), ("compensation.succeeded", "a")]
    assert h.of("compensation.failed")[0]["data"]["error"] == "core.fail: cannot undo b"
    await h.close()


async def test_rejection_skips_dependents_without_compensation() -> None:
    h = make_engine("""
name: reject
steps:
  - id: prep
    uses: core.noop
    compensate: {uses: core.noop}
  - id: gate
    approval: {prompt: "go?", approvers: {users: [alice]}}
  - id: act
    uses: core.noop
  - id: on_reject
    needs: [gate]
    if: not success()
    uses: core.echo
    with: {outcome: "{{ steps.gate.outcome }}"}
""")
    run = await h.start("reject")
    assert run.status == "waiting"
    result = await h.engine.decide(run.id, "gate", "cli:alice", "reject", comment="not now")
    assert result.outcome == "rejected"
    run = await h.settle(run.id)
    assert run.status == "rejected"
    assert run.steps["act"].outcome == "skipped"
    assert run.steps["on_reject"].output == {"outcome": "rejected"}
    assert run.steps["gate"].output["decision"] == "reject"
    assert run.steps["gate"].output["decided_by"] == ["cli:alice"]
    assert run.steps["gate"].output["comments"] == [{"by": "cli:alice", "text": "not now"}]
    assert not h.of("compensation.started")
    await h.close()


async def test_retries_count_attempts_and_back_off_on_the_clock() -> None:
    h = make_engine("""
name: retry
steps:
  - id: flaky
    uses: core.flaky
    with: {failures: 2}
    retry: {attempts: 3, delay: 2s, backoff: 3, max_delay: 5s, jitter: false}
""")
    result = await h.engine.start_run("retry", {}, requester="cli:x")
    await h.clock.advance(0)
    delays = [r["data"]["delay"] for r in h.of("step.retrying")]
    assert delays == [2.0]
    await h.clock.advance(2)
    assert [r["data"]["delay"] for r in h.of("step.retrying")] == [2.0, 5.0]  # 6s capped to 5s
    await h.clock.advance(4.9)
    assert h.store.get_run(result.run.id).steps["flaky"].outcome is None
    await h.clock.advance(0.1)
    run = await h.settle(result.run.id)
    assert run.steps["flaky"].outcome == "succeeded"
    assert run.steps["flaky"].attempts == 3
    assert run.steps["flaky"].output == {"attempt": 3}
    assert [r["data"]["attempt"] for r in h.of("step.started")] == [1, 2, 3]
    await h.close()


async def test_retries_run_out_and_permanent_errors_are_not_retried() -> None:
    h = make_engine("""
name: outoftries
steps:
  - id: flaky
    uses: core.flaky
    with: {failures: 5}
    retry: {attempts: 2, delay: 1s}
    continue_on_error: true
  - id: permanent
    needs: []
    uses: core.fail
    with: {message: no such host}
    retry: {attempts: 5, delay: 1s}
""")
    result = await h.engine.start_run("outoftries", {}, requester="cli:x")
    await h.clock.advance(5)
    run = await h.settle(result.run.id)
    assert run.steps["flaky"].outcome == "failed"
    assert run.steps["flaky"].attempts == 2
    assert "after 2 attempts" in (run.steps["flaky"].error or "")
    assert run.steps["permanent"].attempts == 1
    assert len([r for r in h.of("step.retrying") if r["step"] == "permanent"]) == 0
    await h.close()


async def test_timeout_bounds_one_attempt_and_is_retryable() -> None:
    h = make_engine("""
name: slow
steps:
  - id: hang
    uses: core.sleep
    with: {seconds: 3600}
    timeout: 20s
    retry: {attempts: 2, delay: 1s, jitter: false}
""")
    result = await h.engine.start_run("slow", {}, requester="cli:x")
    await h.clock.advance(20)
    assert "timed out after 20s" in h.of("step.retrying")[0]["data"]["error"]
    await h.clock.advance(21)
    run = await h.settle(result.run.id)
    assert run.steps["hang"].outcome == "failed"
    assert run.steps["hang"].attempts == 2
    assert "timed out after 20s" in (run.steps["hang"].error or "")
    await h.close()


async def test_for_each_keeps_order_and_respects_max_parallel() -> None:
    h = make_engine("""
name: loop
inputs:
  hosts: {type: list}
steps:
  - id: each
    uses: core.sleep
    for_each: inputs.hosts
    max_parallel: 2
    with: {seconds: "{{ 10 - index }}"}
  - id: after
    uses: core.echo
    with: {all: "{{ steps.each.output | map(attribute='slept') | list }}"}
""")
    result = await h.engine.start_run("loop", {"hosts": ["a", "b", "c", "d"]}, requester="cli:x")
    await h.clock.advance(0)
    # 2 at a time: items 0 (10s) and 1 (9s) run; 2 and 3 wait
    assert h.clock.sleepers == 2
    await h.clock.advance(9)  # item 1 done -> item 2 (8s) starts
    assert sorted(r["data"]["index"] for r in h.of("step.item_succeeded")) == [1]
    await h.clock.advance(20)
    run = await h.settle(result.run.id)
    assert run.steps["each"].output == [{"slept": 10}, {"slept": 9}, {"slept": 8}, {"slept": 7}]
    assert run.steps["after"].output == {"all": [10, 9, 8, 7]}  # one {{ expr }}: a native list
    completion = [r["data"]["index"] for r in h.of("step.item_succeeded")]
    assert completion != [0, 1, 2, 3]  # finished out of order, output still ordered
    await h.close()


async def test_for_each_item_failure_fails_the_step() -> None:
    h = make_engine("""
name: loopfail
steps:
  - id: each
    uses: core.fail
    for_each: "['x', 'y']"
    with: {message: "bad {{ item }}"}
""")
    run = await h.start("loopfail")
    assert run.status == "failed"
    assert run.steps["each"].error.startswith("item 0: core.fail: bad x") or run.steps[
        "each"
    ].error.startswith("item 1: core.fail: bad y")
    await h.close()


POLL = """
name: poll
steps:
  - id: wait
    uses: core.flaky
    with: {failures: 0}
    until: output.attempt > 5
    poll: {every: 10s, timeout: 1m}
  - id: wait_forever
    needs: []
    uses: core.echo
    with: {status: Pending}
    until: output.status == 'Succeeded'
    poll: {every: 10s, timeout: 30s}
    continue_on_error: true
"""


async def test_poll_until_true_and_until_timeout() -> None:
    h = make_engine("""
name: poll
steps:
  - id: wait
    uses: core.echo
    with: {status: Succeeded}
    until: output.status == 'Succeeded'
    poll: {every: 10s, timeout: 1m}
  - id: wait_forever
    needs: []
    uses: core.echo
    with: {status: Pending}
    until: output.status == 'Succeeded'
    poll: {every: 10s, timeout: 30s}
    continue_on_error: true
""")
    result = await h.engine.start_run("poll", {}, requester="cli:x")
    await h.clock.advance(0)
    assert h.store.get_run(result.run.id).steps["wait"].outcome == "succeeded"
    for _ in range(3):
        await h.clock.advance(10)
    run = await h.settle(result.run.id)
    assert run.steps["wait_forever"].outcome == "failed"
    assert "still false after 30s (4 polls; poll.timeout: 30s)" in (
        run.steps["wait_forever"].error or ""
    )
    assert run.status == "succeeded"
    await h.close()


async def test_poll_every_zero_still_pauses_and_times_out() -> None:
    h = make_engine("""
name: poll
steps:
  - id: spin
    uses: core.echo
    with: {status: Pending}
    until: output.status == 'Succeeded'
    poll: {every: 0s, timeout: 1s}
    if: true
""")
    result = await h.engine.start_run("poll", {}, requester="cli:x")
    for _ in range(101):
        await h.clock.advance(0.01)
    run = await h.settle(result.run.id)
    assert run.steps["spin"].outcome == "failed"
    assert "still false after 1s (101 polls; poll.timeout: 1s)" in (run.steps["spin"].error or "")
    await h.close()


async def test_notify_posts_through_chat_and_chat_errors_fail_the_step() -> None:
    from bot.errors import ChatError

    h = make_engine("""
name: notes
channel: "#soc"
inputs:
  host: {type: string}
steps:
  - id: tell
    notify: {text: "Host {{ inputs.host }} isolated"}
""")
    run = await h.start("notes", {"host": "{{ 7*7 }}"})
    assert ("notify", run.id, "Host {{ 7*7 }} isolated") in h.chat.calls  # data never rendered
    h.chat.fail_notify = ChatError("channel_not_found")
    run = await h.start("notes", {"host": "x"})
    assert run.status == "failed"
    assert run.steps["tell"].error == "chat: channel_not_found"
    await h.close()


async def test_cancel_cancels_running_step_and_compensates() -> None:
    h = make_engine("""
name: cancel
steps:
  - id: contain
    uses: core.echo
    with: {host: x}
    compensate: {uses: core.echo, with: {lift: x}}
  - id: wait
    uses: core.sleep
    with: {seconds: 600}
  - id: later
    uses: core.noop
""")
    result = await h.engine.start_run("cancel", {}, requester="cli:carol")
    await h.clock.advance(1)
    # run_by is unset, so anyone may start it, and so cancel it
    run = await h.engine.cancel(result.run.id, "cli:dave")
    run = await h.settle(result.run.id)
    assert run.status == "cancelled"
    assert run.steps["wait"].outcome == "cancelled"
    assert run.steps["later"].outcome is None  # never decided
    assert [r["event"] for r in h.records if r["event"].startswith("compensation")] == [
        "compensation.started",
        "compensation.succeeded",
    ]
    assert h.of("run.cancelled")[0]["actor"] == "cli:dave"
    await h.close()


async def test_cancel_is_limited_to_requester_run_by_and_approvers() -> None:
    h = make_engine("""
name: guarded
run_by: {users: [alice]}
steps:
  - id: gate
    approval: {prompt: ok?, approvers: {users: [bob]}}
""")
    run = await h.start("guarded", requester="cli:alice")
    with pytest.raises(PermissionDenied):
        await h.engine.cancel(run.id, "cli:mallory")
    run = await h.engine.cancel(run.id, "cli:bob")
    assert (await h.settle(run.id)).status == "cancelled"
    assert h.of("step.cancelled")[0]["step"] == "gate"
    await h.close()


async def test_inputs_are_coerced_or_rejected_naming_the_input() -> None:
    h = make_engine("""
name: typed
inputs:
  count: {type: integer}
  hosts: {type: list}
  dry: {type: boolean, default: false}
  mode: {type: string, enum: [fast, safe], default: safe}
  host: {type: string, pattern: '^[a-z0-9.-]+$', required: false}
steps:
  - id: echo
    uses: core.echo
    with: {count: "{{ inputs.count }}", hosts: "{{ inputs.hosts }}", dry: "{{ inputs.dry }}"}
""")
    run = await h.start("typed", {"count": "3", "hosts": "a,b", "dry": "yes"}, from_text=True)
    assert run.steps["echo"].output == {"count": 3, "hosts": ["a", "b"], "dry": True}
    for bad, name in (
        ({"count": "three", "hosts": "a"}, "count"),
        ({"count": 1, "hosts": "a", "mode": "yolo"}, "mode"),
        ({"count": 1, "hosts": "a", "host": "bad host"}, "host"),
        ({"hosts": "a"}, "count"),
        ({"count": 1, "hosts": "a", "nope": 1}, "nope"),
    ):
        with pytest.raises(InputError) as info:
            await h.engine.start_run("typed", bad, requester="cli:x", from_text=True)
        assert info.value.input_name == name
    with pytest.raises(NotFoundError):
        await h.engine.start_run("nope", {}, requester="cli:x")
    await h.close()


async def test_run_by_limits_who_may_start_by_hand() -> None:
    h = make_engine(
        """
name: restricted
run_by: {groups: [soc]}
steps:
  - id: a
    uses: core.noop
""",
        groups={"soc": ["alice"]},
    )
    with pytest.raises(PermissionDenied):
        await h.engine.start_run("restricted", {}, requester="cli:mallory")
    run = await h.start("restricted", requester="cli:alice")
    assert run.status == "succeeded"
    run = await h.start("restricted", requester=None, trigger={"kind": "alert", "source": "x"})
    assert run.status == "succeeded"  # alerts and schedules always may
    await h.close()


async def test_template_errors_fail_the_step_clearly() -> None:
    h = make_engine("""
name: tmpl
steps:
  - id: a
    uses: core.echo
    with: {x: 1}
  - id: b
    uses: core.echo
    with: {y: "{{ steps.a.output.missing }}"}
  - id: c
    needs: []
    uses: core.echo
    with: {z: "{{ steps }}"}
    continue_on_error: true
""")
    run = await h.start("tmpl")
    assert run.steps["c"].outcome == "failed"  # a value that cannot be stored is a failure
    assert "not JSON-serialisable" in (run.steps["c"].error or "")
    assert run.steps["b"].outcome == "failed"
    assert "missing" in (run.steps["b"].error or "")
    assert run.status == "failed"
    await h.close()


async def test_output_that_cannot_be_recorded_fails_the_step() -> None:
    h = make_engine("""
name: big
steps:
  - id: huge
    uses: core.echo
    with: {blob: "{{ 'x' * 300000 }}"}
""")
    run = await h.start("big")
    assert run.steps["huge"].outcome == "failed"
    assert "cannot be recorded" in (run.steps["huge"].error or "")
    await h.close()


async def test_sandbox_escape_in_template_fails_the_step_not_the_process() -> None:
    h = make_engine("""
name: escape
inputs:
  x: {type: string}
  name: {type: string}
steps:
  - id: a
    uses: core.echo
    with: {v: "{{ inputs.x | attr(inputs.name) }}"}
""")
    run = await h.start("escape", {"x": "s", "name": "__class__"})
    assert run.steps["a"].outcome == "failed"
    assert "unsafe" in (run.steps["a"].error or "")
    await h.close()
