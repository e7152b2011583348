"""Rendering alerts for a person reading a phone: plain text and Matrix HTML.

Every message leads with what happened and to which bucket, then the numbers.
Times are in the reader's `TIMEZONE` with its abbreviation (docs/design.md §9), rounded
to the minute (the API's `…:59:59.6` means "on the hour"), with a relative hint
("in 2d 4h") so nobody has to do date arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from html import escape

from .. import localtime
from ..model import ExtraUsage
from .family_table import family_of
from .forecast import Projection


def bucket_label(name: str) -> str:
    """`seven_day_cowork` -> "Weekly Cowork": new buckets get a readable name unaided."""
    family = family_of(name)
    if name in family.labels:
        return family.labels[name]
    if name in family.match:
        return family.label
    if family.prefix is not None:
        rest = name[len(family.prefix) :].strip("_").replace("_", " ")
        return f"{family.label} {rest.title()}" if rest else family.label
    return name.replace("_", " ").capitalize()


def round_minute(moment: datetime) -> datetime:
    # In UTC: alert ids must not depend on the offset an instant carries.
    return localtime.to_minute(moment)


def fmt_time(moment: datetime, zone: tzinfo) -> str:
    """`Thu 8 Jan 08:00 CET`: on the reader's clock (docs/design.md §9)."""
    m = localtime.local(moment, zone)
    return f"{m:%a} {m.day} {m:%b} {m:%H:%M} {localtime.abbreviation(m)}"


def fmt_duration(delta: timedelta) -> str:
    """Two most significant units: 2d 4h, 3h 12m, 45m, <1m."""
    total = int(abs(delta.total_seconds()) + 30) // 60  # whole minutes, rounded
    days, rem = divmod(total, 1440)
    hours, minutes = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m" if minutes else "<1m"


def fmt_relative(moment: datetime, now: datetime) -> str:
    delta = moment - now
    if abs(delta.total_seconds()) < 30:
        return "now"
    return f"in {fmt_duration(delta)}" if delta.total_seconds() > 0 else f"{fmt_duration(delta)} ago"


def fmt_when(moment: datetime | None, now: datetime, zone: tzinfo) -> str:
    if moment is None:
        return "no reset time reported"
    return f"{fmt_time(moment, zone)} ({fmt_relative(moment, now)})"


def fmt_resets(moment: datetime | None, now: datetime, zone: tzinfo) -> str:
    """`resets <when>`, or the plain fact when the answer gave no reset time (no "resets no …")."""
    return "no reset time reported" if moment is None else f"resets {fmt_when(moment, now, zone)}"


def fmt_pct(value: float) -> str:
    return f"{value:.0f}%" if abs(value - round(value)) < 0.05 else f"{value:.1f}%"


# Symbols people read at a glance; every other currency is written as its code.
_CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "KRW": "₩"}


def fmt_money(minor: int, currency: str, exponent: int) -> str:
    """9221 USD with exponent 2 -> `$92.21`; 1234500 EUR -> `€12,345.00`; other codes
    trail: `92.21 CHF`. Decimal, so no float ever rounds a cent away."""
    amount = Decimal(minor).scaleb(-exponent)
    text = f"{amount:,.{exponent}f}"
    symbol = _CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{text}" if symbol else f"{text} {currency}"


def fmt_spent(extra: ExtraUsage) -> str:
    """`$92.21 of $110.00 (84%)`, or `$3.05 (no monthly cap reported)`."""
    used = fmt_money(extra.used or 0, extra.currency, extra.exponent)
    if extra.limit is None:
        cap = "no monthly cap reported"
        return f"{used} ({cap})" if extra.percent is None else f"{used} ({cap}; {fmt_pct(extra.percent)} of it)"
    text = f"{used} of {fmt_money(extra.limit, extra.currency, extra.exponent)}"
    return text if extra.percent is None else f"{text} ({fmt_pct(extra.percent)})"


def fmt_reason(reason: str) -> str:
    """`out_of_credits` -> "out of credits"."""
    return reason.replace("_", " ")


def fmt_binding(binding: bool, severity: str | None) -> str:
    """The server's own judgement of a limit, in words (docs/design.md §2: show both)."""
    parts: list[str] = []
    if binding:
        parts.append("binding now")
    if severity and severity != "normal":
        parts.append("warning" if severity == "warn" else severity)
    return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Rendered:
    plain: str
    html: str


