"""Quiet hours at the outbox (holding.py, docs/design.md §9), table by table.

Pure: an outbox, an instant and the reader's settings in, what goes out now and what
waits out. The tables cross midnight and both changes of Europe/Berlin's clock in 2026
(Sun 29 Mar 02:00 CET -> 03:00 CEST, Sun 25 Oct 03:00 CEST -> 02:00 CET, both at 01:00 UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_matrix_bot.holding import outgoing, quiet_until, wall_instant, was_held
from claude_matrix_bot.model import Alert
from claude_matrix_bot.quiet_hours import QuietHours, parse_quiet_hours
from claude_matrix_bot.settings import Settings
from claude_matrix_bot.state import State
from claude_matrix_bot.status import Snapshot, _View, format_status

BERLIN = ZoneInfo("Europe/Berlin")
NIGHT = parse_quiet_hours("22:00-07:00")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Reader:
    timezone: tzinfo = BERLIN
    quiet_hours: QuietHours | None = NIGHT


def alert(name: str, raised: datetime, *, urgent: bool = False) -> Alert:
    return Alert(
        id=f"cmb-{name}",
        kind="threshold",
        plain=f"{name} text",
        html=f"<b>{name}</b> text",
        bucket="seven_day",
        created_at=raised,
        urgent=urgent,
    )


# --- when quiet hours end --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("span", "now", "until"),
    [
        # Winter, CET (UTC+1): 22:00-07:00 is 21:00-06:00 UTC.
        ("22:00-07:00", utc(2026, 1, 8, 20, 59), None),  # 21:59 CET
        ("22:00-07:00", utc(2026, 1, 8, 21, 0), utc(2026, 1, 9, 6, 0)),  # 22:00 CET
        ("22:00-07:00", utc(2026, 1, 8, 23, 30), utc(2026, 1, 9, 6, 0)),  # 00:30 CET, past midnight
        ("22:00-07:00", utc(2026, 1, 9, 5, 59), utc(2026, 1, 9, 6, 0)),  # 06:59 CET
        ("22:00-07:00", utc(2026, 1, 9, 6, 0), None),  # 07:00 CET: over (the end is not quiet)
        # A span inside one day.
        ("13:00-14:30", utc(2026, 1, 8, 12, 0), utc(2026, 1, 8, 13, 30)),
        ("13:00-14:30", utc(2026, 1, 8, 13, 30), None),
        # Summer time begins in the night: the same wall-clock span is eight hours long.
        ("22:00-07:00", utc(2026, 3, 28, 21, 0), utc(2026, 3, 29, 5, 0)),  # 22:00 CET -> 07:00 CEST
        ("22:00-07:00", utc(2026, 3, 29, 0, 59), utc(2026, 3, 29, 5, 0)),  # 01:59 CET, just before the jump
        ("22:00-07:00", utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 5, 0)),  # 03:00 CEST, just after
        ("22:00-07:00", utc(2026, 3, 29, 5, 0), None),
        # An end the clock skips (02:30 does not exist that night): quiet ends at the jump.
        ("01:00-02:30", utc(2026, 3, 29, 0, 59, 59), utc(2026, 3, 29, 1, 0)),
        ("01:00-02:30", utc(2026, 3, 29, 1, 0), None),
        # A start the clock skips: quiet begins at the jump.
        ("02:30-06:00", utc(2026, 3, 29, 0, 59, 59), None),
        ("02:30-06:00", utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 4, 0)),
        # Summer time ends in the night: ten hours long.
        ("22:00-07:00", utc(2026, 10, 24, 20, 0), utc(2026, 10, 25, 6, 0)),  # 22:00 CEST -> 07:00 CET
        ("22:00-07:00", utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 6, 0)),  # 02:30 CEST, first showing
        ("22:00-07:00", utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 6, 0)),  # 02:30 CET, second showing
        ("22:00-07:00", utc(2026, 10, 25, 6, 0), None),
        # An end the clock shows twice: the first showing ends it, the repeated hour stays loud.
        ("22:00-02:30", utc(2026, 10, 25, 0, 29), utc(2026, 10, 25, 0, 30)),  # 02:29 CEST
        ("22:00-02:30", utc(2026, 10, 25, 1, 15), None),  # 02:15 CET, the hour again
    ],
)
def test_quiet_until(span: str, now: datetime, until: datetime | None) -> None:
    assert quiet_until(parse_quiet_hours(span), BERLIN, now) == until


@pytest.mark.parametrize(
    ("day", "clock", "instant"),
    [
        (date(2026, 1, 8), time(7, 0), utc(2026, 1, 8, 6, 0)),
        (date(2026, 3, 29), time(2, 0), utc(2026, 3, 29, 1, 0)),  # skipped: the jump
        (date(2026, 3, 29), time(2, 59), utc(2026, 3, 29, 1, 0)),  # skipped: the jump
        (date(2026, 3, 29), time(3, 0), utc(2026, 3, 29, 1, 0)),
        (date(2026, 10, 25), time(2, 30), utc(2026, 10, 25, 0, 30)),  # shown twice: the first
        (date(2026, 10, 25), time(2, 30, fold=1), utc(2026, 10, 25, 0, 30)),  # whatever fold it carries
    ],
)
def test_wall_instant(day: date, clock: time, instant: datetime) -> None:
    assert wall_instant(day, clock, BERLIN) == instant


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    now=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    start=st.times(),
    end=st.times(),
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC", "Asia/Kolkata"]),
)
def test_quiet_is_the_readers_wall_clock_and_ends_where_it_says(
    now: datetime, start: time, end: time, zone: str
) -> None:
    hours = QuietHours(start.replace(second=0, microsecond=0), end.replace(second=0, microsecond=0))
    if hours.start == hours.end:
        return
    reader = ZoneInfo(zone)
    until = quiet_until(hours, reader, now)
    wall = now.astimezone(reader).time()
    if until is None:
        # Not quiet: the wall clock is outside the span, or in autumn's repeated hour after the end.
        assert not hours.contains(wall) or now.astimezone(reader).fold == 1
        return
    assert until > now
    assert (until - now).total_seconds() <= 25 * 3600
    assert quiet_until(hours, reader, until) is None  # the end is not quiet


# --- what goes out -----------------------------------------------------------------------------


def test_without_quiet_hours_everything_goes_as_it_is() -> None:
    outbox = (alert("a", utc(2026, 1, 8, 23, 0)),)
    out = outgoing(outbox, utc(2026, 1, 8, 23, 5), Reader(quiet_hours=None))
    assert out.due == outbox and out.waiting == () and out.until is None


def test_during_quiet_hours_only_urgent_alerts_go() -> None:
    note = alert("note", utc(2026, 1, 8, 23, 0))  # 00:00 CET
    limit = alert("limit", utc(2026, 1, 9, 2, 12), urgent=True)  # 03:12 CET
    out = outgoing((note, limit), utc(2026, 1, 9, 2, 15), Reader())
    assert out.due == (limit,), "urgent ones go at once, as they are"
    assert out.waiting == (note,)
    assert out.until == utc(2026, 1, 9, 6, 0)


def test_after_quiet_hours_held_alerts_go_in_the_order_raised_saying_when() -> None:
    first = alert("first", utc(2026, 1, 8, 23, 0))  # 00:00 CET
    second = alert("second", utc(2026, 1, 9, 2, 12))  # 03:12 CET
    fresh = alert("fresh", utc(2026, 1, 9, 6, 2))  # 07:02 CET, after the end
    out = outgoing((first, second, fresh), utc(2026, 1, 9, 6, 5), Reader())
    assert [a.id for a in out.due] == ["cmb-first", "cmb-second", "cmb-fresh"]
    assert out.waiting == () and out.until is None
    assert out.due[0].plain == "first text\nRaised Fri 9 Jan 00:00 CET, held through quiet hours."
    assert out.due[1].plain.endswith("Raised Fri 9 Jan 03:12 CET, held through quiet hours.")
    assert out.due[1].html == "<b>second</b> text<br><i>Raised Fri 9 Jan 03:12 CET, held through quiet hours.</i>"
    assert out.due[2] == fresh, "raised after quiet hours: sent as it is"
    # The same text at every attempt: a retry reuses the id and the words.
    assert outgoing((second,), utc(2026, 1, 9, 9, 0), Reader()).due == (out.due[1],)


def test_an_alert_still_waiting_when_quiet_hours_begin_is_held_too() -> None:
    # Raised at 21:50 CET; the delivery failed, then quiet hours began at 22:00.
    late = alert("late", utc(2026, 1, 8, 20, 50))
    assert outgoing((late,), utc(2026, 1, 8, 21, 5), Reader()).waiting == (late,)
    (sent,) = outgoing((late,), utc(2026, 1, 9, 6, 0), Reader()).due
    assert sent.plain.endswith("Raised Thu 8 Jan 21:50 CET, held through quiet hours.")


@pytest.mark.parametrize(
    ("raised", "now", "held"),
    [
        (utc(2026, 1, 8, 12, 0), utc(2026, 1, 8, 12, 5), False),  # a day alert
        (utc(2026, 1, 8, 21, 0), utc(2026, 1, 9, 6, 0), True),
        (utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 5, 0), True),  # 03:30 CEST, on the short night
        (utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 6, 0), True),  # 02:30 CET, the repeated hour
    ],
)
def test_was_held(raised: datetime, now: datetime, held: bool) -> None:
    assert was_held(alert("x", raised), NIGHT, BERLIN, now) is held
    assert was_held(alert("x", raised, urgent=True), NIGHT, BERLIN, now) is False


def test_urgent_during_quiet_hours_across_the_dst_change() -> None:
    # The night summer time ends: a note at 01:30 CEST waits, an urgent alert at 02:30 CET goes.
    note = alert("note", utc(2026, 10, 24, 23, 30))
    limit = alert("limit", utc(2026, 10, 25, 1, 30), urgent=True)
    out = outgoing((note, limit), utc(2026, 10, 25, 1, 31), Reader())
    assert out.due == (limit,) and out.waiting == (note,)
    assert out.until == utc(2026, 10, 25, 6, 0)  # 07:00 CET
    (sent,) = outgoing((note,), utc(2026, 10, 25, 6, 0), Reader()).due
    assert sent.plain.endswith("Raised Sun 25 Oct 01:30 CEST, held through quiet hours.")


# --- what `status` says ------------------------------------------------------------------------


def test_status_says_what_waits_until_when_and_which_is_urgent() -> None:
    note = alert("note", utc(2026, 1, 8, 23, 0))  # 00:00 CET
    limit = alert("limit", utc(2026, 1, 9, 2, 12), urgent=True)  # sent at once, yet undelivered: Matrix down
    state = State(outbox=(note, limit), armed_at=utc(2026, 1, 8, 12, 0))
    settings = Settings(timezone=BERLIN, quiet_hours=NIGHT, state_url="memory://status")
    snapshot = Snapshot(settings, utc(2026, 1, 9, 2, 15), {"": _View(state, None)})

    text = format_status(snapshot)
    assert "undelivered alerts: 2 (1 urgent)" in text
    assert "quiet hours 22:00-07:00 Europe/Berlin: until Fri 9 Jan 07:00 CET (in 3h 45m), 1 alert(s) waiting" in text
    assert "  waiting: threshold (seven_day), raised Fri 9 Jan 00:00 CET" in text
    doc = snapshot.to_json()
    assert [(a["id"], a["urgent"], a["held_until"]) for a in doc["outbox"]] == [
        ("cmb-note", False, "2026-01-09T06:00:00Z"),
        ("cmb-limit", True, None),
    ]
    assert doc["quiet_hours"] == {
        "span": "22:00-07:00",
        "timezone": "Europe/Berlin",
        "quiet_now": True,
        "until": "2026-01-09T06:00:00Z",
        "waiting": 1,
    }


def test_status_in_quiet_hours_with_nothing_waiting() -> None:
    settings = Settings(timezone=BERLIN, quiet_hours=NIGHT, state_url="memory://status")
    snapshot = Snapshot(settings, utc(2026, 1, 9, 2, 15), {"": _View(State(armed_at=utc(2026, 1, 8)), None)})
    assert "quiet hours 22:00-07:00 Europe/Berlin: until Fri 9 Jan 07:00 CET (in 3h 45m), 0 alert(s) waiting" in (
        format_status(snapshot)
    )
    assert snapshot.to_json()["quiet_hours"]["quiet_now"] is True
