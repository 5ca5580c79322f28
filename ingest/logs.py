"""Structured logs: one JSON object per line, never a secret.

``JsonFormatter`` writes ``ts``, ``level``, ``logger``, ``msg`` and any
``extra`` fields a log call passes (``request_id``, ``surface``, ``key_id``
...). It never writes request or response bodies or headers: extra fields
with such names are dropped, and anything in the message that looks like a
virtual key (``ml-...``) or a provider key (``sk-...``) is masked, so a
careless log call cannot leak one.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}
_NEVER_LOGGED = frozenset({"authorization", "x-api-key", "api-key", "api_key", "key", "body",
                           "payload", "headers", "request_body", "response_body"})
_SECRET = re.compile(r"\b(ml-|sk-ant-|sk-)[A-Za-z0-9_\-]{8,}")


def mask_secrets(text: str) -> str:
    return _SECRET.sub(lambda match: match.group(1) + "[masked]", text)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with its safe ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name,
            "msg": mask_secrets(record.getMessage()),
        }
        for name, value in vars(record).items():
            if name in _STANDARD_ATTRS or name in _NEVER_LOGGED or name.startswith("_"):
                continue
            entry[name] = mask_secrets(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = mask_secrets(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class _JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler ``configure_logging`` installed, so a second call replaces it."""


def configure_logging(log_format: Literal["json", "text"], level: int = logging.INFO) -> None:
    """Send the gateway's (and uvicorn's) log lines to stderr in ``log_format``.

    Idempotent. Only plain stderr stream handlers are replaced, so handlers a
    test runner or an operator added (files, capture) keep working.
    """
    if log_format != "json":
        return
    formatter = JsonFormatter()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) in (logging.StreamHandler, _JsonHandler):
            root.removeHandler(handler)
    handler = _JsonHandler(sys.stderr)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        for existing in logging.getLogger(name).handlers:
            existing.setFormatter(formatter)
