"""Logging to stderr, with secrets masked as a last line of defence.

Code never logs a token on purpose; this filter catches the accident (a library
echoing a request, an exception carrying a body). Every secret a run loads is
given to the entry point's `Redactor` before it is used.

`LOG_FORMAT=json` (for a cluster's log collector) writes one JSON object per
line: time, level, logger, message and the id of the cycle the line belongs
to (`cycle_scope`), masked by the same filter as the text lines.
"""

from __future__ import annotations

import base64
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
from urllib.parse import quote, quote_plus

MASK = "[redacted]"
# Very short values would mask ordinary words; real tokens are long.
MIN_SECRET_CHARS = 8
# Any run of this many characters of a secret (or of one of its encodings) is masked: an
# upstream that echoes a token truncated, split across lines or re-encoded still quotes
# such a run, and 12 characters of a random token are never ordinary text (issue 21 item 6).
RUN_CHARS = 12


class Redactor:
    """The secrets one entry point has seen, and their masking. Made by the entry point
    (the CLI per run, the HTTP function once per process, so a warm instance keeps masking
    a rotated token), handed to the logging filter and to the composition root;
    thread-safe, as a warm HTTP instance serves threads.

    Masked: every run of RUN_CHARS or more characters of a secret, of its URL encoding or
    of its base64 encoding (standard and URL-safe, padded or not, at any alignment inside a
    larger encoded text), compared without case, with `-_` read as `+/`, and across
    whitespace (a token split over lines), before any caller collapses whitespace. Secrets shorter than RUN_CHARS are
    masked where they appear whole."""

    def __init__(self, *, mask: str = MASK, min_chars: int = MIN_SECRET_CHARS) -> None:
        self._secrets: set[str] = set()
        self._runs: frozenset[str] = frozenset()
        self._unprepared: set[str] = set()  # added, runs not built yet (built at first use)
        self._lock = threading.Lock()
        self.mask = mask
        self.min_chars = min_chars

    @classmethod
    def of(cls, *values: str | None, mask: str = MASK, min_chars: int = MIN_SECRET_CHARS) -> Redactor:
        redactor = cls(mask=mask, min_chars=min_chars)
        redactor.add(*values)
        return redactor

    def add(self, *values: str | None) -> None:
        with self._lock:
            new = {v for v in values if v and len(v) >= self.min_chars} - self._secrets
            self._secrets |= new
            self._unprepared |= new

    def __call__(self, text: str) -> str:
        with self._lock:
            if self._unprepared:
                # Built when first needed: a cycle that logs nothing pays nothing for it.
                runs = {run for value in self._unprepared for form in secret_forms(value) for run in _runs_of(form)}
                self._runs, self._unprepared = self._runs | runs, set()
            secrets = sorted(self._secrets, key=len, reverse=True)
            runs_now = self._runs
        if runs_now and len(text) >= RUN_CHARS:
            text = _mask_runs(text, runs_now, self.mask)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, self.mask)
        return text


def secret_forms(secret: str) -> set[str]:
    """The texts an upstream may echo `secret` as, folded (see `_fold_fast`)."""
    raw = secret.encode("utf-8")
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    for offset in range(3):
        # Inside a larger base64 text the secret starts at any byte offset mod 3: keep the
        # characters that depend on the secret's bytes alone.
        encoded = base64.b64encode(bytes(offset) + raw).decode("ascii")
        forms.add(encoded[-(-8 * offset // 6) : 8 * (offset + len(raw)) // 6])
    return {folded for form in forms if (folded := _fold_fast(form))}


# Base64's URL-safe alphabet read as the standard one: one form matches both.
_URLSAFE_AS_STD = str.maketrans("-_", "+/")


def _fold_fast(text: str) -> str:
    """Without whitespace, lower-cased, `-_` read as `+/`."""
    return "".join(text.split()).lower().translate(_URLSAFE_AS_STD)


def _runs_of(form: str) -> set[str]:
    return {form[i : i + RUN_CHARS] for i in range(len(form) - RUN_CHARS + 1)}


def _fold(text: str) -> tuple[str, list[int]]:
    """`_fold_fast(text)` character by character, and where each kept character came from."""
    kept = [(index, char.lower()[:1]) for index, char in enumerate(text) if not char.isspace()]
    return "".join(char for _, char in kept).translate(_URLSAFE_AS_STD), [index for index, _ in kept]


def _mask_runs(text: str, runs: frozenset[str], mask: str) -> str:
    # The common case first, at C speed: no run of a secret anywhere in the text. (A text
    # whose lower case changes its length takes the slow path, character by character.)
    quick = _fold_fast(text)
    if len(quick) == len("".join(text.split())) and runs.isdisjoint(_runs_of(quick)):
        return text
    folded, where = _fold(text)
    spans: list[list[int]] = []
    for i in range(len(folded) - RUN_CHARS + 1):
        if folded[i : i + RUN_CHARS] in runs:
            start, end = where[i], where[i + RUN_CHARS - 1] + 1
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
    for start, end in reversed(spans):
        text = text[:start] + mask + text[end:]
    return text


class RedactingFilter(logging.Filter):
    """Masks every record with the entry point's redactor. An exception's traceback is
    kept only at DEBUG (LOG_LEVEL), masked too; otherwise its type and message stay."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.exc_info:
            record.msg, record.args = cleaned, None
            if record.exc_info:
                exc = record.exc_info[1]
                record.msg = f"{cleaned} ({type(exc).__name__}: {redact(str(exc))})"
                debug = logging.getLogger().isEnabledFor(logging.DEBUG)
                # exc_text without exc_info: the formatters print it as it is, never the raw traceback.
                record.exc_text = redact(_TRACEBACK.formatException(record.exc_info)) if debug else None
                record.exc_info = None
        return True


_TRACEBACK = logging.Formatter()


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
        if record.exc_text:  # at DEBUG only, masked (RedactingFilter)
            doc["traceback"] = record.exc_text
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


def startup_level(raw: str | None) -> str:
    """The level to log at before the settings are read: `LOG_LEVEL` in any case, else INFO
    (a bad value is named with the other settings a moment later, docs/design.md §3)."""
    level = (raw or "").strip().upper()
    return level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO"


def configure_logging(level: str, redactor: Redactor) -> None:
    """Entry points call it with their redactor; again (tests run several entry points in
    one process), it hands the existing handler the new redactor."""
    existing = _our_handler()
    if existing is not None:
        for item in existing.filters:
            if isinstance(item, RedactingFilter):
                item.redactor = redactor
        return
    root = logging.getLogger()
    handler = _CurrentStderrHandler()
    handler._cmb = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter(redactor))
    root.addHandler(handler)
    root.setLevel(level)
    # Chatty libraries that may echo request details at DEBUG stay at WARNING.
    for name in ("urllib3", "kubernetes", "botocore", "boto3", "httpx", "httpcore", "nio", "aiohttp", "peewee"):
        logging.getLogger(name).setLevel(logging.WARNING)
