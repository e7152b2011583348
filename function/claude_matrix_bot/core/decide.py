"""decide(previous, reading, now, config) -> Decision: which alerts are due, and the next state.

Pure: no HTTP, storage, Matrix or clock. Each rule cites docs/design.md §1.
New alerts are appended to the next state's outbox, so the cycle can persist
them before it tries to deliver anything (docs/design.md §5, "nothing lost").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo

from ..model import Alert, BucketReading, ExtraUsage, Reading
from ..state import MAX_SHIFT_MEMORY, BucketState, ExtraUsageState, Health, State
from . import account, digest, extra_usage, families, messages, session, thresholds, weekly
from .alerts import alert_id
from .alerts import key as _key
from .alerts import make as _make
from .config import DecideConfig  # its home is the leaf core.config; importable here too
from .family_table import baseline_rank, family_of, thresholds_of
from .window import WindowEvent, window_event


@dataclass(frozen=True, slots=True)
class Decision:
    alerts: tuple[Alert, ...]
    state: State


def needs_arming(previous: State | None) -> bool:
    """First run ever: no state, or only the health record of runs that never read usage."""
    return previous is None or (previous.armed_at is None and not previous.buckets)


def decide(previous: State | None, reading: Reading, now: datetime, config: DecideConfig) -> Decision:
    arming = needs_arming(previous)
    prev = previous or State()
    alerts: list[Alert] = []
    # degraded / recovered: a working cycle ends an episode (docs/design.md §1).
    health = prev.health
    if health.degraded:
        rendered = messages.render_recovered(health.failing_since, health.consecutive_failures, now)
        alerts.append(_make("recovered", alert_id("recovered", _key(health.failing_since)), rendered, now))

    buckets, baseline, bucket_alerts = _buckets_step(prev.buckets, reading, now, config, arming=arming)
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
        health=Health(last_success_at=now, last_attempt_at=now),
        armed_at=armed_at or now,
        note=note,
        extra_usage=extra_state,
        unknown_numbers=reading.unknown_numbers,
        families=family.state,
    )
    return Decision(tuple(alerts), next_state.with_outbox(prev.outbox + tuple(alerts)))


def _buckets_step(
    previous: Mapping[str, BucketState], reading: Reading, now: datetime, config: DecideConfig, *, arming: bool
) -> tuple[dict[str, BucketState], list[messages.BaselineRow], list[Alert]]:
    """Every bucket of the reading (null ones included), and the buckets of a family that
    says "back" when they are absent from it (the window's end, docs/design.md §8)."""
    buckets = dict(previous)
    baseline: list[messages.BaselineRow] = []
    alerts: list[Alert] = []
    for name in sorted(set(reading.buckets) | set(reading.null_buckets) | set(previous)):
        old = previous.get(name)
        current = reading.buckets.get(name)
        family = family_of(name)
        present = current is not None or name in reading.null_buckets
        if current is None:
            if present:
                baseline.append(messages.BaselineRow(name, None, None))
                buckets[name] = _gone_null(old)
            if old is not None and family.back_after_limit:
                # An absent bucket's state is left as it was, but for the session's own mark.
                event = window_event(old, None, now, config.reset_shift_tolerance_sec)
                buckets[name], produced = session.step(name, buckets[name], event, None, now, config)
                alerts.extend(produced)
            continue
        state, produced = _bucket_step(name, old, current, now, int(now.timestamp()), config)
        buckets[name] = state
        alerts.extend(produced)
        exceeded = thresholds.exceeded(thresholds_of(family, config), current.utilization)
        baseline.append(
            messages.BaselineRow(
                name, current.utilization, current.resets_at, exceeded, current.is_active, current.severity
            )
        )
    return buckets, baseline, alerts


def _armed(
    baseline: list[messages.BaselineRow],
    extra: ExtraUsage | None,
    extra_state: ExtraUsageState | None,
    note: str | None,
    now: datetime,
    config: DecideConfig,
    family_rows: tuple[str, ...] = (),
) -> Alert:
    """The first run's baseline of every bucket and of paid overage (docs/design.md §1, armed)."""
    extra_baseline = None
    if extra is not None and extra_state is not None:
        extra_baseline = messages.ExtraBaseline(extra, extra_state.alerted_thresholds)
    rendered = messages.render_armed(
        sorted(baseline, key=lambda row: baseline_rank(row.bucket)),
        config.weekly_thresholds,
        now,
        note,
        extra=extra_baseline,
        extra_thresholds=config.extra_usage_thresholds,
        zone=config.timezone,
        family_rows=family_rows,
        session_thresholds=config.session_thresholds,
        session_alerts=config.session_alerts,
        forecast=config.forecast_enabled,
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


def _bucket_step(
    name: str, old: BucketState | None, current: BucketReading, now: datetime, now_ts: int, config: DecideConfig
) -> tuple[BucketState, list[Alert]]:
    """One bucket's reading: its window event (rollover or shift), then the rules its
    family declares (docs/design.md §8). On arming the caller keeps only the baseline."""
    family = family_of(name)
    event = window_event(old, current, now, config.reset_shift_tolerance_sec)
    state, alerts = _window_step(name, event, old, current, now, config)
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
    if family.digest or family.chart:
        state = digest.record_window(state, before, now_ts, config.weekly_thresholds)
    if family.threshold_kind == "threshold":
        state, crossed = weekly.threshold_step(name, state, current, now, config)
        alerts.extend(crossed)
    if family.forecast:
        state, forecast = weekly.forecast_step(name, state, current, now, now_ts, config)
        alerts.extend(forecast)
    if family.back_after_limit:
        state, said = session.step(name, state, event, current, now, config)
        alerts.extend(said)
    return state, alerts


def _window_step(
    name: str,
    event: WindowEvent,
    old: BucketState | None,
    current: BucketReading,
    now: datetime,
    config: DecideConfig,
) -> tuple[BucketState, list[Alert]]:
    """The window this reading belongs to (core/window.py): a rollover starts a new one (and
    the closed one gets its digest), a moved reset keeps it (and is said once per value)."""
    new_resets = current.resets_at
    if old is None:
        return BucketState(window=new_resets), []
    state = old
    alerts: list[Alert] = []
    if event.kind == "rollover":
        # Silent; a new window starts a new history and new dedup (docs/design.md §1),
        # and the closed one gets its digest (§7); a moved reset never comes here.
        alerts.extend(digest.digest_alerts(name, old, now, config))
        state = BucketState(window=new_resets)
    elif event.kind == "shift" and family_of(name).reset_shift:
        assert event.old_resets_at is not None
        assert event.new_resets_at is not None
        alerts.append(
            _shift_alert(name, event.old_resets_at, event.new_resets_at, current.utilization, now, config.timezone)
        )
        state = replace(state, shifted_to=(*old.shifted_to, event.new_resets_at)[-MAX_SHIFT_MEMORY:])
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


def record_failure(previous: State | None, error: str, hint: str, now: datetime, config: DecideConfig) -> Decision:
    """A cycle failed before it could decide. After HEALTH_FAILURES in a row, one
    degraded alert per episode (docs/design.md §1); the episode ends at the next success."""
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