def _render(title: str, lines: Sequence[str], *, html_lines: Sequence[str] | None = None) -> Rendered:
    plain = "\n".join([title, *lines])
    body = [escape(line) for line in lines] if html_lines is None else list(html_lines)
    html = f"<b>{escape(title)}</b>" + "".join(f"<br>{line}" for line in body)
    return Rendered(plain, html)


@dataclass(frozen=True, slots=True)
class BaselineRow:
    bucket: str
    utilization: float | None  # None: the bucket came back null (unused)
    resets_at: datetime | None
    exceeded: tuple[int, ...] = ()
    is_active: bool | None = None
    severity: str | None = None


@dataclass(frozen=True, slots=True)
class ExtraBaseline:
    """Paid overage in the armed baseline: what it stands at, and thresholds already past."""

    reading: ExtraUsage
    exceeded: tuple[int, ...] = ()


def extra_status(extra: ExtraUsage) -> str:
    """`on, $92.21 of $110.00 (84%)`, `off (out of credits)`, ..."""
    if extra.enabled is False:
        state = "off"
    elif extra.enabled is True:
        state = "on"
    else:
        state = "reported"
    if extra.disabled_reason:
        state += f" ({fmt_reason(extra.disabled_reason)})"
    if extra.used is not None:
        return f"{state}, {fmt_spent(extra)} spent"
    if extra.limit is not None:
        return f"{state}, monthly cap {fmt_money(extra.limit, extra.currency, extra.exponent)}"
    return state


def render_armed(
    rows: Sequence[BaselineRow],
    thresholds: Sequence[int],
    now: datetime,
    note: str | None,
    *,
    extra: ExtraBaseline | None = None,
    extra_thresholds: Sequence[int] = (),
    zone: tzinfo,
    family_rows: Sequence[str] = (),
    session_thresholds: Sequence[int] = (),
    session_alerts: bool = False,
    forecast: bool = True,
) -> Rendered:
    title = "📊 Claude usage watch armed"
    if note:
        title = "📊 Claude usage watch re-armed"
    lines: list[str] = []
    html_lines: list[str] = []
    if note:
        lines.append(note)
        html_lines.append(f"<i>{escape(note)}</i>")
    lines.extend(_baseline_line(row, now, zone) for row in rows)
    html_lines.extend(escape(line) for line in lines[len(html_lines) :])
    if not rows:
        lines.append("• no usage buckets reported yet")
        html_lines.append(escape(lines[-1]))
    if extra is not None:
        text = f"• Extra usage: {extra_status(extra.reading)}"
        if extra.exceeded:
            text += f" — already past {', '.join(f'{t}%' for t in extra.exceeded)} of the cap"
        lines.append(text)
        html_lines.append(escape(text))
    lines.extend(family_rows)  # each credit and banked reset (docs/design.md §8)
    html_lines.extend(escape(text) for text in family_rows)
    limits = ", ".join(f"{t}%" for t in thresholds)
    footer = f"Alerts at {limits} of weekly limits, on reset shifts{' and burn-rate forecasts' if forecast else ''}."
    footer += _session_footer(session_thresholds, session_alerts)
    if extra is not None:
        caps = ", ".join(f"{t}%" for t in extra_thresholds)
        footer += " Extra usage: when it starts" + (f" and at {caps} of its cap." if caps else ".")
    lines.append(footer)
    html_lines.append(escape(footer))
    return _render(title, lines, html_lines=html_lines)


def _session_footer(thresholds: Sequence[int], alerts: bool) -> str:
    """` 5-hour session: at 80%, when its limit is reached and when it is back.` (or nothing)."""
    said = [f"at {', '.join(f'{t}%' for t in thresholds)}"] if thresholds else []
    if alerts:
        said.append("when its limit is reached and when it is back")
    return f" 5-hour session: {', '.join(said)}." if said else ""


def _baseline_line(row: BaselineRow, now: datetime, zone: tzinfo) -> str:
    label = bucket_label(row.bucket)
    if row.utilization is None:
        return f"• {label}: not in use"
    text = f"• {label}: {fmt_pct(row.utilization)}, {fmt_resets(row.resets_at, now, zone)}"
    if row.exceeded:
        text += f" — already past {', '.join(f'{t}%' for t in row.exceeded)}"
    judgement = fmt_binding(row.is_active is True, row.severity)
    return text + (f" ({judgement})" if judgement else "")


