"""Usage answers shaped like the real endpoint's (docs/design.md §2), for the fake to serve."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def iso(moment: datetime, *, jitter_us: int = 600956) -> str:
    """Format like the real endpoint: `…:59:59.600956+00:00`-style sub-seconds."""
    return moment.replace(microsecond=jitter_us % 1_000_000).isoformat()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def payload(
    *,
    five_hour: tuple[float, datetime | None] | None = None,
    weekly: Mapping[str, tuple[float, datetime | None] | None] | None = None,
    jitter_us: int = 600956,
) -> dict[str, Any]:
    """A usage answer shaped like the real one, unknown keys included."""
    out: dict[str, Any] = {
        "five_hour": None,
        "seven_day": None,
        "seven_day_opus": None,
        "seven_day_oauth_apps": None,
        "extra_usage": {"is_enabled": False, "monthly_limit": None},
        "limits": [],
    }
    if five_hour is not None:
        out["five_hour"] = _bucket(*five_hour, jitter_us)
    for name, value in (weekly or {}).items():
        out[name] = None if value is None else _bucket(*value, jitter_us)
    return out


def _bucket(utilization: float, resets_at: datetime | None, jitter_us: int) -> dict[str, Any]:
    return {"utilization": utilization, "resets_at": None if resets_at is None else iso(resets_at, jitter_us=jitter_us)}
