"""The outbox's alerts in state.json, both ways."""

from __future__ import annotations

from typing import Any, get_args

from ..errors import CorruptState
from ..isotime import iso as _iso
from ..model import Alert, AlertKind
from .fields import _number, _parse_time

# Derived from the Literal, so a new kind is accepted as soon as the model names it.
ALERT_KINDS = frozenset(get_args(AlertKind))


def _alert_from_json(raw: object) -> Alert:
    if not isinstance(raw, dict):
        raise CorruptState("outbox: expected objects")
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in ALERT_KINDS:
        # Sinks pick a template by kind; an unknown one must not reach them.
        raise CorruptState(f"outbox: unknown alert kind {str(kind)[:40]!r}")
    attempted_at = _unix_ms(raw.get("attempted_at"), "outbox.attempted_at")
    details = raw.get("details") or {}
    # Written since the urgency rule (docs/design.md §9); an older entry without it is not urgent.
    urgent = raw.get("urgent", False)
    if not isinstance(urgent, bool):
        raise CorruptState("outbox: an alert's urgent must be true or false")
    # An object, as written: dict() would also take a list of pairs, whose non-string keys
    # come back as other keys once the state is written again.
    if not isinstance(details, dict):
        raise CorruptState("outbox: an alert's details must be an object")
    try:
        details = dict(details)
        return Alert(
            id=str(raw["id"]),
            kind=raw["kind"],
            plain=str(raw["plain"]),
            html=str(raw["html"]),
            bucket=raw.get("bucket"),
            created_at=_parse_time(raw.get("created_at"), "outbox.created_at"),
            details=details,
            urgent=urgent,
            attempted_at=attempted_at,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptState(f"outbox: malformed alert ({exc.__class__.__name__})") from None


def _unix_ms(value: object, where: str) -> int | None:
    number = _number(value, where)
    if number is None:
        return None
    if number < 0 or number != int(number):
        raise CorruptState(f"{where}: expected Unix milliseconds")
    return int(number)


def _alert_to_json(alert: Alert) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": alert.id,
        "kind": alert.kind,
        "bucket": alert.bucket,
        "plain": alert.plain,
        "html": alert.html,
        "created_at": _iso(alert.created_at),
        "details": alert.details,
        "urgent": alert.urgent,
    }
    # Optional: an older v2 reader ignores it (it would only resend without looking first).
    if alert.attempted_at is not None:
        out["attempted_at"] = alert.attempted_at
    return out
