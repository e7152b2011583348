"""The whole weekly window (docs/design.md §7): what the state keeps of it, and the weekly digest
of what it came to.

Pure, like the rest of the core. `record_window` runs at each reading of a weekly bucket:
it keeps the hourly samples and the times each threshold and the limit were passed.
`summarize` runs when the window rolls over naturally (a moved reset keeps it open, so it
never closes one early): the bucket's state as the window closed in, a `WindowSummary`
out, or None for a window nothing was used in.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Protocol

from .. import localtime
from ..chart_spec import WEEK_SEC, Sample
from ..model import Alert
from ..state import HOUR_SEC, MAX_HOURLY_SAMPLES, BucketState
from . import pictures
from .alerts import alert_id, key, make
from .digest_messages import render_digest
from .family_table import family_of
from .pictures import chart_samples
from .window_summary import Passed, WindowSummary

LIMIT = 100


def record_window(state: BucketState, before: float | None, now_ts: int, thresholds: tuple[int, ...]) -> BucketState:
    """The whole window for the chart and the digest (docs/design.md §7): at most one sample an
    hour (the hour's first reading, at the whole hour), and when each threshold and the
    limit were passed. A mark is timed only when a reading below it is followed by one
    at or above it in this window: a mark already past when the window was first seen
    (arming mid-window, an outage across the rollover) has no known time."""
    utilization = state.utilization
    assert utilization is not None  # called with the reading just taken
    hour = now_ts - now_ts % HOUR_SEC
    # A state written before hourly samples existed still has this window's recent
    # history: start from it, so an upgrade mid-window keeps what it knows.
    hourly = list(state.hourly or first_per_hour(state.history))
    if not hourly or hourly[-1][0] < hour:
        hourly.append((hour, round(utilization, 1)))
    oldest = hour - (MAX_HOURLY_SAMPLES - 1) * HOUR_SEC
    passed = dict(state.passed)
    if before is not None:
        for mark in sorted({*thresholds, 100}):
            if before < mark <= utilization:
                passed.setdefault(mark, now_ts)
    return replace(state, hourly=tuple(s for s in hourly if s[0] >= oldest), passed=tuple(sorted(passed.items())))


def first_per_hour(samples: tuple[Sample, ...]) -> tuple[Sample, ...]:
    first: dict[int, float] = {}
    for t, u in samples:
        first.setdefault(t - t % HOUR_SEC, round(u, 1))
    return tuple(sorted(first.items()))


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def summarize(bucket: str, closed: BucketState, thresholds: Sequence[int], zone: tzinfo = UTC) -> WindowSummary | None:
    """The digest of `closed`, the state of a weekly bucket whose window just rolled over.

    None when there is nothing to sum up: no reset time to place the window, no sample of
    it (a window the bot never watched, such as one upgraded from a v1 file), or no use
    (every sample 0 %, to the hourly samples' one decimal: docs/design.md §7 sends a digest only for
    buckets that were used)."""
    ended = closed.resets_at or closed.last_reset or closed.window
    if ended is None:
        return None
    end_ts = int(ended.timestamp())
    samples = tuple((t, u) for t, u in chart_samples(closed) if t <= end_ts)
    if not samples or round(max(u for _, u in samples), 1) <= 0:
        return None
    peak_t, peak = max(samples, key=lambda s: (s[1], -s[0]))  # the first time it was highest
    times = dict(closed.passed)

    def reached(percent: int) -> Passed | None:
        if percent in times:
            return Passed(percent, _utc(times[percent]))
        return Passed(percent, None) if peak >= percent else None

    passed = tuple(p for p in (reached(t) for t in sorted(set(thresholds)) if t < LIMIT) if p is not None)
    busiest, gain = busiest_day(samples, zone)
    return WindowSummary(
        bucket=bucket,
        # Seven days before the reset, or earlier when a moved reset made the window longer.
        started_at=min(ended - timedelta(seconds=WEEK_SEC), _utc(samples[0][0])),
        ended_at=ended,
        peak=peak,
        peak_on=localtime.local_day(_utc(peak_t), zone),
        passed=passed,
        limit=reached(LIMIT),
        busiest_day=busiest,
        busiest_gain=gain,
        samples=samples,
    )


def busiest_day(samples: Sequence[Sample], zone: tzinfo = UTC) -> tuple[date | None, float]:
    """The day (on the reader's calendar, `zone`) whose readings rose the most, and by how much (percentage points).

    Each rise between two consecutive samples counts for the day of the later one (after
    an outage, the whole gap's rise lands on the day the bot saw it again); falls count
    for nothing. Ties go to the earlier day."""
    gains: dict[date, float] = {}
    for (_, before), (t, after) in itertools.pairwise(samples):
        if after > before:
            day = localtime.local_day(_utc(t), zone)
            gains[day] = gains.get(day, 0.0) + (after - before)
    if not gains:
        return None, 0.0
    day = min(gains, key=lambda d: (-gains[d], d))
    return day, round(gains[day], 1)


class DigestConfig(Protocol):
    """What the digest reads of the decision's configuration (DecideConfig has it all)."""

    @property
    def weekly_thresholds(self) -> tuple[int, ...]: ...
    @property
    def charts_enabled(self) -> bool: ...
    @property
    def digest_enabled(self) -> bool: ...
    @property
    def timezone(self) -> tzinfo: ...


def digest_alerts(name: str, closed: BucketState, now: datetime, config: DigestConfig) -> list[Alert]:
    """The weekly digest of a window that just rolled over naturally: once per rollover
    (its id is the closed window's), only for a family with a digest (the weekly one), none
    for an unused window."""
    if not (config.digest_enabled and family_of(name).digest):
        return []
    summary = summarize(name, closed, config.weekly_thresholds, config.timezone)
    if summary is None:
        return []
    details: dict[str, Any] = {
        "window_start": summary.started_at.isoformat(),
        "resets_at": summary.ended_at.isoformat(),
        "peak": summary.peak,
        "passed": {str(p.percent): p.at.isoformat() if p.at else None for p in summary.passed},
        "limit_hit_at": summary.limit.at.isoformat() if summary.limit and summary.limit.at else None,
        "limit_hit": summary.limit is not None,
        "busiest_day": summary.busiest_day.isoformat() if summary.busiest_day else None,
    }
    if config.charts_enabled:
        limit_at = summary.limit.at if summary.limit else None
        spec = pictures.digest_chart(
            name,
            summary.samples,
            resets_at=summary.ended_at,
            now=now,
            thresholds=config.weekly_thresholds,
            peak=summary.peak,
            limit_hit_at=int(limit_at.timestamp()) if limit_at else None,
            zone=config.timezone,
        )
        details["chart"] = spec.to_json()
    rendered = render_digest(summary, config.weekly_thresholds, zone=config.timezone)
    ident = alert_id("digest", name, key(closed.window or summary.ended_at))
    return [make("digest", ident, rendered, now, bucket=name, **details)]
