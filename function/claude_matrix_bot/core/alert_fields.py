"""The fields each alert kind carries on its stdout line (docs/design.md §3, §8), declared once.

Besides `id`, `kind`, `urgent`, `bucket`, `plain`, `html` and `created_at`, which every
line has, an alert's details may hold only the fields its kind declares here: `make`
refuses any other, the README's field list is checked against this table, and the tests
read it. Times are UTC ISO-8601; amounts of money in minor units of `currency`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from ..model import AlertKind


class ArmedFields(TypedDict, total=False):
    note: str | None


class ThresholdFields(TypedDict, total=False):
    threshold: int
    utilization: float
    resets_at: str | None


class ResetShiftFields(TypedDict, total=False):
    old_resets_at: str
    new_resets_at: str


class ForecastFields(TypedDict, total=False):
    projected_at: str
    resets_at: str
    burn_rate_per_hour: float
    samples: int
    utilization: float
    chart: dict[str, Any]


class DegradedFields(TypedDict, total=False):
    error: str
    failures: int


class RecoveredFields(TypedDict, total=False):
    pass


class ExtraUsageFields(TypedDict, total=False):
    started: bool
    threshold: int
    used: int | None
    limit: int | None
    currency: str
    exponent: int
    percent: float | None
    period_start: str


class DigestFields(TypedDict, total=False):
    window_start: str
    resets_at: str
    peak: float
    passed: dict[str, str | None]
    limit_hit_at: str | None
    limit_hit: bool
    busiest_day: str | None
    breakdown: dict[str, float]  # where the week went (the last seven_day_breakdown)
    chart: dict[str, Any]


class SessionFields(TypedDict, total=False):
    event: str  # limit | back | threshold
    threshold: int
    utilization: float | None
    resets_at: str | None


class CreditFields(TypedDict, total=False):
    event: str  # new | <threshold> | 72h | 24h
    credit: str  # the key it comes under (`iguana_necktie`)
    threshold: int
    # Dollars as the answer gives them (USD floats, docs/design.md §2), not minor units.
    limit: float
    used: float
    remaining: float
    currency: str
    expires_at: str | None


class BankedResetFields(TypedDict, total=False):
    event: str  # available | 72h | 24h | usable_now
    grant_id: str
    resets_left: int
    ends_at: str | None


class LockedFields(TypedDict, total=False):
    locked_reason: str


FIELDS: Mapping[AlertKind, type] = {
    "armed": ArmedFields,
    "threshold": ThresholdFields,
    "reset_shift": ResetShiftFields,
    "forecast": ForecastFields,
    "degraded": DegradedFields,
    "recovered": RecoveredFields,
    "extra_usage": ExtraUsageFields,
    "digest": DigestFields,
    "session": SessionFields,
    "credit": CreditFields,
    "banked_reset": BankedResetFields,
    "locked": LockedFields,
}


def fields_of(kind: AlertKind) -> frozenset[str]:
    """The detail fields `kind` may carry."""
    return frozenset(FIELDS[kind].__annotations__)


def check(kind: AlertKind, details: Mapping[str, object]) -> None:
    """Raise ValueError for a field `kind` does not declare (a bug in a rule, never input)."""
    extra = set(details) - fields_of(kind)
    if extra:
        raise ValueError(f"{kind} alerts do not declare {sorted(extra)} (core/alert_fields.py)")