def _judged(text: str, binding: bool, severity: str | None) -> str:
    judgement = fmt_binding(binding, severity)
    return f"{text[:-1]} ({judgement})." if judgement else text


def render_threshold(
    bucket: str,
    threshold: int,
    utilization: float,
    resets_at: datetime | None,
    now: datetime,
    *,
    binding: bool = False,
    severity: str | None = None,
    zone: tzinfo,
) -> Rendered:
    icon = "🔴" if threshold >= 80 else "🟠"
    title = f"{icon} {bucket_label(bucket)} usage passed {threshold}%"
    resets = fmt_resets(resets_at, now, zone)
    lines = [_judged(f"Now at {fmt_pct(utilization)}.", binding, severity), f"{resets[:1].upper()}{resets[1:]}."]
    return _render(title, lines)


def render_shift(
    bucket: str, old: datetime, new: datetime, utilization: float | None, now: datetime, *, zone: tzinfo
) -> Rendered:
    moved = new - old
    direction = "later" if moved.total_seconds() > 0 else "earlier"
    title = f"⏱ {bucket_label(bucket)} reset moved {fmt_duration(moved)} {direction}"
    lines = [f"Was {fmt_time(old, zone)}, now {fmt_when(new, now, zone)}."]
    if utilization is not None:
        lines.append(f"Usage {fmt_pct(utilization)}.")
    return _render(title, lines)


def render_forecast(
    bucket: str,
    projection: Projection,
    current: float,
    resets_at: datetime,
    now: datetime,
    *,
    binding: bool = False,
    severity: str | None = None,
    zone: tzinfo,
) -> Rendered:
    ahead = resets_at - projection.exhausted_at
    title = f"🔥 {bucket_label(bucket)} on track to run out before it resets"
    lines = [
        f"At this pace it reaches 100% {fmt_when(projection.exhausted_at, now, zone)}, "
        f"{fmt_duration(ahead)} before the reset {fmt_when(resets_at, now, zone)}.",
        f"Now {fmt_pct(current)}, burning {projection.slope_per_hour:.1f}%/h "
        f"(fit over {projection.samples} samples in the last {fmt_duration(timedelta(seconds=projection.span_sec))}).",
    ]
    judgement = fmt_binding(binding, severity)
    if judgement:
        lines.append(f"Anthropic marks this limit: {judgement}.")
    return _render(title, lines)


def render_extra_started(extra: ExtraUsage, now: datetime) -> Rendered:
    """Money is being spent: the plan's limits are used up (docs/design.md §1, extra usage (a))."""
    title = "💸 Extra usage started: you are now paying for overage"
    lines = [
        "The plan's included usage is used up; requests are billed as extra usage.",
        f"Spent so far: {fmt_spent(extra)}.",
    ]
    if extra.disabled_reason:
        lines.append(f"Overage now stopped: {fmt_reason(extra.disabled_reason)}.")
    return _render(title, lines)


def render_extra_threshold(extra: ExtraUsage, threshold: int, now: datetime) -> Rendered:
    """The overage crossed a percent of its monthly cap (docs/design.md §1, extra usage (b))."""
    icon = "🔴" if threshold >= 80 else "🟠"
    title = f"{icon} Extra usage passed {threshold}% of its monthly cap"
    lines = [f"Spent: {fmt_spent(extra)}."]
    if extra.disabled_reason:
        lines.append(f"Overage stopped: {fmt_reason(extra.disabled_reason)}.")
    elif threshold >= 100:
        lines.append("At the cap, requests stop until the month resets or the cap is raised.")
    return _render(title, lines)


def render_degraded(
    error: str, failures: int, since: datetime | None, hint: str, now: datetime, *, zone: tzinfo
) -> Rendered:
    title = "🚨 Claude usage watch is failing"
    lines = [f"{failures} runs in a row failed" + (f" since {fmt_when(since, now, zone)}." if since else ".")]
    lines.append(f"Last error: {error}")
    if hint:
        lines.append(f"What to do: {hint}")
    lines.append("Usage alerts cannot fire until it works again; a message follows when it recovers.")
    return _render(title, lines)


def render_recovered(since: datetime | None, failures: int, now: datetime) -> Rendered:
    title = "✅ Claude usage watch recovered"
    outage = f" after {fmt_duration(now - since)}" if since else ""
    lines = [f"Working again{outage} ({failures} failed runs)."]
    return _render(title, lines)
