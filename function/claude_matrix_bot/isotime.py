"""Instants as text: one way for state.json, `status` and the HTTP answers."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC with a trailing `Z` (None stays None)."""
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
