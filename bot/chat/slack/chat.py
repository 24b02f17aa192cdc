"""The engine's Chat port on Slack: a thread per run, approval messages, notices.

A run gets a root message in its runbook's ``channel``; a runbook without
one has no thread, and its gates and notices go to the terminal and the API
only (SPEC 1.1), wherever the run was started — except a gate or notice that
names a channel of its own. Channels are sent to Slack as the runbook writes
them (``#soc-incidents``); Slack answers with the channel's id, which later
calls use. The thread holds one status message, edited in place as steps move (the records
of ``status_interval`` seconds become one update, and a message is never
edited to what it already shows, so a busy run does not flood Slack), the
approval requests, notices, and a final summary.

Every update re-renders from the run's current state at the moment it is
sent, under a per-message lock, so a late or retried update can never
overwrite a newer one. Errors come back as :class:`~bot.errors.ChatError`
carrying Slack's code; the engine fails the step that asked (a gate that
cannot be posted, a notice that cannot be sent), and they are logged here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from bot.chat.slack import blocks
from bot.chat.slack.api import describe
from bot.engine.ports import RunView
from bot.engine.state import GateState, RunState
from bot.errors import ChatError, RunbookBotError

if TYPE_CHECKING:
    from bot.engine.engine import Engine

log = logging.getLogger("runbook.slack")

Ref = dict[str, Any]
SHOWN_KEEP = 5000


class WebAPI(Protocol):
    async def call(self, method: str, args: dict[str, Any] | None = None) -> dict[str, Any]: ...


class GroupIds(Protocol):
    async def known_ids(self, handles: list[str]) -> dict[str, str]: ...


def channel_name(channel: str) -> str:
    """What chat.postMessage gets: the channel as the runbook writes it (``#name`` or an id)."""
    return channel.strip()


def same_channel(a: str | None, b: str | None) -> bool:
    """Whether two channel references are written the same (``#ops`` and ``ops`` are)."""
    if not a or not b:
        return False
    return a.strip().removeprefix("#") == b.strip().removeprefix("#")


class SlackChat:
    """Slack implementation of :class:`bot.engine.ports.Chat`."""

    def __init__(self, api: WebAPI, groups: GroupIds, *, status_interval: float = 1.0) -> None:
        self.api = api
        self.groups = groups
        self.status_interval = status_interval
        self._engine: Engine | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._gate_refs: dict[tuple[str, str], Ref] = {}
        self._gates: dict[tuple[str, str], GateState] = {}
        self._status_refs: dict[str, Ref] = {}
        self._status_tasks: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        self._shown: OrderedDict[str, str] = OrderedDict()  # message → digest of its content

    # -- wiring ---------------------------------------------------------------------------

    def attach(self, engine: Engine) -> None:
        """Follow the engine's records to keep status messages current."""
        self._engine = engine
        engine.listeners.append(self._on_record)

    async def close(self) -> None:
        tasks = list(self._status_tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def idle(self) -> None:
        """Wait until no status update is pending (tests, shutdown)."""
        while self._status_tasks:
            await asyncio.gather(*self._status_tasks.values(), return_exceptions=True)

    # -- where things go --------------------------------------------------------------------

    def run_channel(self, run: RunState, view: RunView) -> str | None:
        """The runbook's channel, as written; None without one (no thread, SPEC 1.1)."""
        if view.channel:
            return channel_name(view.channel)
        return None

    def _in_thread(self, run: RunState, view: RunView, channel: str) -> str | None:
        """The run's thread ts when ``channel`` is where the thread is.

        ``channel`` may be the runbook's spelling (``#soc-incidents``) or the id
        Slack answered with (the thread's ``channel``); either matches.
        """
        thread = run.thread
        if not thread or not thread.get("ts"):
            return None
        if same_channel(channel, thread.get("channel")) or same_channel(
            channel, self.run_channel(run, view)
        ):
            return str(thread["ts"])
        return None

    def _gate_channel(self, run: RunState, view: RunView, gate: GateState) -> str | None:
        if gate.channel:
            return channel_name(gate.channel)
        return self.run_channel(run, view)

    def _lock(self, run_id: str, what: str) -> asyncio.Lock:
        key = f"{run_id}:{what}"
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    # -- Slack calls ----------------------------------------------------------------------

    async def _post(
        self,
        channel: str,
        message: blocks.Message,
        thread_ts: str | None = None,
        *,
        with_blocks: bool = True,
    ) -> Ref:
        args: dict[str, Any] = {
            "channel": channel,
            "text": message.text,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if with_blocks:
            args["blocks"] = message.blocks
        if thread_ts:
            args["thread_ts"] = thread_ts
        try:
            answer = await self.api.call("chat.postMessage", args)
        except ChatError as exc:
            raise self._explain(exc, "chat.postMessage", channel) from exc
        return {"channel": str(answer.get("channel") or channel), "ts": str(answer.get("ts"))}

    async def _update(self, ref: Ref, message: blocks.Message) -> None:
        """Edit a message, unless it already shows exactly this."""
        if self._shows(ref, message):
            return
        args = {
            "channel": ref["channel"],
            "ts": ref["ts"],
            "text": message.text,
            "blocks": message.blocks,
        }
        try:
            await self.api.call("chat.update", args)
        except ChatError as exc:
            raise self._explain(exc, "chat.update", str(ref["channel"])) from exc
        self._remember(ref, message)

    def _shows(self, ref: Ref, message: blocks.Message) -> bool:
        return self._shown.get(f"{ref['channel']}:{ref['ts']}") == _digest(message)

    def _remember(self, ref: Ref, message: blocks.Message) -> None:
        key = f"{ref['channel']}:{ref['ts']}"
        self._shown[key] = _digest(message)
        self._shown.move_to_end(key)
        while len(self._shown) > SHOWN_KEEP:
            self._shown.popitem(last=False)

    @staticmethod
    def _explain(exc: ChatError, method: str, channel: str) -> ChatError:
        code = exc.code or "error"
        where = (
            channel
            if channel.startswith("#")
            or (channel.startswith(("C", "G", "D")) and channel.isupper())
            else ("#" + channel)
        )
        text = describe(method, code, where) if exc.code else f"{exc} ({where})"
        level = logging.WARNING if exc.retryable else logging.ERROR
        log.log(level, "%s", text)
        return ChatError(text, code=exc.code, retryable=exc.retryable)

    # -- the Chat port ------------------------------------------------------------------------

    async def run_started(self, run: RunState, view: RunView) -> Ref | None:
        channel = self.run_channel(run, view)
        if channel is None:
            log.info(
                "run %s: runbook %s has no channel; no Slack thread (its gates and notices "
                "go to the API and the terminal)",
                run.id,
                run.runbook,
            )
            return None
        message = blocks.run_root(run, view)
        ref = await self._post(channel, message)
        self._remember(ref, message)
        return ref

    async def run_progress(self, run: RunState, view: RunView) -> Ref | None:
        return await self._refresh_status(run, view)

    async def run_finished(self, run: RunState, view: RunView) -> None:
        try:
            thread = run.thread
            if not thread:
                return
            await self._post(
                str(thread["channel"]), blocks.run_summary(run, view), str(thread["ts"])
            )
            async with self._lock(run.id, "root"):
                with contextlib.suppress(ChatError):
                    await self._update(thread, blocks.run_root(run, view))
        finally:
            self._forget(run.id)

    async def gate_opened(self, run: RunState, step_id: str, view: RunView) -> Ref | None:
        gate = run.steps[step_id].gate
        if gate is None:
            return None
        channel = self._gate_channel(run, view, gate)
        if channel is None:
            log.info(
                "run %s: approval %s has no Slack channel; decide it with the API or the terminal",
                run.id,
                step_id,
            )
            return None
        ids = await self.groups.known_ids([*gate.groups, *gate.escalate_groups])
        async with self._lock(run.id, f"gate:{step_id}"):
            message = blocks.approval(run, view, step_id, gate, ids)
            ref = await self._post(channel, message, self._in_thread(run, view, channel))
            self._remember(ref, message)
            self._gate_refs[(run.id, step_id)] = ref
            self._gates[(run.id, step_id)] = gate
        return ref

    async def gate_changed(self, run: RunState, step_id: str, view: RunView) -> None:
        key = (run.id, step_id)
        current = run.steps[step_id].gate
        gate = current or self._gates.get(key)
        ref = (current.message if current else None) or self._gate_refs.get(key)
        if gate is None or not ref:
            return
        ids = await self.groups.known_ids([*gate.groups, *gate.escalate_groups])
        async with self._lock(run.id, f"gate:{step_id}"):
            await self._update(ref, blocks.approval(run, view, step_id, gate, ids))

    async def gate_escalated(self, run: RunState, step_id: str, view: RunView) -> None:
        gate = run.steps[step_id].gate
        ref = (gate.message if gate else None) or self._gate_refs.get((run.id, step_id))
        if gate is None or not ref:
            return
        ids = await self.groups.known_ids([*gate.groups, *gate.escalate_groups])
        channel = str(ref["channel"])
        thread = self._in_thread(run, view, channel) or str(ref["ts"])
        notice = blocks.escalation_notice(run, view, step_id, gate, ids)
        await self._post(channel, notice, thread)
        await self.gate_changed(run, step_id, view)

    async def notify(
        self,
        run: RunState,
        step_id: str,
        text: str,
        channel: str | None,
        thread: bool,
        view: RunView,
        *,
        markup: str | None = None,
    ) -> Ref | None:
        target = channel_name(channel) if channel else self.run_channel(run, view)
        if target is None:
            log.info(
                "run %s notify (its runbook has no channel; not sent to Slack): %s", run.id, text
            )
            return None
        thread_ts = self._in_thread(run, view, target) if thread else None
        message = blocks.Message(blocks.notice_mrkdwn(text, markup), [])
        return await self._post(target, message, thread_ts, with_blocks=False)

    # -- the status message ------------------------------------------------------------------

    async def _refresh_status(self, run: RunState, view: RunView) -> Ref | None:
        """Edit the status message (posting it the first time); the new ref if posted."""
        thread = run.thread
        if not thread:
            return None
        async with self._lock(run.id, "status"):
            ref = run.status_message or self._status_refs.get(run.id)
            message = blocks.run_status(run, view)
            if ref:
                await self._update(ref, message)
                return None
            if run.ended:
                return None  # the summary says it all
            ref = await self._post(str(thread["channel"]), message, str(thread["ts"]))
            self._remember(ref, message)
            self._status_refs[run.id] = ref
            return ref

    def _on_record(self, run: RunState, record: dict[str, Any]) -> None:
        event = str(record.get("event"))
        if run.thread is None or event == "chat.posted":
            return
        if not event.startswith(("step.", "approval.", "run.")):
            return
        self._dirty.add(run.id)
        if run.id not in self._status_tasks:
            self._status_tasks[run.id] = asyncio.create_task(
                self._status_loop(run.id), name=f"slack-status:{run.id}"
            )

    async def _status_loop(self, run_id: str) -> None:
        try:
            while run_id in self._dirty:
                if self.status_interval > 0:  # let a burst of records become one update
                    await asyncio.sleep(self.status_interval)
                self._dirty.discard(run_id)
                await self._status_once(run_id)
        finally:
            self._status_tasks.pop(run_id, None)

    async def _status_once(self, run_id: str) -> None:
        engine = self._engine
        run = engine.store.get_run(run_id) if engine is not None else None
        if engine is None or run is None:
            return
        try:
            ref = await self._refresh_status(run, engine.view(run))
            if ref and run.status_message is None and not run.ended:
                engine.record_now(run, "chat.posted", data={"purpose": "status", **ref})
        except ChatError as exc:
            log.warning("run %s: could not update its status message: %s", run_id, exc)
        except RunbookBotError as exc:
            log.warning("run %s: status message: %s", run_id, exc)

    def _forget(self, run_id: str) -> None:
        for key in [k for k in self._gate_refs if k[0] == run_id]:
            self._gate_refs.pop(key, None)
            self._gates.pop(key, None)
        self._status_refs.pop(run_id, None)
        for name in [k for k in self._locks if k.startswith(run_id + ":")]:
            if not self._locks[name].locked():
                del self._locks[name]

    # -- after a restart ---------------------------------------------------------------------

    async def post_missing_gates(
        self, engine: Engine, on_posted: Callable[[RunState, str, Ref], None]
    ) -> int:
        """Post waiting gates that have no Slack message yet (Slack was off, or a crash
        came between asking and posting); returns how many were posted."""
        posted = 0
        for run in list(engine.store.world.active_runs()):
            for sid in run.waiting_gates:
                gate = run.steps[sid].gate
                if gate is None or gate.message is not None:
                    continue
                try:
                    ref = await self.gate_opened(run, sid, engine.view(run))
                except (ChatError, RunbookBotError) as exc:
                    log.error(
                        "run %s: could not post the waiting approval %s: %s", run.id, sid, exc
                    )
                    continue
                if ref:
                    on_posted(run, sid, ref)
                    posted += 1
        return posted


def _digest(message: blocks.Message) -> str:
    text = json.dumps([message.text, message.blocks], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
