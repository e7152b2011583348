"""`status` rows of the credit, banked-reset and account families (docs/design.md §8)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from .core import family_messages as fm
from .core import messages
from .core.account import breakdown_summary
from .core.credit import as_budget
from .family_values import ResetGrant
from .isotime import iso
from .state import FamilyState, GrantState, credit_to_json, grant_to_json


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
