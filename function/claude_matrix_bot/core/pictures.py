"""What a chart shows (docs/design.md §7), decided in the core; the sinks draw it.

Pure: samples and times in, a `ChartSpec` out. An alert that wants a picture carries
its spec in `details["chart"]`, so the decision never touches the plotting library and
the outbox keeps everything a retry needs to draw the same picture again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, tzinfo

from .. import localtime
from ..chart_spec import WEEK_SEC, ChartSpec, Fit, Sample
from ..state import BucketState
from . import messages
from .forecast import Projection, project


def merge_samples(*series: Iterable[Sample]) -> tuple[Sample, ...]:
    """One time-ordered series from several (hourly and recent): one value per second."""
    by_time: dict[int, float] = {}
    for samples in series:
        for t, u in samples:
            by_time[int(t)] = u
    return tuple(sorted(by_time.items()))


def window_start(samples: Sequence[Sample], resets_at: datetime) -> int:
    """A weekly window began seven days before its reset; a window whose reset was moved
    later began earlier than that, and its first sample says so."""
    nominal = int(resets_at.timestamp()) - WEEK_SEC
    return min([nominal, *(t for t, _ in samples[:1])])


def fit_line(projection: Projection, *, now: datetime, current: float, fit_start: int) -> Fit:
    """The forecast's line through the latest reading at the fitted slope, from the start
    of the samples it rests on to 100 % (the same line `projected_at` is read from)."""
    now_ts = int(now.timestamp())
    start = min(fit_start, now_ts)
    start_utilization = current - projection.slope_per_hour * (now_ts - start) / 3600
    return Fit(
        start=start,
        start_utilization=round(start_utilization, 3),
        exhausted_at=int(projection.exhausted_at.timestamp()),
    )


def window_chart(
    bucket: str,
    samples: Sequence[Sample],
    *,
    resets_at: datetime,
    now: datetime,
    thresholds: Sequence[int],
    current: float | None,
    projection: Projection | None = None,
    fit_start: int | None = None,
    limit_hit_at: int | None = None,
    zone: tzinfo = UTC,
) -> ChartSpec:
    """The current window of a weekly bucket: the forecast alert's picture and `chart`'s."""
    title = messages.bucket_label(bucket)
    if current is not None:
        title += f": {messages.fmt_pct(current)} now"
    fit = None
    if projection is not None and current is not None:
        start = fit_start if fit_start is not None else (samples[0][0] if samples else int(now.timestamp()))
        fit = fit_line(projection, now=now, current=current, fit_start=start)
    return ChartSpec(
        title=title,
        samples=tuple(samples),
        window_start=window_start(samples, resets_at),
        resets_at=int(resets_at.timestamp()),
        now=int(now.timestamp()),
        thresholds=tuple(thresholds),
        fit=fit,
        limit_hit_at=limit_hit_at,
        timezone=localtime.zone_name(zone),
    )


def digest_chart(
    bucket: str,
    samples: Sequence[Sample],
    *,
    resets_at: datetime,
    now: datetime,
    thresholds: Sequence[int],
    peak: float,
    limit_hit_at: int | None,
    zone: tzinfo = UTC,
) -> ChartSpec:
    """A closed window, for the weekly digest: what happened, nothing projected."""
    ended = localtime.local(resets_at, zone)
    title = f"{messages.bucket_label(bucket)}: week to {ended:%a} {ended.day} {ended:%b}, peak {messages.fmt_pct(peak)}"
    return ChartSpec(
        title=title,
        samples=tuple(samples),
        window_start=window_start(samples, resets_at),
        resets_at=int(resets_at.timestamp()),
        now=int(now.timestamp()),
        thresholds=tuple(thresholds),
        limit_hit_at=limit_hit_at,
        timezone=localtime.zone_name(zone),
    )


def current_chart(
    name: str,
    bucket: BucketState,
    *,
    now: datetime,
    thresholds: Sequence[int],
    min_samples: int,
    min_span_sec: int,
    zone: tzinfo = UTC,
) -> ChartSpec:
    """`claude-matrix-bot chart`: the bucket's current window as the state remembers it,
    with the forecast's line when the forecast rules allow a projection."""
    if bucket.resets_at is None:
        raise ValueError(f"{name} has no reset time, so there is no window to draw")
    projection = None
    if bucket.utilization is not None:
        projection = project(
            bucket.history, now=now, current=bucket.utilization, min_samples=min_samples, min_span_sec=min_span_sec
        )
    return window_chart(
        name,
        chart_samples(bucket),
        resets_at=bucket.resets_at,
        now=now,
        thresholds=thresholds,
        current=bucket.utilization,
        projection=projection,
        fit_start=bucket.history[0][0] if bucket.history else None,
        zone=zone,
    )


def chart_samples(bucket: BucketState) -> tuple[Sample, ...]:
    """Everything the state holds about the current window, oldest first: the hourly
    samples of the whole window and the recent readings at full resolution."""
    return merge_samples(bucket.hourly, bucket.history)
