"""The weekly family's own rules (docs/design.md §1, §8): thresholds and the burn-rate
forecast, once per window each. Pure, like the rest of the core; `decide` calls them for
buckets whose family has thresholds of kind `threshold` and a forecast."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from ..model import Alert, BucketReading
from ..state import MAX_HISTORY_SAMPLES, BucketState, Sample
from . import messages, pictures
from .alerts import alert_id, bucket_threshold, key, make
from .config import DecideConfig
from .forecast import Projection, project
from .thresholds import crossed


def threshold_step(
    name: str, state: BucketState, current: BucketReading, now: datetime, config: DecideConfig
) -> tuple[BucketState, list[Alert]]:
    """Weekly thresholds: once per threshold per window; on arming, thresholds already
    exceeded are shown in the baseline and marked as said (docs/design.md §1)."""
    new = crossed(config.weekly_thresholds, current.utilization, state.alerted_thresholds)
    alerts = [
        bucket_threshold(
            "threshold",
            alert_id("threshold", name, key(state.window), str(threshold)),
            name,
            current,
            threshold,
            now,
            config.timezone,
            thresholds=config.weekly_thresholds,
        )
        for threshold in new
    ]
    return replace(state, alerted_thresholds=tuple(sorted({*state.alerted_thresholds, *new}))), alerts


def forecast_step(
    name: str, state: BucketState, current: BucketReading, now: datetime, now_ts: int, config: DecideConfig
) -> tuple[BucketState, list[Alert]]:
    """The burn-rate forecast (docs/design.md §1, "The forecast"): this window's history
    only, trimmed to FORECAST_WINDOW_SEC; once per window, when 100 % comes before the reset."""
    cutoff = now_ts - config.forecast_window_sec
    history: list[Sample] = [s for s in state.history if cutoff <= s[0] < now_ts]
    history.append((now_ts, current.utilization))
    state = replace(state, history=tuple(history[-MAX_HISTORY_SAMPLES:]))
    resets_at = current.resets_at
    if not config.forecast_enabled or state.forecast_fired or resets_at is None or resets_at <= now:
        return state, []
    projection = project(
        state.history,
        now=now,
        current=current.utilization,
        min_samples=config.forecast_min_samples,
        min_span_sec=config.forecast_min_span_sec,
    )
    if projection is None or projection.exhausted_at >= resets_at:
        return state, []
    state = replace(state, forecast_fired=True)
    return state, [_forecast_alert(name, state, projection, current, resets_at, now, config)]


def _forecast_alert(
    name: str,
    state: BucketState,
    projection: Projection,
    current: BucketReading,
    resets_at: datetime,
    now: datetime,
    config: DecideConfig,
) -> Alert:
    return make(
        "forecast",
        alert_id("forecast", name, key(state.window)),
        messages.render_forecast(
            name,
            projection,
            current.utilization,
            resets_at,
            now,
            binding=current.binding,
            severity=current.severity,
            zone=config.timezone,
        ),
        now,
        bucket=name,
        projected_at=projection.exhausted_at.isoformat(),
        resets_at=resets_at.isoformat(),
        burn_rate_per_hour=round(projection.slope_per_hour, 3),
        samples=projection.samples,
        utilization=current.utilization,
        # The picture's inputs (docs/design.md §7); the sink draws it, the core stays pure.
        **_forecast_chart(name, state, projection, current.utilization, resets_at, now, config),
    )


def _forecast_chart(
    name: str,
    state: BucketState,
    projection: Projection,
    current: float,
    resets_at: datetime,
    now: datetime,
    config: DecideConfig,
) -> dict[str, Any]:
    if not config.charts_enabled:
        return {}
    spec = pictures.window_chart(
        name,
        pictures.chart_samples(state),
        resets_at=resets_at,
        now=now,
        thresholds=config.weekly_thresholds,
        current=current,
        projection=projection,
        fit_start=state.history[0][0] if state.history else None,
        zone=config.timezone,
    )
    return {"chart": spec.to_json()}
