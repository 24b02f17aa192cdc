"""The runbook model: what a runbook file means, independent of its form.

Step kinds are a discriminated union (connector call, approval gate,
notification), chosen by which of ``uses``, ``approval`` and ``notify`` the
step has. Every model forbids unknown keys. Durations are stored in seconds.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    Tag,
    model_validator,
)

from bot.runbook.cron import check_timezone, parse_cron
from bot.runbook.durations import format_duration, parse_duration

RUNBOOK_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
STEP_ID = r"^[a-z_][a-z0-9_]*$"
ACTION_REF = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"
SOURCE_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
COMMAND_WORD = r"^[a-z0-9][a-z0-9_-]{0,31}$"
INPUT_NAME = r"^[a-z_][a-z0-9_]*$"
RESERVED_COMMANDS = frozenset({"help", "list", "run", "status", "cancel"})


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f"bad duration {value!r}: use a number with a unit, e.g. 250ms, 30s, 5m, 2h, 1d"
        )
    return parse_duration(value)


def _re2_pattern(value: str) -> str:
    from bot.runbook.inputs import compile_pattern

    try:
        compile_pattern(value)
    except ValueError as exc:
        raise ValueError(f"bad regex pattern {value!r}: {exc}") from None
    return value


def _cron(value: str) -> str:
    parse_cron(value)
    return value


def _timezone(value: str) -> str:
    check_timezone(value)
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
Pattern = Annotated[str, AfterValidator(_re2_pattern)]
Cron = Annotated[str, AfterValidator(_cron)]
TimeZone = Annotated[str, AfterValidator(_timezone)]
StepId = Annotated[str, Field(pattern=STEP_ID)]


def _condition(value: Any) -> Any:
    """``if: true`` / ``if: false`` as YAML booleans mean the expressions ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


