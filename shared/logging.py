"""JSON logs, one object per line: the time in UTC (ISO 8601, milliseconds, `Z`), the level, the logger, the message
(terminal colour codes taken out: a library's coloured text is not for a JSON line), the service, and on every line
the request id and the trace id (null outside a request, or when the caller sent no W3C `traceparent`)."""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonFormatter

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
trace_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")  # CSI sequences: colours, cursor moves
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a W3C `traceparent` header (version 00), or None if it is absent or not one (all-zero ids
    are invalid by the specification)."""
    if not traceparent or len(traceparent) != 55:
        return None
    m = TRACEPARENT.match(traceparent)
    if m is None or m.group(1) == "0" * 32 or m.group(2) == "0" * 16:
        return None
    return m.group(1)


def valid_traceparent(value: str | bytes | None) -> str | None:
    """`value` (a header's) if it is a valid W3C `traceparent` (version 00), else None."""
    if value is None or len(value) != 55:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return value if trace_id_of(value) is not None else None


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.request_id = request_id_var.get()
        record.trace_id = trace_id_var.get()
        return True


class _Formatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def formatMessage(self, record: logging.LogRecord) -> str:
        return ANSI.sub("", super().formatMessage(record))

    def process_log_record(self, log_data: dict[str, object]) -> dict[str, object]:
        for key in ("message", "exc_info", "stack_info"):
            value = log_data.get(key)
            if isinstance(value, str) and "\x1b" in value:
                log_data[key] = ANSI.sub("", value)
        return log_data


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route every logger (uvicorn's included) to stdout as JSON. Safe to call more than once."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        _Formatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(trace_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(_ContextFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our middleware logs each request, with its id
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
