"""The session family's own rules (docs/design.md §1, §8): the 5-hour bucket.

- limit reached (urgent): the bucket at 100 %, "back at <time>" in the reader's zone;
- back: at the first cycle at or after that window's reset, from the window event
  (core/window.py): a rollover, or an end (the bucket null or absent after its reset);
- SESSION_THRESHOLDS (default none): once per threshold per 5-hour window.
SESSION_ALERTS=off turns limit and back off; the thresholds stay as configured.

Per-window dedup lives in the bucket's `alerted_thresholds`, as the weekly family's does:
the limit is said as 100, so a threshold of 100 is the limit itself (said once, as the
limit when SESSION_ALERTS is on). Pure, like the rest of the core; `decide` calls `step`
for a bucket whose family says "back after the limit".
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from html import escape

from ..model import Alert, BucketReading
from ..state import BucketState
from . import messages
from .alerts import alert_id, bucket_threshold, key, make
from .config import DecideConfig
from .family_table import SESSION, thresholds_of
from .thresholds import crossed
from .window import WindowEvent

LIMIT = 100


def step(
    name: str,
    state: BucketState,
    event: WindowEvent,
    current: BucketReading | None,
    now: datetime,
    config: DecideConfig,
) -> tuple[BucketState, list[Alert]]:
    """`state` is the bucket's next state (a new window after a rollover); `current` None
    when the bucket came back null or was absent. On arming the caller keeps no alert:
    what is already true is marked as said."""
    alerts = _back(name, state, event, now, config)
    if event.kind == "end" and alerts:
        # Said once: the closed window, kept for the bucket's return, forgets its limit.
        state = replace(state, alerted_thresholds=tuple(t for t in state.alerted_thresholds if t != LIMIT))
    if current is None:
        return state, alerts
    thresholds = thresholds_of(SESSION, config)
    marks = (*thresholds, LIMIT) if config.session_alerts else thresholds
    new = crossed(sorted(set(marks)), current.utilization, state.alerted_thresholds)
    for mark in new:
        if mark == LIMIT and config.session_alerts:
            alerts.append(_limit_alert(name, state, current, now, config))
        else:
            ident = alert_id("session", name, key(state.window), "threshold", str(mark))
            alerts.append(
                bucket_threshold("session", ident, name, current, mark, now, config.timezone, event="threshold")
            )
    return replace(state, alerted_thresholds=tuple(sorted({*state.alerted_thresholds, *new}))), alerts


def _back(name: str, state: BucketState, event: WindowEvent, now: datetime, config: DecideConfig) -> list[Alert]:
    closed = event.previous
    if not (config.session_alerts and event.ended and closed is not None and LIMIT in closed.alerted_thresholds):
        return []
    reset = closed.resets_at or closed.last_reset or closed.window
    label = messages.bucket_label(name)
    since = f"The window that hit its limit reset {messages.fmt_when(reset, now, config.timezone)}."
    rendered = messages.Rendered(
        f"✅ {label}: the limit is back\nYou can use Claude again. {since}",
        f"<b>✅ {escape(label)}: the limit is back</b><br>You can use Claude again. {escape(since)}",
    )
    ident = alert_id("session", name, key(closed.window), "back")
    return [make("session", ident, rendered, now, bucket=name, event="back", resets_at=_iso(reset))]


def _limit_alert(name: str, state: BucketState, current: BucketReading, now: datetime, config: DecideConfig) -> Alert:
    label = messages.bucket_label(name)
    if current.resets_at is None:
        back = "No reset time reported."
    else:
        back = f"Back at {messages.fmt_when(current.resets_at, now, config.timezone)}."
    rendered = messages.Rendered(
        f"⛔ {label}: limit reached\n{back}",
        f"<b>⛔ {escape(label)}: limit reached</b><br>{escape(back)}",
    )
    return make(
        "session",
        alert_id("session", name, key(state.window), "limit"),
        rendered,
        now,
        bucket=name,
        event="limit",
        utilization=current.utilization,
        resets_at=_iso(current.resets_at),
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
