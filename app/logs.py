"""Log lines that carry their ids: the `extra={...}` of a call (shop, delivery, platform, topic,
job ids) is printed with the message, as `key=value` pairs (LOG_FORMAT=text, the default) or as
one JSON object per line (LOG_FORMAT=json). Messages are constant and extras hold ids only
(STYLE rule 24), so neither format carries personal data.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """Return what the call passed in `extra=`, in the order it was given."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """`time LEVEL logger message key=value ...`"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = " ".join(f"{k}={v}" for k, v in extras(record).items())
        if not pairs:
            return line
        head, newline, trace = line.partition("\n")  # keep a traceback below the pairs
        return f"{head} {pairs}{newline}{trace}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the extras, and a traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **extras(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str, fmt: str) -> None:
    """Configure the root logger once per process (a no-op when it already has handlers)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler])
