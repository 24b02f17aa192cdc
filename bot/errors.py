"""The exception tree of Runbook Bot.

Every error the product raises on purpose derives from one root, so callers
can tell "our" failures from bugs. Errors carry structured fields; code never
branches on message text.

    RunbookBotError
    ├── RunbookLoadError          a runbook file or set did not load (carries diagnostics)
    ├── InputError                run inputs that do not fit the declared inputs
    ├── ConfigError               bad settings / environment
    ├── NotFoundError             unknown runbook, run or step
    ├── PermissionDenied          someone may not do what they asked
    ├── ConflictError             a state change that does not fit the current state
    ├── EngineStopping            the engine is stopping: it starts nothing new
    ├── StoreError                the data directory cannot be read or written
    │   ├── DataDirLocked         another process owns the data directory
    │   ├── CorruptStateError     a state file or journal line cannot be read
    │   └── AuditGapError         the snapshot saw records the audit log no longer holds
    ├── AuditError                the audit log cannot be written or verified
    ├── ChatError                 the chat adapter could not post or update a message
    └── ConnectorError            a connector action failed (see connectors.base)
        ├── RetryableError        worth another attempt (timeouts, 5xx, 429, connection)
        ├── AuthenticationError   credentials refused by the vendor
        └── NotConfiguredError    the connector has no credentials
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class RunbookBotError(Exception):
    """Root of every error raised on purpose by Runbook Bot."""


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found while loading a runbook, pointing into its file.

    Attributes:
        path: the file, as given to the loader.
        line: 1-based line in the original file.
        column: 1-based column in the original file.
        message: what is wrong, and where possible what was meant.
        severity: ``error`` or ``warning``.
    """

    path: str
    line: int
    column: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.path}:{self.line}:{self.column}: {prefix}{self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "severity": self.severity,
        }


class RunbookLoadError(RunbookBotError):
    """Runbooks did not load; ``diagnostics`` lists every problem found."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class InputError(RunbookBotError):
    """Run inputs that do not match the runbook's declared inputs."""

    def __init__(self, message: str, *, input_name: str | None = None) -> None:
        self.input_name = input_name
        super().__init__(message)


class ConfigError(RunbookBotError):
    """Settings or environment that cannot work."""


class NotFoundError(RunbookBotError):
    """An unknown runbook, run or step."""

    def __init__(self, message: str, *, kind: str = "", key: str = "") -> None:
        self.kind = kind
        self.key = key
        super().__init__(message)


class PermissionDenied(RunbookBotError):
    """Someone asked for something they may not do."""


class ConflictError(RunbookBotError):
    """A change that does not fit the current state (a run that already ended, ...)."""


class EngineStopping(RunbookBotError):
    """The engine is stopping (a shutdown or an interrupt): it starts nothing new.

    Runs stop where they are, between steps, and carry on after a restart.
    """


class StoreError(RunbookBotError):
    """The data directory cannot be read or written."""


class DataDirLocked(StoreError):
    """Another process owns the data directory."""

    def __init__(self, message: str, *, owner: dict[str, object] | None = None) -> None:
        self.owner = owner or {}
        super().__init__(message)


class CorruptStateError(StoreError):
    """A state file or journal record that cannot be read."""


class AuditGapError(StoreError):
    """The snapshot is ahead of the audit log: records were cut from the log's end.

    Attributes:
        expected_seq: the last seq the snapshot saw.
        found_seq: the last seq the audit log holds.
    """

    def __init__(self, message: str, *, expected_seq: int, found_seq: int) -> None:
        self.expected_seq = expected_seq
        self.found_seq = found_seq
        super().__init__(message)


class AuditError(RunbookBotError):
    """The audit log cannot be written, read or verified."""


class ChatError(RunbookBotError):
    """A chat message could not be posted or updated (``channel_not_found``, ...)."""

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False) -> None:
        self.code = code
        self.retryable = retryable
        super().__init__(message)


class ConnectorError(RunbookBotError):
    """A connector action failed.

    Attributes:
        retryable: whether another attempt may succeed.
        retry_after: seconds the vendor asked us to wait, if it said.
        connector: the connector's name, when known.
        no_effect: the request surely had no effect: it was never sent (the
            connection could not be made) or the vendor refused it unprocessed
            (HTTP 429, 503). Only then is an action that is not idempotent
            tried again; anything else may have acted (a timeout, a reset
            after sending, 500/502/504). False when unknown.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        retry_after: float | None = None,
        connector: str | None = None,
        status: int | None = None,
        no_effect: bool = False,
    ) -> None:
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after
        self.no_effect = no_effect
        self.connector = connector
        self.status = status
        super().__init__(message)


class RetryableError(ConnectorError):
    """A failure worth another attempt: timeouts, connection errors, 5xx, 429."""

    retryable = True


class AuthenticationError(ConnectorError):
    """The vendor refused our credentials."""


class NotConfiguredError(ConnectorError):
    """The connector has no credentials configured."""
