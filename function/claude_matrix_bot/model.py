"""Domain values shared by the core and the adapters. All frozen."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

AlertKind = Literal["armed", "threshold", "reset_shift", "forecast", "degraded", "recovered"]

FIVE_HOUR = "five_hour"
WEEKLY_PREFIX = "seven_day"


def is_weekly(bucket: str) -> bool:
    """Weekly buckets are the `seven_day*` keys (DESIGN §1): new ones need no code change."""
    return bucket.startswith(WEEKLY_PREFIX)


@dataclass(frozen=True, slots=True)
class BucketReading:
    """One bucket as the usage endpoint reported it. `utilization` is a percent."""

    utilization: float
    resets_at: datetime | None


@dataclass(frozen=True, slots=True)
class Reading:
    """One answer of the usage endpoint: the buckets that were objects, by name.

    Buckets that came back `null` are listed in `null_buckets` so the baseline can
    say they exist but are unused.
    """

    taken_at: datetime
    buckets: dict[str, BucketReading]
    null_buckets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Alert:
    """One message for the room. `id` is stable: the same alert always gets the same id,
    and it doubles as the Matrix transaction id so a retry never duplicates."""

    id: str
    kind: AlertKind
    plain: str
    html: str
    bucket: str | None = None
    created_at: datetime | None = None
    # Kind-specific fields: threshold, old_resets_at/new_resets_at, projected_at, ...
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The stdout-sink / outbox shape (DESIGN §3): details are flattened in."""
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "bucket": self.bucket}
        out.update(self.details)
        out["plain"] = self.plain
        out["html"] = self.html
        if self.created_at is not None:
            out["created_at"] = self.created_at.isoformat()
        return out
