"""decide(previous, reading, now, config) -> Decision: which alerts are due, and the next state.

Pure: no HTTP, storage, Matrix or clock. Each rule cites DESIGN §1.
New alerts are appended to the next state's outbox, so the cycle can persist
them before it tries to deliver anything (DESIGN §5, "nothing lost").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo

from ..model import Alert, BucketReading, ExtraUsage, Reading, is_weekly
from ..state import (
    MAX_HISTORY_SAMPLES,
    MAX_SHIFT_MEMORY,
    BucketState,
    ExtraUsageState,
    Health,
    Sample,
    State,
)
from . import account, digest, extra_usage, families, messages, pictures
from .alerts import alert_id
from .alerts import key as _key
from .alerts import make as _make
from .config import DecideConfig  # its home is the leaf core.config; importable here too
from .forecast import Projection, project


@dataclass(frozen=True, slots=True)
class Decision:
    alerts: tuple[Alert, ...]
    state: State


def _differs(a: datetime, b: datetime, tolerance_sec: int) -> bool:
    return abs((a - b).total_seconds()) > tolerance_sec


def needs_arming(previous: State | None) -> bool:
    """First run ever: no state, or only the health record of runs that never read usage."""
    return previous is None or (previous.armed_at is None and not previous.buckets)


def decide(previous: State | None, reading: Reading, now: datetime, config: DecideConfig) -> Decision:
    arming = needs_arming(previous)
    prev = previous or State()
    alerts: list[Alert] = []
    buckets: dict[str, BucketState] = dict(prev.buckets)
    now_ts = int(now.timestamp())

    # degraded / recovered: a working cycle ends an episode (DESIGN §1).
    health = prev.health
    if health.degraded:
        rendered = messages.render_recovered(health.failing_since, health.consecutive_failures, now)
        alerts.append(_make("recovered", alert_id("recovered", _key(health.failing_since)), rendered, now))
    new_health = Health(last_success_at=now, last_attempt_at=now)

    baseline: list[messages.BaselineRow] = []
    bucket_alerts: list[Alert] = []

    for name in sorted(set(reading.buckets) | set(reading.null_buckets)):
        old = buckets.get(name)
        current = reading.buckets.get(name)
        if current is None:
            baseline.append(messages.BaselineRow(name, None, None))
            buckets[name] = _gone_null(old)
            continue
        state, produced = _bucket_step(name, old, current, now, now_ts, config, arming=arming)
        buckets[name] = state
        bucket_alerts.extend(produced)
        exceeded = tuple(t for t in config.weekly_thresholds if current.utilization >= t) if is_weekly(name) else ()
        baseline.append(
            messages.BaselineRow(
                name, current.utilization, current.resets_at, exceeded, current.is_active, current.severity
            )
        )

    extra_state, extra_alerts = extra_usage.step(
        prev.extra_usage, reading.extra_usage, now, config.extra_usage_thresholds
    )
    family = families.step(prev.families, reading, buckets, now, config, arming=arming)

    armed_at, note = prev.armed_at, prev.note
    if arming:
        # The baseline replaces every per-bucket and extra-usage alert of this first run.
        alerts.append(_armed(baseline, reading.extra_usage, extra_state, prev.note, now, config, family.baseline))
        armed_at = now
        note = None
    else:  # the weekly digest says where the week went (docs/design.md §8)
        alerts.extend([*account.with_breakdown(bucket_alerts, prev.families, prev.buckets), *extra_alerts])
    alerts.extend(family.alerts)

    next_state = State(
        buckets=buckets,
        outbox=prev.outbox,
        health=new_health,
        armed_at=armed_at or now,
        note=note,
        extra_usage=extra_state,
        unknown_numbers=reading.unknown_numbers,
        families=family.state,
    )
    return Decision(tuple(alerts), next_state.with_outbox(prev.outbox + tuple(alerts)))


def _armed(
    baseline: list[messages.BaselineRow],
    extra: ExtraUsage | None,
    extra_state: ExtraUsageState | None,
    note: str | None,
    now: datetime,
    config: DecideConfig,
    family_rows: tuple[str, ...] = (),
) -> Alert:
    """The first run's baseline of every bucket and of paid overage (DESIGN §1, armed)."""
    extra_baseline = None
    if extra is not None and extra_state is not None:
        extra_baseline = messages.ExtraBaseline(extra, extra_state.alerted_thresholds)
    rendered = messages.render_armed(
        _baseline_order(baseline),
        config.weekly_thresholds,
        now,
        note,
        extra=extra_baseline,
        extra_thresholds=config.extra_usage_thresholds,
        zone=config.timezone,
        family_rows=family_rows,
    )
    return _make("armed", alert_id("armed", now.isoformat()), rendered, now, note=note)


