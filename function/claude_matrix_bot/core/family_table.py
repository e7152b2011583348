"""Limit families (docs/design.md §8): which rules apply to which kind of limit, as data.

A reading holds limits of several families. Each family is one `Family` row of
`FAMILIES` that declares the rules it gets; the rules of the core (`decide`, `digest`,
`messages`, `status`, the CLI's chart) look the row up and never branch on a bucket's
name. A bucket's family comes from its name in one place, `family_of`.

Adding a family touches four shipped files (the session family did; issue 24):
1. this table: its row in `FAMILIES` (a `match` or `prefix` for a family of buckets), the
   `DecideConfig` field giving its thresholds, which of reset shift, forecast, digest, chart
   and "back after the limit" apply, and its urgency in `URGENCY` (docs/design.md §9);
2. `core/alert_fields.py`: its alert kind's stdout fields (the README's table follows);
3. its rules as a step module (`core/session.py` for a family of buckets, fed the window
   event of `core/window.py`; `core/families.py` steps the credit, banked-reset and account
   families read from elsewhere in the answer), using `thresholds.crossed` for thresholds
   (`alerts.bucket_threshold` for a bucket's), `reminders` for reminders before an end,
   `alerts.make` for its alerts and `messages`' formatting for its text;
4. `core/decide.py`: the one call of that step (a family of buckets is called where the table
   says it applies, e.g. `if family.back_after_limit`).
A new bucket of a known family (`seven_day_cowork`) needs none of this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..model import FIVE_HOUR, WEEKLY_PREFIX, AlertKind

FamilyName = Literal["session", "weekly", "overage", "credit", "banked_reset", "account", "other"]


@dataclass(frozen=True, slots=True)
class Family:
    name: FamilyName
    label: str  # how a person calls a bucket of it ("Weekly Cowork" for seven_day_cowork)
    # Which buckets belong (families of buckets only): exact names, or a name prefix.
    match: tuple[str, ...] = ()
    prefix: str | None = None
    # The `DecideConfig` field holding this family's percent thresholds (None: none).
    thresholds: str | None = None
    # The alert kind its threshold crossings are said with.
    threshold_kind: AlertKind | None = None
    reset_shift: bool = False
    forecast: bool = False
    digest: bool = False
    chart: bool = False
    # "Limit reached" and "back" once per window (the session family, §8).
    back_after_limit: bool = False
    # Where its buckets stand in the armed baseline and in status (lower first).
    rank: int = 9
    # The bucket that leads its family in the baseline (seven_day before seven_day_opus).
    lead: str | None = None
    # Buckets whose readable name is not "<label> <rest of the name>".
    labels: Mapping[str, str] = field(default_factory=dict)


SESSION = Family(
    "session",
    "5-hour session",
    match=(FIVE_HOUR,),
    thresholds="session_thresholds",
    threshold_kind="session",
    reset_shift=True,
    back_after_limit=True,
    rank=0,
    lead=FIVE_HOUR,
)
WEEKLY = Family(
    "weekly",
    "Weekly",
    prefix=WEEKLY_PREFIX,
    thresholds="weekly_thresholds",
    threshold_kind="threshold",
    reset_shift=True,
    forecast=True,
    digest=True,
    chart=True,
    rank=1,
    lead=WEEKLY_PREFIX,
    labels={
        "seven_day": "Weekly (all models)",
        "seven_day_opus": "Weekly Opus",
        "seven_day_sonnet": "Weekly Sonnet",
        "seven_day_oauth_apps": "Weekly OAuth apps",
    },
)
# A bucket of a kind this release does not know: shown, and its reset shifts said.
OTHER = Family("other", "", reset_shift=True, rank=2)
OVERAGE = Family("overage", "Extra usage", thresholds="extra_usage_thresholds", threshold_kind="extra_usage", rank=3)
CREDIT = Family("credit", "Credit", thresholds="credit_thresholds", threshold_kind="credit", rank=4)
BANKED_RESET = Family("banked_reset", "Banked reset", rank=5)
ACCOUNT = Family("account", "Account", rank=6)

FAMILIES: tuple[Family, ...] = (SESSION, WEEKLY, OVERAGE, CREDIT, BANKED_RESET, ACCOUNT, OTHER)
_BUCKET_FAMILIES = tuple(f for f in FAMILIES if f.match or f.prefix)


def family_of(bucket: str) -> Family:
    """The one place a bucket's name decides its family (docs/design.md §1, §8): the legacy
    `five_hour` is the session; every `seven_day*` bucket is weekly, new ones included."""
    for family in _BUCKET_FAMILIES:
        if bucket in family.match or (family.prefix is not None and bucket.startswith(family.prefix)):
            return family
    return OTHER


def thresholds_of(family: Family, config: object) -> tuple[int, ...]:
    """The family's thresholds as configured (empty when it has none or they are off)."""
    if family.thresholds is None:
        return ()
    value: tuple[int, ...] = getattr(config, family.thresholds)
    return value


def baseline_rank(bucket: str) -> tuple[int, str]:
    """Baseline and status order: by family, each family's lead first, then by name."""
    family = family_of(bucket)
    if bucket == family.lead:
        return (2 * family.rank, "")
    return (2 * family.rank + 1, bucket)


@dataclass(frozen=True, slots=True)
class Urgency:
    """When an alert of a kind is urgent (docs/design.md §9), read from its details."""

    always: bool = False
    events: frozenset[str] = frozenset()  # details["event"] values that are urgent
    flags: frozenset[str] = frozenset()  # details keys that are urgent when true
    highest_threshold: bool = False  # crossing the highest of its family's thresholds
    at_limit: bool = False  # a threshold of 100 or more


URGENCY: Mapping[AlertKind, Urgency] = {
    "armed": Urgency(),
    "threshold": Urgency(highest_threshold=True),
    "reset_shift": Urgency(),
    "forecast": Urgency(always=True),
    "degraded": Urgency(always=True),
    "recovered": Urgency(),
    "extra_usage": Urgency(flags=frozenset({"started"}), at_limit=True),
    "digest": Urgency(),
    "session": Urgency(events=frozenset({"limit"})),
    # A credit or a banked reset expiring within 24 h unused: the 24 h reminder (core/credit.py,
    # core/banked.py say event="24h").
    "credit": Urgency(events=frozenset({"24h"})),
    "banked_reset": Urgency(events=frozenset({"24h"})),
    "locked": Urgency(always=True),
}


def is_urgent(kind: AlertKind, details: Mapping[str, Any], thresholds: tuple[int, ...] = ()) -> bool:
    """Whether an alert is urgent, decided once, when it is made (docs/design.md §9)."""
    rule = URGENCY[kind]
    if rule.always or details.get("event") in rule.events or any(details.get(f) for f in rule.flags):
        return True
    threshold = details.get("threshold")
    if not isinstance(threshold, int | float):
        return False
    return (rule.highest_threshold and bool(thresholds) and threshold == max(thresholds)) or (
        rule.at_limit and threshold >= 100
    )
