"""Quiet hours at the outbox (docs/design.md §9): which alerts go out now, which wait.

Pure: the outbox, `now` and the reader's settings in, the alerts due out. An alert that is
not urgent, raised or still waiting while the reader's quiet hours last, stays in the
outbox (state.json: a crash or restart in between loses nothing) and goes out at the
first cycle after they end, in the order raised, saying when it was raised. Urgent
alerts go at once.

`QUIET_HOURS` is wall-clock time in `TIMEZONE`, so each day's quiet period is resolved to
instants on that day's calendar: across the change to summer time `22:00-07:00` lasts
eight hours, across the change back ten. A wall time the clock skips (the hour lost in
spring) is the moment the clock jumps past it; a wall time it shows twice (the hour
repeated in autumn) is its first showing, so a period ends once and does not come back
for the repeated hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from html import escape
from typing import Protocol

from .core.messages import fmt_time
from .model import Alert
from .quiet_hours import QuietHours

DAY = timedelta(days=1)


class ReaderSettings(Protocol):
    """What the hold reads of the configuration (the core's DecideConfig has it)."""

    @property
    def timezone(self) -> tzinfo: ...
    @property
    def quiet_hours(self) -> QuietHours | None: ...


@dataclass(frozen=True, slots=True)
class Outgoing:
    """The outbox split at one instant."""

    due: tuple[Alert, ...]  # to send now, in the order raised; held ones say when they were raised
    waiting: tuple[Alert, ...]  # held until `until`
    until: datetime | None  # the end of the quiet period `now` is in; None: not quiet now


def outgoing(outbox: Sequence[Alert], now: datetime, reader: ReaderSettings) -> Outgoing:
    hours, zone = reader.quiet_hours, reader.timezone
    if hours is None or not outbox:  # the quiet cycle pays nothing for quiet hours
        return Outgoing(tuple(outbox), (), None)
    until = quiet_until(hours, zone, now)
    if until is not None:
        due = tuple(a for a in outbox if a.urgent)
        return Outgoing(due, tuple(a for a in outbox if not a.urgent), until)
    return Outgoing(tuple(_with_raised(a, hours, zone, now) for a in outbox), (), None)


def quiet_until(hours: QuietHours, zone: tzinfo, now: datetime) -> datetime | None:
    """The end of the quiet period `now` falls in (UTC), or None when `now` is not quiet."""
    today = now.astimezone(zone).date()
    for day in (today - DAY, today):  # a period is under a day long: yesterday's or today's
        start, end = quiet_period(hours, zone, day)
        if start <= now < end:
            return end
    return None


def quiet_period(hours: QuietHours, zone: tzinfo, day: date) -> tuple[datetime, datetime]:
    """The quiet period that starts on the reader's calendar `day`, as UTC instants."""
    end_day = day + DAY if hours.wraps_midnight else day
    return wall_instant(day, hours.start, zone), wall_instant(end_day, hours.end, zone)


def wall_instant(day: date, clock: time, zone: tzinfo) -> datetime:
    """The first instant at which the reader's clock shows `clock` on `day` (or later), in UTC."""
    wall = datetime.combine(day, clock.replace(fold=0), tzinfo=zone)  # fold=0: the first of two showings
    instant = wall.astimezone(UTC)
    target = wall.replace(tzinfo=None)
    if instant.astimezone(zone).replace(tzinfo=None) == target:
        return instant
    # Skipped by a jump forward: fold=0 lands after the jump, fold=1 before it. The jump
    # is the first second whose wall time is past `clock`.
    lo = int(wall.replace(fold=1).astimezone(UTC).timestamp())
    hi = int(instant.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).replace(tzinfo=None) >= target:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def was_held(alert: Alert, hours: QuietHours, zone: tzinfo, now: datetime) -> bool:
    """Whether quiet hours kept `alert` back: it is not urgent, and it was raised in a quiet
    period or was still waiting when one began."""
    raised = alert.created_at
    if alert.urgent or raised is None:
        return False
    if quiet_until(hours, zone, raised) is not None:
        return True
    first_day = raised.astimezone(zone).date()
    starts = (quiet_period(hours, zone, day)[0] for day in (first_day, first_day + DAY))
    return any(raised < start <= now for start in starts)


def _with_raised(alert: Alert, hours: QuietHours, zone: tzinfo, now: datetime) -> Alert:
    """A held alert as it goes out: its text ends with when it was raised. Worked out the
    same way at every attempt, so a retry sends the same text under the same id."""
    if alert.created_at is None or not was_held(alert, hours, zone, now):
        return alert
    note = f"Raised {fmt_time(alert.created_at, zone)}, held through quiet hours."
    return replace(alert, plain=f"{alert.plain}\n{note}", html=f"{alert.html}<br><i>{escape(note)}</i>")
