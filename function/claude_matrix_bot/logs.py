"""Logging to stderr, with secrets masked as a last line of defence.

Code never logs a token on purpose; this filter catches the accident (a library
echoing a request, an exception carrying a body). Every secret the process
loads is registered here before it is used.

`LOG_FORMAT=json` (for a cluster's log collector) writes one JSON object per
line: time, level, logger, message and the id of the cycle the line belongs
to (`cycle_scope`), masked by the same filter as the text lines.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TextIO

MASK = "[redacted]"
# Very short values would mask ordinary words; real tokens are long.
MIN_SECRET_CHARS = 8


class Redactor:
    """The secrets this process has seen, and their masking: text that quotes one
    gets MASK in its place. Thread-safe: a warm HTTP instance serves threads."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        with self._lock:
            self._secrets.update(v for v in values if v and len(v) >= MIN_SECRET_CHARS)

    def __call__(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


_default = Redactor()


def default_redactor() -> Redactor:
    return _default


def register_secret(*values: str | None) -> None:
    _default.add(*values)


def redact(text: str) -> str:
    return _default(text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.exc_info:
            record.msg, record.args = cleaned, None
            if record.exc_info:
                # Tracebacks are for programming errors; keep the type, drop the text.
                exc = record.exc_info[1]
                record.msg = f"{cleaned} ({type(exc).__name__}: {redact(str(exc))})"
                record.exc_info = None
                record.exc_text = None
        return True


_cycle_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("cmb_cycle_id", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def cycle_scope() -> Iterator[str]:
    """Every log line inside carries one new cycle id (threads and asyncio tasks started
    inside inherit it: a context variable)."""
    token = _cycle_id.set(uuid.uuid4().hex[:12])
    try:
        yield _cycle_id.get() or ""
    finally:
        _cycle_id.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line. The message is already masked by RedactingFilter."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "cycle": _cycle_id.get(),
        }
        return json.dumps(doc, ensure_ascii=False)


def _our_handler() -> logging.Handler | None:
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_cmb", False):
            return handler
    return None


def set_log_format(log_format: str) -> None:
    """Switch the bot's stderr handler to `text` or `json` (LOG_FORMAT, once settings are read)."""
    handler = _our_handler()
    if handler is not None:
        handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at emit time, like logging's last-resort handler.

    A handler bound to the stderr of the moment it was made keeps writing to a stream that
    may since have been replaced and closed (a test runner's capture, a daemonising parent):
    logging then prints an error dump, record arguments included, instead of the line."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr


def configure_logging(level: str = "INFO") -> None:
    """Idempotent: entry points call it; tests may call it again."""
    if _our_handler() is not None:
        return
    root = logging.getLogger()
    handler = _CurrentStderrHandler()
    handler._cmb = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level)
    # Chatty libraries that may echo request details at DEBUG stay at WARNING.
    for name in ("urllib3", "kubernetes", "botocore", "boto3", "httpx", "httpcore", "nio", "aiohttp", "peewee"):
        logging.getLogger(name).setLevel(logging.WARNING)
