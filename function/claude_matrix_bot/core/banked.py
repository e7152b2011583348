"""The banked-reset family (docs/design.md §1, §8): a grant with resets left first seen
(once per grant), reminders 72 h and 24 h before it ends unused (the 24 h one urgent), and
"usable now" when the account is at a limit (`at_limit`, or a session or weekly bucket at
100%), once per limit episode. What a grant clears is said in words. The bot reads the
grants and never claims one (a claim is a POST that spends a scarce grant)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, tzinfo

from ..family_values import BankedResets, ResetGrant
from ..model import Alert, Reading
from ..state import FamilyState, GrantState
from ..state.families import MAX_GRANTS
from . import family_messages as fm
from . import reminders
from .alerts import alert_id, key, make
from .messages import Rendered


def limits_reached(reading: Reading) -> list[str]:
    """The session and weekly buckets at 100% now."""
    return sorted(name for name, bucket in reading.buckets.items() if bucket.utilization >= 100.0)


def _due(grant: ResetGrant, now: datetime) -> list[int]:
    return reminders.due(grant.ends_at, now) if grant.available(now) else []


def _alert(grant: ResetGrant, event: str, rendered: Rendered, now: datetime, *parts: str) -> Alert:
    """The stdout fields of docs/design.md §8: `grant_id`, `resets_left`, `ends_at`."""
    # Urgent for the last reminder (event "24h"): core/family_table.py's URGENCY.
    return make(
        "banked_reset",
        alert_id("banked_reset", grant.id, event, *parts),
        rendered,
        now,
        grant_id=grant.id,
        resets_left=grant.resets_left,
        ends_at=grant.ends_at.isoformat() if grant.ends_at else None,
        event=event,
    )


def _grant_step(grant: ResetGrant, said: set[str], now: datetime, zone: tzinfo, *, new: bool) -> list[Alert]:
    alerts: list[Alert] = []
    due = _due(grant, now)
    if new and grant.available(now):
        said.add("available")
        said.update(reminders.covered_by_first(due))  # its end is in that message
        alerts.append(_alert(grant, "available", fm.render_grant_available(grant, now, zone), now))
    reminder = reminders.next_event(due, said)
    if reminder is not None:
        alerts.append(_alert(grant, reminder, fm.render_grant_expiring(grant, now, zone), now))
    return alerts


def _record(grant: ResetGrant, said: set[str]) -> GrantState:
    return GrantState(
        id=grant.id,
        resets_left=grant.resets_left,
        label=grant.label,
        resets_total=grant.resets_total,
        ends_at=grant.ends_at,
        clears=grant.clears,
        said=tuple(sorted(said)),
    )


def step(
    old: FamilyState, banked: BankedResets | None, reading: Reading, now: datetime, zone: tzinfo, *, arming: bool
) -> tuple[FamilyState, list[Alert]]:
    """The grants and the limit episode. A plain answer (`cedar_ember` null or absent) keeps
    what is known. On arming what is already true is marked as said (the baseline shows it)."""
    if banked is None:
        return old, []
    alerts: list[Alert] = []
    kept: list[GrantState] = []
    for grant in banked.grants:
        previous = next((g for g in old.grants if g.id == grant.id), None)
        said = set(previous.said) if previous else set()
        produced = _grant_step(grant, said, now, zone, new=previous is None or "available" not in said)
        if not arming:
            alerts.extend(produced)
        kept.append(_record(grant, said))
    seen = {g.id for g in kept}
    kept.extend(g for g in old.grants if g.id not in seen and g.ends_at is not None and g.ends_at > now)
    state, usable = _episode_step(old, banked, reading, now, zone, arming=arming)
    return replace(state, grants=tuple(kept[:MAX_GRANTS])), [*alerts, *usable]


def _episode_step(
    old: FamilyState, banked: BankedResets, reading: Reading, now: datetime, zone: tzinfo, *, arming: bool
) -> tuple[FamilyState, list[Alert]]:
    """ "Usable now": once per limit episode, while a grant can be used."""
    at_limit = limits_reached(reading)
    if not at_limit and banked.at_limit is not True:
        return replace(old, at_limit_since=None, usable_said=False), []
    since = old.at_limit_since or now
    usable = [g for g in banked.grants if g.available(now) and g.usable_now is not False]
    if old.usable_said or not usable:
        return replace(old, at_limit_since=since), []
    state = replace(old, at_limit_since=since, usable_said=True)
    if arming:
        return state, []
    grant = usable[0]
    rendered = fm.render_grant_usable(grant, at_limit, now, zone)
    return state, [_alert(grant, "usable_now", rendered, now, key(since))]
