"""What a crash may undo: which state changes a write must make durable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .records import State


def _lasting(state: State) -> tuple[object, ...]:
    """The part of a state that a crash must never undo once written: what is owed
    (the outbox, its attempt marks), what was said (dedup: windows, thresholds and
    when they fell, forecasts, shifts, the reset a window ends at, spend periods), the
    health episode (counters and error that drive degraded/recovered), the arming.
    The rest is what the next reading rewrites anyway: the last utilization,
    `resets_at` and server flags, the forecast's samples, the times of the last attempt
    and success, the last spend reading, the unknown numbers; and the hourly chart
    samples (after a crash the chart may lack the point of that one hour)."""
    health = state.health
    extra = state.extra_usage
    return (
        {
            name: (b.window, b.alerted_thresholds, b.forecast_fired, b.shifted_to, b.passed, _minute(b.last_reset))
            for name, b in state.buckets.items()
        },
        state.outbox,
        (health.consecutive_failures, health.degraded, health.failing_since, health.last_error),
        state.armed_at,
        state.note,
        None if extra is None else (extra.period_start, extra.started_alerted, extra.alerted_thresholds),
    )


def _minute(moment: datetime | None) -> datetime | None:
    # The API jitters a reset by fractions of a second from one answer to the next;
    # only a reset that moved (by a minute or more) changes where a window ends.
    return None if moment is None else (moment.astimezone(UTC) + timedelta(seconds=30)).replace(second=0, microsecond=0)


def lasting_change(old: State | None, new: State) -> bool:
    """Whether `new` differs from `old` in what a crash must never undo (see `_lasting`).

    When it does not (a quiet cycle: one more sample, new timestamps), the cycle may
    write it "consistent" instead of "durable" (store/base.py): a crash of the machine
    can then bring back the state of a cycle or two before, which the next reading
    overwrites, and never a torn file, a lost alert or an alert said twice."""
    return old is None or _lasting(old) != _lasting(new)
