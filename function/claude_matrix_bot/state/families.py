"""The credit, banked-reset and account families' memory (docs/design.md §8), both ways.

One optional `families` object in state.json: an older v2 reader ignores it (it cannot
misread it), so it does not bump the schema; a file without it reads as "never seen".
Bounded: a few credits and grants, short texts, a few said events each."""

from __future__ import annotations

from typing import Any

from ..errors import CorruptState
from ..isotime import iso as _iso
from .family_records import CreditState, FamilyState, GrantState
from .fields import _number, _parse_time

MAX_CREDITS = 8
MAX_GRANTS = 8
MAX_SAID = 8
MAX_LOCKED = 8
MAX_BREAKDOWN = 8
_TEXT = 120


def _text(value: object, where: str, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise CorruptState(f"{where}: expected a text")
    return value[:_TEXT]


def _texts(value: object, where: str, limit: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise CorruptState(f"{where}: expected a list")
    return tuple(t for item in value[:limit] if (t := _text(item, where)) is not None)


def _amount(value: object, where: str) -> float:
    number = _number(value, where)
    if number is None or not 0 <= number <= 1e9:
        raise CorruptState(f"{where}: expected an amount")
    return number


def _credit_from_json(raw: object) -> CreditState:
    where = "families.credits"
    if not isinstance(raw, dict):
        raise CorruptState(f"{where}: expected objects")
    return CreditState(
        key=_text(raw.get("key"), f"{where}.key", required=True) or "",
        limit=_amount(raw.get("limit"), f"{where}.limit"),
        used=_amount(raw.get("used"), f"{where}.used"),
        remaining=_amount(raw.get("remaining"), f"{where}.remaining"),
        utilization=min(_amount(raw.get("utilization"), f"{where}.utilization"), 100.0),
        expires_at=_parse_time(raw.get("expires_at"), f"{where}.expires_at"),
        said=_texts(raw.get("said"), f"{where}.said", MAX_SAID),
    )


def _grant_from_json(raw: object) -> GrantState:
    where = "families.grants"
    if not isinstance(raw, dict):
        raise CorruptState(f"{where}: expected objects")
    left = _number(raw.get("resets_left"), f"{where}.resets_left")
    total = _number(raw.get("resets_total"), f"{where}.resets_total")
    if left is None or not 0 <= left <= 1000 or (total is not None and not 0 <= total <= 1000):
        raise CorruptState(f"{where}: expected counts of resets")
    return GrantState(
        id=_text(raw.get("id"), f"{where}.id", required=True) or "",
        resets_left=int(left),
        label=_text(raw.get("label"), f"{where}.label"),
        resets_total=None if total is None else int(total),
        ends_at=_parse_time(raw.get("ends_at"), f"{where}.ends_at"),
        clears=_texts(raw.get("clears"), f"{where}.clears", MAX_SAID),
        said=_texts(raw.get("said"), f"{where}.said", MAX_SAID),
    )


def _breakdown_from_json(raw: object) -> tuple[tuple[str, float], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise CorruptState("families.breakdown: expected a list")
    rows: list[tuple[str, float]] = []
    for item in raw[:MAX_BREAKDOWN]:
        if not isinstance(item, list) or len(item) != 2:
            raise CorruptState("families.breakdown: expected [name, percent] pairs")
        percent = _number(item[1], "families.breakdown")
        rows.append((_text(item[0], "families.breakdown", required=True) or "", min(max(percent or 0.0, 0.0), 100.0)))
    return tuple(rows)


def families_from_json(raw: object) -> FamilyState:
    if raw is None:
        return FamilyState()
    if not isinstance(raw, dict):
        raise CorruptState("families: expected an object")
    credits, grants = raw.get("credits") or [], raw.get("grants") or []
    if not isinstance(credits, list) or not isinstance(grants, list):
        raise CorruptState("families: credits and grants are lists")
    return FamilyState(
        credits=tuple(_credit_from_json(c) for c in credits[:MAX_CREDITS]),
        grants=tuple(_grant_from_json(g) for g in grants[:MAX_GRANTS]),
        at_limit_since=_parse_time(raw.get("at_limit_since"), "families.at_limit_since"),
        usable_said=raw.get("usable_said") is True,
        locked=_texts(raw.get("locked"), "families.locked", MAX_LOCKED),
        breakdown=_breakdown_from_json(raw.get("breakdown")),
        breakdown_window=_parse_time(raw.get("breakdown_window"), "families.breakdown_window"),
    )


def credit_to_json(credit: CreditState) -> dict[str, Any]:
    return {
        "key": credit.key,
        "limit": credit.limit,
        "used": credit.used,
        "remaining": credit.remaining,
        "utilization": credit.utilization,
        "expires_at": _iso(credit.expires_at),
        "said": list(credit.said),
    }


def grant_to_json(grant: GrantState) -> dict[str, Any]:
    return {
        "id": grant.id,
        "label": grant.label,
        "resets_left": grant.resets_left,
        "resets_total": grant.resets_total,
        "ends_at": _iso(grant.ends_at),
        "clears": list(grant.clears),
        "said": list(grant.said),
    }


def families_to_json(families: FamilyState) -> dict[str, Any]:
    return {
        "credits": [credit_to_json(c) for c in families.credits],
        "grants": [grant_to_json(g) for g in families.grants],
        "at_limit_since": _iso(families.at_limit_since),
        "usable_said": families.usable_said,
        "locked": list(families.locked),
        "breakdown": [[name, percent] for name, percent in families.breakdown],
        "breakdown_window": _iso(families.breakdown_window),
    }
