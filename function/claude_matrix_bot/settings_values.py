"""Parsers of single setting values (docs/design.md §3): each takes the variable's text and
returns the value or raises ValueError saying what was expected (the caller names the variable)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Secret names are DNS-1123 subdomains, namespaces DNS-1123 labels.
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# The shape of an IANA zone name (Europe/Berlin, America/Argentina/Buenos_Aires, Etc/GMT+5).
_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$")


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
