"""The account family (docs/design.md §1, §8): a window's non-null `locked_reason` gives one
urgent `locked` alert per value, also on the first run (a locked account must ring); the
memory of values said is forgotten once nothing is locked. And where the week went: the
last `seven_day_breakdown` seen in a weekly window, for that window's digest."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from html import escape

from ..family_values import breakdown_summary
from ..model import Alert, Reading
from ..state import BucketState, FamilyState
from ..state.families import MAX_BREAKDOWN, MAX_LOCKED
from . import family_messages as fm
from .alerts import alert_id, make
from .family_table import WEEKLY

# The breakdown is of the week of all models: the weekly family's lead bucket (seven_day).
_BREAKDOWN_BUCKET = WEEKLY.lead or ""


def locked_step(old: FamilyState, reading: Reading, now: datetime) -> tuple[FamilyState, list[Alert]]:
    if not reading.locked:
        return replace(old, locked=()), []
    alerts: list[Alert] = []
    said = list(old.locked)
    for reason in sorted({reason for _, reason in reading.locked}):
        if reason in said:
            continue
        said.append(reason)
        buckets = [bucket for bucket, value in reading.locked if value == reason]
        alerts.append(
            make(  # urgent, always (core/family_table.py's URGENCY)
                "locked",
                alert_id("locked", reason),
                fm.render_locked(reason, buckets),
                now,
                bucket=buckets[0],
                locked_reason=reason,
            )
        )
    return replace(old, locked=tuple(said[-MAX_LOCKED:])), alerts


def breakdown_step(old: FamilyState, reading: Reading, buckets: dict[str, BucketState]) -> FamilyState:
    """Remember the last breakdown with the weekly window it was seen in."""
    weekly = buckets.get(_BREAKDOWN_BUCKET)
    if reading.breakdown is None or weekly is None or weekly.window is None:
        return old
    rows = tuple((r.display_name, r.percent) for r in reading.breakdown.rows[:MAX_BREAKDOWN])
    return replace(old, breakdown=rows, breakdown_window=weekly.window)


def with_breakdown(alerts: list[Alert], families: FamilyState, closed: dict[str, BucketState]) -> list[Alert]:
    """The weekly digest of `seven_day` says where its week went (docs/design.md §8), from the
    last breakdown seen in the window that closed."""
    weekly = closed.get(_BREAKDOWN_BUCKET)
    summary = breakdown_summary(families.breakdown)
    if weekly is None or not summary or families.breakdown_window != weekly.window:
        return alerts
    line = fm.breakdown_line(summary)
    out: list[Alert] = []
    for alert in alerts:
        if alert.kind == "digest" and alert.bucket == _BREAKDOWN_BUCKET:
            details = {**alert.details, "breakdown": dict(families.breakdown)}
            plain, html = f"{alert.plain}\n{line}", f"{alert.html}<br>{escape(line)}"
            out.append(replace(alert, plain=plain, html=html, details=details))
        else:
            out.append(alert)
    return out
