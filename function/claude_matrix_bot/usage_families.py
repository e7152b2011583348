"""The newer families in the usage answer (docs/design.md §2 "Since autumn 2026", §8):
credit budgets, banked usage-limit resets (`cedar_ember`), `locked_reason` on windows and
`seven_day_breakdown`. Lenient like paid overage: a garbled part is named in the unknown
numbers and dropped, never a reason to lose the windows. Bounded: a few of each are taken
from one answer, texts are shortened and stripped of control characters."""

from __future__ import annotations

import math
import re
from datetime import datetime

from .errors import BadResponse
from .family_values import BankedResets, Breakdown, BreakdownRow, CreditBudget, ResetGrant
from .usage_values import is_number as _is_number
from .usage_values import resets_at as _resets_at
from .usage_values import short as _short

MAX_CREDITS = 8
MAX_GRANTS = 8
MAX_BREAKDOWN_ROWS = 8
MAX_CLEARS = 8
# Dollars beyond this are not a credit anyone was given: garbage, not an amount.
_MAX_DOLLARS = 1e9
_MAX_RESETS = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")


class _Unreadable(ValueError):
    """A field that is present but not what the family needs."""


def clean_text(value: object, limit: int = 80) -> str | None:
    """Upstream text fit for a message: control characters out, shortened; None if empty."""
    if not isinstance(value, str):
        return None
    text = " ".join(_CONTROL.sub(" ", value).split())
    return _short(text, limit) if text else None


def _dollars(value: object, where: str) -> float | None:
    if value is None:
        return None
    if not _is_number(value):
        raise _Unreadable(f"{where} is a {type(value).__name__}")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number) or not 0 <= number <= _MAX_DOLLARS:
        raise _Unreadable(f"{where} is out of range")
    return number


def is_credit_shaped(value: object) -> bool:
    """A top-level object carrying `limit_dollars` (a credit, or its zero placeholder)."""
    return isinstance(value, dict) and "limit_dollars" in value


def credit_budget(key: str, value: dict[str, object]) -> CreditBudget | None:
    """A credit budget, or None for a placeholder (no positive `limit_dollars`).
    Raises `_Unreadable` for one whose numbers are not money."""
    cap = _dollars(value.get("limit_dollars"), "limit_dollars") if _is_number(value.get("limit_dollars")) else None
    cap = None if cap is None else round(cap, 2)  # cents: what a person reads
    if cap is None or cap <= 0:
        return None
    used = _dollars(value.get("used_dollars"), "used_dollars")
    remaining = _dollars(value.get("remaining_dollars"), "remaining_dollars")
    percent = value.get("utilization")
    if used is None and remaining is not None:
        used = cap - remaining
    elif used is None:
        share = float(percent) if _is_number(percent) else 0.0  # type: ignore[arg-type]
        used = cap * share / 100 if math.isfinite(share) else 0.0
    if remaining is None:
        remaining = cap - used
    used, remaining = min(max(round(used, 2), 0.0), cap), min(max(round(remaining, 2), 0.0), cap)
    try:
        expires = _resets_at(key, value.get("resets_at"))
    except BadResponse as exc:
        raise _Unreadable("resets_at is not an instant") from exc
    return CreditBudget(
        key=key,
        limit=cap,
        used=used,
        remaining=remaining,
        utilization=round(min(used * 100 / cap, 100.0), 2),
        expires_at=expires,
    )


def read_credits(payload: dict[str, object], skip: frozenset[str], unknown: list[str]) -> tuple[CreditBudget, ...]:
    """Every top-level object that is not a window and carries `limit_dollars` > 0."""
    credits: list[CreditBudget] = []
    for key, value in payload.items():
        if key in skip or not is_credit_shaped(value):
            continue
        assert isinstance(value, dict)
        try:
            credit = credit_budget(key, value)
        except _Unreadable as exc:
            unknown.append(f"{_short(key)} (credit: {exc})")
            continue
        if credit is not None and len(credits) < MAX_CREDITS:
            credits.append(credit)
    return tuple(sorted(credits, key=lambda c: c.key))


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _count(value: object, where: str, *, required: bool) -> int | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_RESETS:
        raise _Unreadable(f"{where} is not a count")
    return value