Condition = Annotated[str, BeforeValidator(_condition)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class InputType(StrEnum):
    """Types a runbook input (or approval field) may declare."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    LIST = "list"
    OBJECT = "object"


class InputSpec(_Strict):
    """One declared input (also used for approval ``fields``)."""

    type: InputType = InputType.STRING
    required: StrictBool | None = None
    default: Any = None
    description: str | None = None
    enum: list[Any] | None = None
    pattern: Pattern | None = None

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set

    @property
    def is_required(self) -> bool:
        """Required unless it says otherwise or has a default."""
        if self.required is not None:
            return self.required
        return not self.has_default


class Who(_Strict):
    """A set of people: Slack user ids / CLI names / token names, and groups."""

    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)


class CommandTrigger(_Strict):
    """``/runbook <command> key=value ...`` starts the runbook."""

    command: Annotated[str, Field(pattern=COMMAND_WORD)]

    @model_validator(mode="after")
    def _not_reserved(self) -> CommandTrigger:
        if self.command in RESERVED_COMMANDS:
            raise ValueError(f"command word {self.command!r} is reserved by /runbook")
        return self


class AlertSpec(_Strict):
    """Which alerts start the runbook and how they map to inputs."""

    source: Annotated[str, Field(pattern=SOURCE_NAME)]
    if_: Condition | None = Field(default=None, alias="if")
    inputs: dict[str, Any] = Field(default_factory=dict)
    dedup_key: str | None = None
    dedup_window: Duration | None = None


class AlertTrigger(_Strict):
    alert: AlertSpec


class ScheduleSpec(_Strict):
    """A cron expression (with time zone) or a fixed interval."""

    cron: Cron | None = None
    every: Duration | None = None
    timezone: TimeZone = "UTC"
    inputs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_of(self) -> ScheduleSpec:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule needs exactly one of 'cron' or 'every'")
        if self.every is not None and self.every < 1:
            raise ValueError("a schedule's 'every' must be at least 1s")
        return self


class ScheduleTrigger(_Strict):
    schedule: ScheduleSpec


def _trigger_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("command", "alert", "schedule"):
            if key in value:
                return key
        return None
    for key, cls in (
        ("command", CommandTrigger),
        ("alert", AlertTrigger),
        ("schedule", ScheduleTrigger),
    ):
        if isinstance(value, cls):
            return key
    return None


Trigger = Annotated[
    Annotated[CommandTrigger, Tag("command")]
    | Annotated[AlertTrigger, Tag("alert")]
    | Annotated[ScheduleTrigger, Tag("schedule")],
    Discriminator(_trigger_kind),
]


class RetryPolicy(_Strict):
    """How often and how patiently a retryable failure is tried again."""

    attempts: Annotated[StrictInt, Field(ge=1, le=100)] = 1
    delay: Duration = 1.0
    backoff: Annotated[StrictFloat, Field(ge=1, le=10)] = 2.0
    max_delay: Duration = 60.0
    jitter: StrictBool = True


class PollPolicy(_Strict):
    """How often to repeat a call until ``until`` holds, and for how long."""

    every: Duration
    timeout: Duration


class Compensation(_Strict):
    """The call that undoes a step when its run fails or is cancelled."""

    uses: Annotated[str, Field(pattern=ACTION_REF)]
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    retry: RetryPolicy | None = None
    timeout: Duration | None = None


class _StepCommon(_Strict):
    id: StepId
    title: str | None = None
    description: str | None = None
    needs: list[str] | None = None
    if_: Condition | None = Field(default=None, alias="if")
    continue_on_error: StrictBool = False


class CallStep(_StepCommon):
    """``uses: connector.action`` with rendered ``with`` arguments."""

    uses: Annotated[str, Field(pattern=ACTION_REF)]
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    timeout: Duration | None = None
    retry: RetryPolicy | None = None
    compensate: Compensation | None = None
    for_each: str | None = None
    max_parallel: Annotated[StrictInt, Field(ge=1, le=64)] = 4
    until: str | None = None
    poll: PollPolicy | None = None

    @model_validator(mode="after")
    def _until_and_poll(self) -> CallStep:
        if (self.until is None) != (self.poll is None):
            raise ValueError("'until' and 'poll' go together: give both or neither")
        return self


class Escalation(_Strict):
    """After ``after``, the people of ``to`` may decide too, and are mentioned."""

    after: Duration
    to: Who


class ApprovalSpec(_Strict):
    """A human decision the run waits for."""

    prompt: str
    channel: str | None = None
    approvers: Who | None = None
    min_approvals: Annotated[StrictInt, Field(ge=1, le=50)] = 1
    allow_requester: StrictBool = False
    timeout: Duration | None = None
    on_timeout: Literal["reject", "approve"] = "reject"
    escalate: Escalation | None = None
    fields: dict[Annotated[str, Field(pattern=INPUT_NAME)], InputSpec] = Field(default_factory=dict)


class ApprovalStep(_StepCommon):
    """An approval gate."""

    approval: ApprovalSpec


class NotifySpec(_Strict):
    """A message posted through the chat adapter."""

    text: str
    channel: str | None = None
    thread: StrictBool = True


class NotifyStep(_StepCommon):
    """A notification."""

    notify: NotifySpec
    timeout: Duration | None = None
    retry: RetryPolicy | None = None
    for_each: str | None = None
    max_parallel: Annotated[StrictInt, Field(ge=1, le=64)] = 4


STEP_KINDS: dict[str, type[_StepCommon]] = {
    "uses": CallStep,
    "approval": ApprovalStep,
    "notify": NotifyStep,
}


def step_kind_key(value: Any) -> str | None:
    """Which kind key (``uses``/``approval``/``notify``) a raw step has, if exactly one."""
    if isinstance(value, dict):
        found = [key for key in STEP_KINDS if key in value]
        return found[0] if len(found) == 1 else None
    for key, cls in STEP_KINDS.items():
        if isinstance(value, cls):
            return key
    return None


Step = Annotated[
    Annotated[CallStep, Tag("uses")]
    | Annotated[ApprovalStep, Tag("approval")]
    | Annotated[NotifyStep, Tag("notify")],
    Discriminator(step_kind_key),
]


class RunbookHeader(_Strict):
    """Every top-level key except ``steps``."""

    name: Annotated[str, Field(pattern=RUNBOOK_NAME)]
    title: str | None = None
    description: str | None = None
    channel: str | None = None
    run_by: Who | None = None
    inputs: dict[Annotated[str, Field(pattern=INPUT_NAME)], InputSpec] = Field(default_factory=dict)
    triggers: list[Trigger] = Field(default_factory=list)
    max_concurrent: Annotated[StrictInt, Field(ge=1, le=10_000)] | None = None
    concurrency_key: str | None = None


class Runbook(RunbookHeader):
    """A whole runbook."""

    steps: list[Step] = Field(min_length=1)

    @property
    def display_title(self) -> str:
        return self.title or self.name

    def step(self, step_id: str) -> CallStep | ApprovalStep | NotifyStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def step_ids(self) -> list[str]:
        return [step.id for step in self.steps]

    def needs_of(self, index: int) -> list[str]:
        """The effective needs of the step at ``index`` (default: the step before it)."""
        step = self.steps[index]
        if step.needs is not None:
            return list(step.needs)
        return [] if index == 0 else [self.steps[index - 1].id]


AnyStep = CallStep | ApprovalStep | NotifyStep


def trigger_document(trigger: Trigger) -> dict[str, Any]:
    """A trigger as written, for people and the API: durations in their unit form (``1h``)."""
    data: dict[str, Any] = trigger.model_dump(mode="json", by_alias=True, exclude_none=True)
    for kind, key in (("alert", "dedup_window"), ("schedule", "every")):
        spec = data.get(kind)
        if isinstance(spec, dict) and isinstance(spec.get(key), (int, float)):
            spec[key] = format_duration(float(spec[key]))
    return data
