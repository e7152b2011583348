"""Parsers of single setting values (docs/design.md §3): each takes the variable's text (never
blank) and returns the value or raises ValueError saying what was expected; the caller names
the variable."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Literal
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .url_policy import public_url

AlertSinkName = Literal["matrix", "stdout"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LOG_LEVELS: tuple[LogLevel, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")

# Shorter trigger tokens are guessable, and the log redactor cannot mask them
# without masking ordinary words (logs.Redactor ignores short values).
MIN_TRIGGER_TOKEN_CHARS = 16
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# Secret names are DNS-1123 subdomains, namespaces DNS-1123 labels.
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# The shape of an IANA zone name (Europe/Berlin, America/Argentina/Buenos_Aires, Etc/GMT+5).
_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$")


def boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected one of 1/0, true/false, yes/no, on/off, got {text!r}")


def whole(minimum: int = 0) -> Callable[[str], int]:
    """A whole number of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if number < minimum:
            raise ValueError(f"must be at least {minimum}, got {number}")
        return number

    return parse


def plain(value: str) -> str:
    return value


def thresholds(text: str) -> tuple[int, ...]:
    values: set[int] = set()
    for raw in text.split(","):
        part = raw.strip().rstrip("%")
        if not part:
            continue
        try:
            number = int(part)
        except ValueError:
            raise ValueError(f"expected comma-separated whole percents like 50,80, got {text!r}") from None
        if not 0 < number <= 100:
            raise ValueError(f"thresholds must be between 1 and 100, got {number}")
        values.add(number)
    if not values:
        raise ValueError("expected at least one threshold, e.g. 50,80")
    return tuple(sorted(values))


def http_url(text: str) -> str:
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"expected an http(s) URL, got {public_url(text)!r}")
    return text.rstrip("/")


def instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected an ISO-8601 instant like 2026-01-02T03:04:05Z, got {text!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"expected an instant with a timezone (e.g. a trailing Z), got {text!r}")
    return moment.astimezone(UTC)


def secret_name(text: str) -> str:
    if len(text) > 253 or not _SUBDOMAIN.match(text):
        raise ValueError(
            f"{text!r} is not a valid Secret name (a DNS-1123 subdomain: lower-case letters, digits, '-', '.')"
        )
    return text


def namespace(text: str) -> str:
    if len(text) > 63 or not _LABEL.match(text):
        raise ValueError(f"{text!r} is not a valid namespace (a DNS-1123 label: lower-case letters, digits, '-')")
    return text


def timezone_name(text: str) -> tzinfo:
    """`TIMEZONE`: an IANA name, looked up in the zone data (the `tzdata` package on a slim image)."""
    if _ZONE_NAME.match(text):
        try:
            return ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory such as "Europe"
            pass
    raise ValueError(f"expected an IANA time zone name like Europe/Berlin or UTC, got {text!r}")


def user_agent(text: str) -> str:
    # A header value: anything but printable ASCII fails only later, when the request is built.
    if not all(" " <= ch <= "~" for ch in text):
        raise ValueError(f"must be printable ASCII on a single line, got {text!r}")
    return text


def log_level(text: str) -> LogLevel:
    for level in LOG_LEVELS:
        if text.upper() == level:
            return level
    raise ValueError(f"expected one of {', '.join(LOG_LEVELS)} (any case), got {text!r}")


def log_format(text: str) -> LogFormat:
    lowered = text.lower()
    if lowered == "text":
        return "text"
    if lowered == "json":
        return "json"
    raise ValueError(f"expected 'text' or 'json', got {text!r}")


def sink(text: str) -> AlertSinkName:
    if text == "matrix":
        return "matrix"
    if text == "stdout":
        return "stdout"
    raise ValueError(f"expected 'matrix' or 'stdout', got {text!r}")


def trigger_token(text: str) -> str:
    # The value is a secret: the reason never quotes it.
    if len(text) < MIN_TRIGGER_TOKEN_CHARS:
        raise ValueError(
            f"must be at least {MIN_TRIGGER_TOKEN_CHARS} characters (got {len(text)}): a short token is "
            "guessable and too short to be masked in logs; e.g. `openssl rand -hex 24`"
        )
    if any(ch in text for ch in "\r\n\x00"):
        raise ValueError("contains a line break or NUL (value not shown)")
    return text
