"""Logging: text or JSON lines, with the run and step ids on every line, secrets redacted."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

from bot.redact import REDACTOR

run_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)
step_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("step_id", default=None)


class ContextFilter(logging.Filter):
    """Adds ``run_id`` and ``step_id`` from the current task's context; redacts the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = run_id_var.get()
        record.step_id = step_id_var.get()
        message = record.getMessage()
        redacted = REDACTOR.text(message)
        if redacted != message or record.args:
            record.msg = redacted
            record.args = ()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "run_id": getattr(record, "run_id", None),
            "step_id": getattr(record, "step_id", None),
        }
        if record.exc_info:
            data["exception"] = REDACTOR.text(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ids = ""
        run_id = getattr(record, "run_id", None)
        if run_id:
            step = getattr(record, "step_id", None)
            ids = f" [{run_id}{'/' + step if step else ''}]"
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        text = f"{stamp} {record.levelname.lower():<7} {record.name}{ids}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + REDACTOR.text(self.formatException(record.exc_info))
        return text


def setup_logging(fmt: str = "text", level: str = "info", stream: Any = None) -> None:
    """Configure the root logger once (idempotent)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "uvicorn.access", "apscheduler", "slack_bolt", "slack_sdk"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
