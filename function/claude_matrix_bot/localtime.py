"""The reader's clock (docs/design.md §9): instants shown in `TIMEZONE`, with the zone's
abbreviation, so nobody converts from UTC in their head. Ids, state and the stdout
sink's machine fields stay UTC; only what a person reads passes through here.

A leaf module (the standard library only): the core, `status` and the chart-drawing
child all use it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo


def zone_name(zone: tzinfo) -> str:
    """The IANA name a zone was made from (`Europe/Berlin`), for a value that must cross a
    process or a file (a chart's spec); `UTC` for the standard library's UTC."""
    key = getattr(zone, "key", None)
    return key if isinstance(key, str) else "UTC"


def zone_named(name: str) -> tzinfo:
    """The zone `zone_name` gave; ValueError for a name the zone data does not know."""
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"unknown time zone {name[:60]!r}") from exc


def to_minute(moment: datetime) -> datetime:
    """The nearest whole minute, in UTC (the API's `…:59:59.6` means "on the hour")."""
    return (moment.astimezone(UTC) + timedelta(seconds=30)).replace(second=0, microsecond=0)


def local(moment: datetime, zone: tzinfo) -> datetime:
    """`moment` to the nearest minute, on the reader's wall clock."""
    return to_minute(moment).astimezone(zone)


def abbreviation(moment: datetime) -> str:
    """The zone's abbreviation at that local instant (`CET`, `CEST`, `EST`). Zones whose
    data has no letters give an offset (`+04`): written `UTC+04` so it reads as one."""
    name = moment.tzname() or "UTC"
    return f"UTC{name}" if name[:1] in "+-" else name


def local_day(moment: datetime, zone: tzinfo) -> date:
    """The reader's calendar day of an instant (not rounded: a reading at 23:59:50 is that day's)."""
    return moment.astimezone(zone).date()
