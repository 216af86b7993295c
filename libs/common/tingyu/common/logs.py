"""Log records as text or as one JSON object per line, with what a log stack indexes them by.

The request id (set by the API's middleware), the job id (set for the message a consumer handles:
a command's `Nats-Msg-Id` is its job id) and the machine uuid live in context variables, so every
record logged while handling them carries them without being passed around; a record may also
name them itself with `extra={"job_id": ..., "uuid": ...}`.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from typing import Any, Literal

request_id: ContextVar[str] = ContextVar("request_id", default="")
job_id: ContextVar[str] = ContextVar("job_id", default="")
machine: ContextVar[str] = ContextVar("machine", default="")

CONTEXT = {"request_id": request_id, "job_id": job_id, "uuid": machine}


class ContextFilter(logging.Filter):
    """Copies the context variables onto every record (a record's own `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for field, var in CONTEXT.items():
            if not getattr(record, field, ""):
                setattr(record, field, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, service, level, logger, message, ids, and the traceback."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "service": self.service,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT:
            value = getattr(record, field, "")
            if value:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(service: str, level: str = "INFO", fmt: Literal["text", "json"] = "text") -> None:
    """The root logger of this process: text lines prefixed with the service name, or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("nats").setLevel(logging.WARNING)
