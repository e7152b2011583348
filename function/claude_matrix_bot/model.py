"""Domain values shared by the core and the adapters. All frozen."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .family_values import BankedResets, Breakdown, CreditBudget

# The source of truth for alert kinds: the outbox and the stdout sink accept these only.
AlertKind = Literal[
    "armed",
    "threshold",
    "reset_shift",
    "forecast",
    "degraded",
    "recovered",
    "extra_usage",
    "digest",
    "session",
    "credit",
    "banked_reset",
    "locked",
]

# Families that are not a window: their stdout lines carry no `bucket` (docs/design.md §8).
_NO_BUCKET_KINDS = frozenset({"extra_usage", "credit", "banked_reset"})

# The answer's names of the session bucket and of the weekly ones (docs/design.md §2);
# which rules apply to them is core/family_table.py's table.
FIVE_HOUR = "five_hour"
WEEKLY_PREFIX = "seven_day"


@dataclass(frozen=True, slots=True)
class BucketReading:
    """One bucket as the usage endpoint reported it. `utilization` is a percent.

    `is_active` and `severity` come from the answer's `limits[]` entry for this
    bucket (docs/design.md §2): the server's own word on which limit binds now and how
    close it is (`normal`, `warn`/`warning`). None when only a legacy key spoke.
    """

    utilization: float
    resets_at: datetime | None
    is_active: bool | None = None
    severity: str | None = None

    @property
    def binding(self) -> bool:
        return self.is_active is True


@dataclass(frozen=True, slots=True)
class ExtraUsage:
    """Paid overage as the answer reported it (`spend`, else `extra_usage`; docs/design.md §2).

    Amounts are in minor units of `currency` with `exponent` decimals (9221 with
    exponent 2 is 92.21). `enabled` is None when the answer does not say.
    `percent` is of the monthly cap: used/limit when both are known, else the
    percent the answer gave, else None.
    """

    enabled: bool | None
    used: int | None
    limit: int | None
    currency: str
    exponent: int
    percent: float | None
    disabled_reason: str | None = None
    source: Literal["spend", "extra_usage"] = "spend"


@dataclass(frozen=True, slots=True)
class Reading:
    """One answer of the usage endpoint: the buckets that were objects, by name.

    Buckets that came back `null` are listed in `null_buckets` so the baseline can
    say they exist but are unused. `unknown_numbers` names where the answer
    carried numbers this release does not read (a changed endpoint is noticed).
    """

    taken_at: datetime
    buckets: dict[str, BucketReading]
    null_buckets: tuple[str, ...] = ()
    extra_usage: ExtraUsage | None = None
    unknown_numbers: tuple[str, ...] = ()
    # The newer families (docs/design.md §8): credit budgets, banked resets (`cedar_ember`),
    # each window's non-null `locked_reason` as (bucket, reason), and `seven_day_breakdown`.
    credits: tuple[CreditBudget, ...] = ()
    banked: BankedResets | None = None
    locked: tuple[tuple[str, str], ...] = ()
    breakdown: Breakdown | None = None


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
    # Urgent alerts go out at once, even in quiet hours, and mention MATRIX_MENTION
    # (docs/design.md §9); decided when the alert is made.
    urgent: bool = False
    # Outbox bookkeeping, not message content (never in `to_json`): when a delivery of
    # this alert was first started (Unix ms). Set means "may already be in the room".
    attempted_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The stdout-sink / outbox shape (docs/design.md §3): details are flattened in."""
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "urgent": self.urgent}
        # "bucket (where one applies)": extra-usage lines carry none (docs/design.md §2).
        if self.bucket is not None or self.kind not in _NO_BUCKET_KINDS:
            out["bucket"] = self.bucket
        out.update(self.details)
        out["plain"] = self.plain
        out["html"] = self.html
        if self.created_at is not None:
            out["created_at"] = self.created_at.isoformat()
        return out
