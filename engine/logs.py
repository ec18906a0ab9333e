"""How the engine's log lines look: text for people (the default), or one JSON object per
line for a log pipeline (``campaign --log-format json`` or ``CAMPAIGN_LOG_FORMAT=json``).

A JSON line carries ``timestamp`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``, the
structured fields the engine passes with ``extra=`` (``run_id``, ``message_id``, ``channel``,
...), and ``exception`` with the traceback when there is one.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

LOG_FORMATS = ("text", "json")

# Every attribute a LogRecord has of its own; the rest came with extra=.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(*, debug: bool, log_format: str) -> None:
    """Log to stderr at DEBUG (``debug``) or WARNING, as text or JSON lines."""
    level = logging.DEBUG if debug else logging.WARNING
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        # force: the handlers of anything configured before (a library) would print text.
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        logging.basicConfig(level=level, stream=sys.stderr)


__all__ = ["LOG_FORMATS", "JsonFormatter", "configure_logging"]
