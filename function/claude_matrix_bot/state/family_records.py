"""The credit, banked-reset and account families' values in the state (docs/design.md §8);
state/families.py reads and writes them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class CreditState:
    """A credit budget as last seen, and which of its events were said (`new`, `80`, `72h`...)."""

    key: str
    limit: float
    used: float
    remaining: float
    utilization: float
    expires_at: datetime | None = None
    said: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GrantState:
    """A banked-reset grant as last seen, and which of its events were said."""

    id: str
    resets_left: int
    label: str | None = None
    resets_total: int | None = None
    ends_at: datetime | None = None
    clears: tuple[str, ...] = ()
    said: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FamilyState:
    credits: tuple[CreditState, ...] = ()
    grants: tuple[GrantState, ...] = ()
    # The limit episode now (the account at a limit since then; None: not at one) and
    # whether "a reset is usable now" was said in it.
    at_limit_since: datetime | None = None
    usable_said: bool = False
    # `locked_reason` values said in this lock episode (forgotten when nothing is locked).
    locked: tuple[str, ...] = ()
    # The last `seven_day_breakdown` seen, (display name, percent), and the weekly window
    # (`seven_day`'s) it was seen in: the digest of that window says where the week went.
    breakdown: tuple[tuple[str, float], ...] = ()
    breakdown_window: datetime | None = None

    def empty(self) -> bool:
        return self == FamilyState()
