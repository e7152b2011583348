"""Paid overage (docs/design.md §1, extra usage): "started" and the cap thresholds, once per spend period.

Pure, like the rest of the core; `decide` calls `step` once per reading.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from ..model import Alert, ExtraUsage
from ..state import ExtraUsageState
from . import messages
from .alerts import alert_id, key, make
from .thresholds import crossed


def _overage_on(extra: ExtraUsage) -> bool:
    # Unknown counts as on (some answers omit the flag); `out_of_credits` is overage
    # that ran dry at its cap, not overage that was never on, so its 100% still counts.
    return extra.enabled is not False or extra.disabled_reason == "out_of_credits"


def _extra_alert(ident: str, rendered: messages.Rendered, now: datetime, details: dict[str, Any]) -> Alert:
    # No bucket: the stdout line of paid overage carries none (docs/design.md §2).
    return make("extra_usage", ident, rendered, now, **details)


def step(
    old: ExtraUsageState | None, current: ExtraUsage | None, now: datetime, thresholds: tuple[int, ...]
) -> tuple[ExtraUsageState | None, list[Alert]]:
    """docs/design.md §1 extra usage: "started" (used goes above 0) and cap thresholds, once
    each per spend period; a period begins at the first reading and whenever the
    used amount drops (the monthly reset). On arming the caller shows the baseline
    instead, and what is already true is marked as said."""
    if current is None:
        return old, []  # not reported this time: keep the period and its dedup
    previous_used = old.last_used if old is not None else None
    dropped = current.used is not None and previous_used is not None and current.used < previous_used
    if old is None or dropped:
        state = ExtraUsageState(period_start=now, last=current, last_used=current.used)
    else:
        state = replace(old, last=current, last_used=current.used if current.used is not None else old.last_used)
    if not _overage_on(current):
        return state, []

    alerts: list[Alert] = []
    period = key(state.period_start)
    # The stdout line's fields (docs/design.md §2): amounts in minor units, no bucket.
    details: dict[str, Any] = {
        "used": current.used,
        "limit": current.limit,
        "currency": current.currency,
        "exponent": current.exponent,
        "percent": None if current.percent is None else round(current.percent, 2),
        "period_start": state.period_start.isoformat(),
    }
    if current.used is not None and current.used > 0 and not state.started_alerted:
        state = replace(state, started_alerted=True)
        alerts.append(
            _extra_alert(
                alert_id("extra_usage", period, "started"),
                messages.render_extra_started(current, now),
                now,
                {"started": True, **details},
            )
        )
    new = crossed(thresholds, current.percent, state.alerted_thresholds)
    for threshold in new:
        alerts.append(
            _extra_alert(
                alert_id("extra_usage", period, str(threshold)),
                messages.render_extra_threshold(current, threshold, now),
                now,
                {"threshold": threshold, **details},
            )
        )
    return replace(state, alerted_thresholds=tuple(sorted({*state.alerted_thresholds, *new}))), alerts