def _gone_null(old: BucketState | None) -> BucketState:
    """ "A bucket going to or from null is not a shift": remember that it is null, keep the
    window and its dedup for when it comes back, and the last reset it reported (a moved
    window still ends at its moved reset)."""
    if old is None:
        return BucketState()
    return replace(
        old,
        utilization=None,
        resets_at=None,
        last_reset=old.resets_at or old.last_reset,
        is_active=None,
        severity=None,
    )


def _baseline_order(rows: list[messages.BaselineRow]) -> list[messages.BaselineRow]:
    # five_hour first, then weekly buckets with seven_day itself leading, then the rest.
    def rank(row: messages.BaselineRow) -> tuple[int, str]:
        if row.bucket == "five_hour":
            return (0, "")
        if row.bucket == "seven_day":
            return (1, "")
        return (2 if is_weekly(row.bucket) else 3, row.bucket)

    return sorted(rows, key=rank)


def _bucket_step(
    name: str,
    old: BucketState | None,
    current: BucketReading,
    now: datetime,
    now_ts: int,
    config: DecideConfig,
    *,
    arming: bool,
) -> tuple[BucketState, list[Alert]]:
    """One bucket's reading: its window (rollover or shift), then for weekly buckets the
    window record, thresholds and forecast. On arming the caller keeps only the baseline."""
    state, alerts = _window_step(name, old, current, now, config)
    new_resets = current.resets_at
    before = state.utilization
    state = replace(
        state,
        utilization=current.utilization,
        resets_at=new_resets,
        last_reset=None if new_resets is not None else state.resets_at or state.last_reset,
        is_active=current.is_active,
        severity=current.severity,
    )
    if not is_weekly(name):
        return state, alerts
    state = digest.record_window(state, before, now_ts, config.weekly_thresholds)
    state, crossed = _threshold_step(name, state, current, now, config)
    state, forecast = _forecast_step(name, state, current, now, now_ts, config)
    return state, [*alerts, *crossed, *forecast]


def _window_step(
    name: str, old: BucketState | None, current: BucketReading, now: datetime, config: DecideConfig
) -> tuple[BucketState, list[Alert]]:
    """Which window this reading belongs to: a natural rollover starts a new one (and the
    closed one gets its digest), a moved reset keeps it (and is said once per value)."""
    new_resets = current.resets_at
    if old is None:
        return BucketState(window=new_resets), []
    tol = config.reset_shift_tolerance_sec
    state = old
    alerts: list[Alert] = []
    # After a reading without a reset (null), the last one reported: a moved window
    # ends at its moved reset, not at the one it began with.
    reference = old.resets_at or old.last_reset or old.window
    if new_resets is not None and reference is not None and _differs(new_resets, reference, tol):
        if reference <= now + timedelta(seconds=tol):
            # Natural rollover: the previous window had expired. Silent; a new
            # window starts a new history and new dedup (DESIGN §1, §forecast).
            # Within the tolerance: the old value is jittered and our clock may
            # trail the API's, which rolls over at …:59:59.6, just before a cron tick.
            # The closed window gets its digest (DESIGN §7); a moved reset never comes here.
            alerts.extend(digest.digest_alerts(name, old, now, config))
            state = BucketState(window=new_resets)
        elif old.resets_at is not None and not any(not _differs(new_resets, s, tol) for s in old.shifted_to):
            # Reset shift: an active window's anchor moved. Once per distinct value.
            alerts.append(_shift_alert(name, old.resets_at, new_resets, current.utilization, now, config.timezone))
            state = replace(state, shifted_to=(*old.shifted_to, new_resets)[-MAX_SHIFT_MEMORY:])
    if state.window is None:
        state = replace(state, window=new_resets)
    return state, alerts


