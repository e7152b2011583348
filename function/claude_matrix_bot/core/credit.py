"""The credit family (docs/design.md §1, §8): a credit budget first seen after arming, its use
crossing CREDIT_THRESHOLDS, and reminders 72 h and 24 h before it expires while money is left
(the 24 h one urgent). Once per budget and event. Pure, like the rest of the core."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any

from ..family_values import CreditBudget
from ..model import Alert
from ..state import CreditState
from ..state.families import MAX_CREDITS
from . import family_messages as fm
from . import reminders
from .alerts import alert_id, key, make
from .messages import Rendered
from .thresholds import crossed

# Expiry moved by less than this is the same budget (the answer rounds it).
_SAME_EXPIRY = timedelta(days=1)


def _same_budget(old: CreditState, credit: CreditBudget) -> bool:
    if old.key != credit.key or abs(old.limit - credit.limit) >= 0.005:
        return False
    if old.expires_at is None or credit.expires_at is None:
        return old.expires_at is credit.expires_at
    return abs(old.expires_at - credit.expires_at) < _SAME_EXPIRY


def money_left(credit: CreditBudget) -> bool:
    """At least 1% and one currency unit left (docs/design.md §1)."""
    return credit.remaining >= 1.0 and credit.remaining >= credit.limit / 100


def due_reminders(credit: CreditBudget, now: datetime) -> list[int]:
    """The reminders whose time has come, largest first; none once expired or spent."""
    if credit.expires_at is None or credit.expires_at <= now or not money_left(credit):
        return []
    return reminders.due(credit.expires_at, now)


def _details(credit: CreditBudget, event: str) -> dict[str, Any]:
    """The stdout fields of docs/design.md §8: `credit` key, `limit`, `used`, `remaining`, `expires_at`."""
    return {
        "credit": credit.key,
        "limit": credit.limit,
        "used": credit.used,
        "remaining": credit.remaining,
        "currency": "USD",
        "expires_at": credit.expires_at.isoformat() if credit.expires_at else None,
        "event": event,
    }


def _alert(credit: CreditBudget, event: str, rendered: Rendered, now: datetime, **extra: Any) -> Alert:
    ident = alert_id("credit", credit.key, f"{credit.limit:.2f}", key(credit.expires_at), event)
    # Urgent for the last reminder (event "24h"): core/family_table.py's URGENCY.
    return make("credit", ident, rendered, now, **_details(credit, event), **extra)


def _events(
    credit: CreditBudget, said: set[str], thresholds: tuple[int, ...], now: datetime, zone: tzinfo
) -> list[Alert]:
    alerts: list[Alert] = []
    for threshold in crossed(thresholds, credit.utilization, (int(e) for e in said if e.isdigit())):
        said.add(str(threshold))
        rendered = fm.render_credit_threshold(credit, threshold, now, zone)
        alerts.append(_alert(credit, str(threshold), rendered, now, threshold=threshold))
    reminder = reminders.next_event(due_reminders(credit, now), said)
    if reminder is not None:
        alerts.append(_alert(credit, reminder, fm.render_credit_expiring(credit, now, zone), now))
    return alerts


def step(
    old: tuple[CreditState, ...],
    credits: tuple[CreditBudget, ...],
    now: datetime,
    thresholds: tuple[int, ...],
    zone: tzinfo,
    *,
    arming: bool,
) -> tuple[tuple[CreditState, ...], list[Alert]]:
    """Each credit of the reading against what was said of it. On arming everything already
    true is marked as said (the baseline shows it). A credit no longer in the answer is
    kept until it expires, so a flaky answer does not announce it twice."""
    alerts: list[Alert] = []
    kept: list[CreditState] = []
    for credit in credits:
        previous = next((o for o in old if _same_budget(o, credit)), None)
        said = set(previous.said) if previous else set()
        if previous is None and not arming:
            # New after arming: said once; what is already true is in that message.
            said.update({"new", *(str(t) for t in thresholds if credit.utilization >= t)})
            # Its expiry is in that message too: only the urgent last reminder still comes.
            said.update(reminders.covered_by_first(due_reminders(credit, now)))
            alerts.append(_alert(credit, "new", fm.render_credit_new(credit, now, zone), now))
        produced = _events(credit, said, thresholds, now, zone)
        if not arming:
            alerts.extend(produced)
        kept.append(_record(credit, said))
    seen = {c.key for c in kept}
    kept.extend(o for o in old if o.key not in seen and o.expires_at is not None and o.expires_at > now)
    return tuple(kept[:MAX_CREDITS]), alerts


def _record(credit: CreditBudget, said: set[str]) -> CreditState:
    return CreditState(
        key=credit.key,
        limit=credit.limit,
        used=credit.used,
        remaining=credit.remaining,
        utilization=credit.utilization,
        expires_at=credit.expires_at,
        said=tuple(sorted(said)),
    )


def as_budget(record: CreditState) -> CreditBudget:
    """A remembered credit, for `status` and the baseline."""
    return CreditBudget(record.key, record.limit, record.used, record.remaining, record.utilization, record.expires_at)