def _instant(value: object, where: str) -> datetime | None:
    try:
        return _resets_at(where, value)
    except BadResponse as exc:
        raise _Unreadable(f"{where} is not an instant") from exc


def _grant(raw: object) -> ResetGrant:
    if not isinstance(raw, dict):
        raise _Unreadable("a grant is not an object")
    ident = raw.get("id")
    if not isinstance(ident, str) or not _ID.fullmatch(ident):
        raise _Unreadable("a grant has no usable id")
    clears = raw.get("clears")
    names = [c for c in clears if isinstance(c, str)] if isinstance(clears, list) else []
    return ResetGrant(
        id=ident,
        label=clean_text(raw.get("label"), 120),
        resets_left=_count(raw.get("resets_left"), "resets_left", required=True) or 0,
        resets_total=_count(raw.get("resets_total"), "resets_total", required=False),
        starts_at=_instant(raw.get("starts_at"), "starts_at"),
        ends_at=_instant(raw.get("ends_at"), "ends_at"),
        clears=tuple(t for n in names[:MAX_CLEARS] if (t := clean_text(n, 40))),
        usable_now=_flag(raw.get("usable_now")),
        paused=_flag(raw.get("paused")),
        use_requires_limit=_flag(raw.get("use_requires_limit")),
    )


def read_banked(raw: object, unknown: list[str]) -> BankedResets | None:
    """`cedar_ember`: None when absent or null (a plain call); grants that cannot be read
    are named and dropped, the rest kept."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        unknown.append("cedar_ember (not an object)")
        return None
    grants: list[ResetGrant] = []
    raw_grants = raw.get("grants")
    for index, item in enumerate(raw_grants if isinstance(raw_grants, list) else []):
        try:
            grant = _grant(item)
        except _Unreadable as exc:
            unknown.append(f"cedar_ember.grants[{index}] ({exc})")
            continue
        if len(grants) < MAX_GRANTS and all(g.id != grant.id for g in grants):
            grants.append(grant)
    return BankedResets(
        eligible=_flag(raw.get("eligible")),
        ineligible_reason=clean_text(raw.get("ineligible_reason"), 40),
        at_limit=_flag(raw.get("at_limit")),
        grants=tuple(grants),
    )


def read_breakdown(raw: object) -> Breakdown | None:
    """`seven_day_breakdown` rows with a name and a percent; None when there are none."""
    if not isinstance(raw, dict) or not isinstance(raw.get("rows"), list):
        return None
    rows: list[BreakdownRow] = []
    for item in raw["rows"]:
        if not isinstance(item, dict) or not _is_number(item.get("percent")):
            continue
        percent = float(item["percent"])
        key = clean_text(item.get("key"), 40)
        name = clean_text(item.get("display_name"), 40) or (key.replace("_", " ").capitalize() if key else None)
        if name is None or not math.isfinite(percent) or not 0 <= percent <= 100:
            continue
        if len(rows) < MAX_BREAKDOWN_ROWS:
            rows.append(BreakdownRow(key or name, name, percent))
    if not rows:
        return None
    try:
        as_of = _resets_at("seven_day_breakdown", raw.get("as_of"))
        started = _resets_at("seven_day_breakdown", raw.get("window_started_at"))
    except BadResponse:
        as_of = started = None
    return Breakdown(rows=tuple(rows), as_of=as_of, window_started_at=started)


def locked_reason(value: object) -> str | None:
    """A window's `locked_reason` when it says something (`seat_removed`)."""
    return clean_text(value.get("locked_reason"), 40) if isinstance(value, dict) else None