def _shift_alert(name: str, old: datetime, new: datetime, utilization: float, now: datetime, zone: tzinfo) -> Alert:
    return _make(
        "reset_shift",
        alert_id("reset_shift", name, _key(new)),
        messages.render_shift(name, old, new, utilization, now, zone=zone),
        now,
        bucket=name,
        old_resets_at=old.isoformat(),
        new_resets_at=new.isoformat(),
    )


def _threshold_step(
    name: str, state: BucketState, current: BucketReading, now: datetime, config: DecideConfig
) -> tuple[BucketState, list[Alert]]:
    """Weekly thresholds: once per threshold per window; on arming, thresholds already
    exceeded are shown in the baseline and marked as said (DESIGN §1)."""
    alerts: list[Alert] = []
    alerted = set(state.alerted_thresholds)
    for threshold in config.weekly_thresholds:
        if current.utilization >= threshold and threshold not in alerted:
            alerted.add(threshold)
            alerts.append(
                _make(
                    "threshold",
                    alert_id("threshold", name, _key(state.window), str(threshold)),
                    messages.render_threshold(
                        name,
                        threshold,
                        current.utilization,
                        current.resets_at,
                        now,
                        binding=current.binding,
                        severity=current.severity,
                        zone=config.timezone,
                    ),
                    now,
                    bucket=name,
                    threshold=threshold,
                    utilization=current.utilization,
                    resets_at=current.resets_at.isoformat() if current.resets_at else None,
                )
            )
    return replace(state, alerted_thresholds=tuple(sorted(alerted))), alerts


def _forecast_step(
    name: str, state: BucketState, current: BucketReading, now: datetime, now_ts: int, config: DecideConfig
) -> tuple[BucketState, list[Alert]]:
    """The burn-rate forecast (DESIGN §1, "The forecast"): this window's history only,
    trimmed to FORECAST_WINDOW_SEC; once per window, when 100 % comes before the reset."""
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
    return _make(
        "forecast",
        alert_id("forecast", name, _key(state.window)),
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
        # The picture's inputs (DESIGN §7); the sink draws it, the core stays pure.
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
) -> dict[str, object]:
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


def record_failure(previous: State | None, error: str, hint: str, now: datetime, config: DecideConfig) -> Decision:
    """A cycle failed before it could decide. After HEALTH_FAILURES in a row, one
    degraded alert per episode (DESIGN §1); the episode ends at the next success."""
    prev = previous or State()
    health = prev.health
    failures = health.consecutive_failures + 1
    since = health.failing_since or now
    alerts: list[Alert] = []
    degraded = health.degraded
    if not degraded and failures >= config.health_failures:
        degraded = True
        alerts.append(
            _make(
                "degraded",
                alert_id("degraded", _key(since)),
                messages.render_degraded(error, failures, since, hint, now, zone=config.timezone),
                now,
                error=error,
                failures=failures,
            )
        )
    new_health = replace(
        health,
        consecutive_failures=failures,
        degraded=degraded,
        failing_since=since,
        last_error=error,
        last_attempt_at=now,
    )
    state = replace(prev, health=new_health)
    return Decision(tuple(alerts), state.with_outbox(prev.outbox + tuple(alerts)))


def drop_delivered(state: State, delivered: tuple[str, ...]) -> State:
    done = set(delivered)
    return state.with_outbox(tuple(a for a in state.outbox if a.id not in done))
