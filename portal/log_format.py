"""One JSON object per log line, for log shippers and ``jq``.

A small ``logging.Formatter`` instead of a library: the portal needs a flat
object with a fixed set of keys plus whatever a call passes with ``extra=``,
and that is a few lines over the standard library.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

# Attributes every LogRecord has; anything else on a record came from
# extra= or from a filter and goes into the line as is.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))
) | {"message", "asctime", "color_message"}
# Django passes the request (for runserver, the socket) with its log lines;
# the message already names what matters of it.
_OBJECTS_NAMED_IN_MESSAGE = frozenset({"request"})


class JsonFormatter(logging.Formatter):
    """Formats a record as a JSON object: time, level, logger, message,
    request_id, step, then the record's extra fields and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "step": getattr(record, "step", None),
            "process": record.process,
        }
        for name, value in vars(record).items():
            if name in _STANDARD_ATTRIBUTES or name in _OBJECTS_NAMED_IN_MESSAGE or name in entry:
                continue
            entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)
