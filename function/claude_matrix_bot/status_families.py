"""`status` rows of the session's limit and of the paid-overage, credit, banked-reset and account families
(docs/design.md §8)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from .core import family_messages as fm
from .core import messages
from .core.credit import as_budget
from .core.session import LIMIT
from .family_values import ResetGrant, breakdown_summary
from .isotime import iso
from .state import (
    BucketState,
    ExtraUsageState,
    FamilyState,
    GrantState,
    credit_to_json,
    extra_usage_to_json,
    grant_to_json,
)


def _limit_reached(bucket: BucketState) -> bool:
    return bucket.utilization is not None and bucket.utilization >= LIMIT


def session_json(bucket: BucketState) -> dict[str, Any]:
    """The session's limit: reached now, and when it is back (the bucket's reset, UTC)."""
    reached = _limit_reached(bucket)
    return {"reached": reached, "back_at": iso(bucket.resets_at) if reached else None}


def session_line(bucket: BucketState, now: datetime, zone: tzinfo) -> str:
    """`  limit: reached, back at Sun 13 Dec 18:00 CET (in 2h)` on the reader's clock."""
    if not _limit_reached(bucket):
        return "  limit: not reached"
    if bucket.resets_at is None:
        return "  limit: reached, no reset time reported"
    return f"  limit: reached, back at {messages.fmt_when(bucket.resets_at, now, zone)}"


def families_json(families: FamilyState) -> dict[str, Any]:
    return {
        "credits": [credit_to_json(c) for c in families.credits],
        "banked_resets": [grant_to_json(g) for g in families.grants],
        "at_limit_since": iso(families.at_limit_since),
        "locked": list(families.locked),
        "breakdown": dict(families.breakdown),
    }


def _grant(record: GrantState) -> ResetGrant:
    return ResetGrant(
        record.id, record.label, record.resets_left, record.resets_total, None, record.ends_at, record.clears
    )


def _said(said: tuple[str, ...]) -> str:
    return ", ".join(s if s.endswith("h") or not s.isdigit() else f"{s}%" for s in said) or "none"


def families_lines(families: FamilyState, now: datetime, zone: tzinfo) -> list[str]:
    lines: list[str] = []
    for credit in families.credits:
        lines.append(f"{fm.credit_row(as_budget(credit), now, zone)[2:]}; alerted: {_said(credit.said)}")
    for grant in families.grants:
        lines.append(f"{fm.grant_row(_grant(grant), now, zone)[2:]}; alerted: {_said(grant.said)}")
    if families.at_limit_since is not None:
        lines.append(f"at a limit since {messages.fmt_when(families.at_limit_since, now, zone)}")
    if families.locked:
        lines.append(f"LOCKED: {', '.join(families.locked)}")
    summary = breakdown_summary(families.breakdown)
    if summary:
        lines.append(f"this week's use went to: {summary}")
    return lines


def extra_json(extra: ExtraUsageState | None, thresholds: tuple[int, ...]) -> dict[str, Any] | None:
    if extra is None:
        return None
    return {
        **extra_usage_to_json(extra.last),
        "summary": messages.extra_status(extra.last),
        "period_start": iso(extra.period_start),
        "started_alerted": extra.started_alerted,
        "alerted_thresholds": list(extra.alerted_thresholds),
        "thresholds": list(thresholds),
    }


def extra_lines(extra: ExtraUsageState, now: datetime, zone: tzinfo) -> list[str]:
    said = ["started"] if extra.started_alerted else []
    said += [f"{t}%" for t in extra.alerted_thresholds]
    return [
        f"Extra usage: {messages.extra_status(extra.last)}",
        f"  spend period since {messages.fmt_when(extra.period_start, now, zone)}; "
        f"alerted: {', '.join(said) or 'none'}",
    ]
