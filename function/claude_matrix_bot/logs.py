"""Logging to stderr, with secrets masked as a last line of defence.

Code never logs a token on purpose; this filter catches the accident (a library
echoing a request, an exception carrying a body). Every secret the process
loads is registered here before it is used.
"""

from __future__ import annotations

import logging
import sys
import threading

_secrets: set[str] = set()
_lock = threading.Lock()
MASK = "[redacted]"


def register_secret(*values: str | None) -> None:
    with _lock:
        # Very short values would mask ordinary words; real tokens are long.
        _secrets.update(v for v in values if v and len(v) >= 8)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


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


def configure_logging(level: str = "INFO") -> None:
    """Idempotent: entry points call it; tests may call it again."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "_cmb", False):
            return
    handler = logging.StreamHandler(sys.stderr)
    handler._cmb = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level)
    # Chatty libraries that may echo request details at DEBUG stay at WARNING.
    for name in ("urllib3", "kubernetes", "botocore", "boto3", "httpx", "httpcore", "nio", "aiohttp", "peewee"):
        logging.getLogger(name).setLevel(logging.WARNING)
