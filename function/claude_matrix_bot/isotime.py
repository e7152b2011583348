"""Instants as text: one way for state.json, `status` and the HTTP answers."""

from __future__ import annotations

from datetime import UTC, datetime

# The last instant an upstream or stored time may name: later ones overflow once rounded
# to the minute or moved by a day (issue 21: `9999-12-31T23:59:45Z` crashed the cycle).
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC with a trailing `Z` (None stays None)."""
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
