"""The newer limit families as the usage answer reports them (docs/design.md §2, §8):
credit budgets, banked usage-limit resets (`cedar_ember`), where the week went
(`seven_day_breakdown`). Plain frozen values; the parser builds them, the core reads them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class CreditBudget:
    """A prepaid amount with an expiry, named after its key (`iguana_necktie`).

    Dollars are USD floats as the answer gives them; `used`/`remaining` are worked out
    from each other and `limit` when one is missing. `utilization` is the percent used.
    `expires_at` is the answer's `resets_at` (when the credit expires), or None."""

    key: str
    limit: float
    used: float
    remaining: float
    utilization: float
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class ResetGrant:
    """One grant of banked usage-limit resets (`cedar_ember.grants[]`). The bot reads it
    and says so; it never claims a reset (the claim spends a scarce grant)."""

    id: str
    label: str | None
    resets_left: int
    resets_total: int | None
    starts_at: datetime | None
    ends_at: datetime | None
    clears: tuple[str, ...] = ()
    usable_now: bool | None = None
    paused: bool | None = None
    use_requires_limit: bool | None = None

    def available(self, now: datetime) -> bool:
        """Resets left, started, not ended, not paused."""
        started = self.starts_at is None or self.starts_at <= now
        ended = self.ends_at is not None and self.ends_at <= now
        return self.resets_left > 0 and started and not ended and self.paused is not True


@dataclass(frozen=True, slots=True)
class BankedResets:
    """The `cedar_ember` block: whether the account may use banked resets, whether it is
    at a limit now, and its grants."""

    eligible: bool | None
    ineligible_reason: str | None
    at_limit: bool | None
    grants: tuple[ResetGrant, ...] = ()


@dataclass(frozen=True, slots=True)
class BreakdownRow:
    key: str
    display_name: str
    percent: float


@dataclass(frozen=True, slots=True)
class Breakdown:
    """`seven_day_breakdown`: where this week's use went, by surface. Not a limit."""

    rows: tuple[BreakdownRow, ...]
    as_of: datetime | None = None
    window_started_at: datetime | None = None

    def summary(self) -> str:
        """`Claude Code 83%, Chats 17%`: rows with any use, largest first."""
        return breakdown_summary((r.display_name, r.percent) for r in self.rows)


def breakdown_summary(rows: Iterable[tuple[str, float]]) -> str:
    """`Claude Code 83%, Chats 17%` from (display name, percent) rows, as the answer gives them
    or as the state keeps them: rows with any use, largest first."""
    used = sorted((row for row in rows if row[1] >= 0.5), key=lambda row: -row[1])
    return ", ".join(f"{name} {percent:.0f}%" for name, percent in used)
