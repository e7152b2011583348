"""The weekly digest's message (docs/design.md §7): what a closed window came to, in words."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, tzinfo

from .. import localtime
from .messages import Rendered, _render, bucket_label, fmt_duration, fmt_pct, fmt_time
from .window_summary import WindowSummary


def fmt_day(day: date) -> str:
    return f"{day:%a} {day.day} {day:%b}"


def render_digest(summary: WindowSummary, thresholds: Sequence[int], *, zone: tzinfo) -> Rendered:
    """The weekly digest (docs/design.md §7): peak, each threshold's time, the limit, the busiest day;
    days are the reader's (`summary` counts them in `zone`)."""
    label = bucket_label(summary.bucket)
    title = f"📅 {label}: the week to {fmt_day(localtime.local(summary.ended_at, zone).date())} in review"
    lines = [
        f"Window {fmt_time(summary.started_at, zone)} to {fmt_time(summary.ended_at, zone)}.",
        f"Peak {fmt_pct(summary.peak)}, on {fmt_day(summary.peak_on)}.",
    ]
    reached = {p.percent: p for p in summary.passed}
    for threshold in sorted({t for t in thresholds if t < 100}):
        passed = reached.get(threshold)
        if passed is None:
            lines.append(f"{threshold}%: not reached.")
        elif passed.at is None:
            lines.append(f"{threshold}%: already past when the watch first saw this window.")
        else:
            lines.append(f"{threshold}%: passed {fmt_time(passed.at, zone)}.")
    limit = summary.limit
    if limit is None:
        lines.append("Limit: not hit.")
    elif limit.at is None:
        lines.append("Limit: hit, before the watch first saw this window.")
    else:
        lines.append(
            f"Limit: hit {fmt_time(limit.at, zone)}, {fmt_duration(summary.ended_at - limit.at)} before the reset."
        )
    if summary.busiest_day is not None:
        lines.append(f"Busiest day: {fmt_day(summary.busiest_day)} (+{fmt_pct(summary.busiest_gain)} of the limit).")
    return _render(title, lines)
