"""Reminders before something ends unused (docs/design.md §8, §9): a credit before it expires
with money left, a banked-reset grant before it ends with resets left. 72 h and 24 h before,
the last one urgent; one reminder a cycle, the nearest one due (a 24 h one also covers a
missed 72 h). Each kept thing's `said` holds the events said of it (`72h`, `24h`)."""

from __future__ import annotations

from datetime import datetime, timedelta

REMINDER_HOURS = (72, 24)  # the last one is urgent (core/family_table.py's URGENCY: "24h")


def due(ends_at: datetime | None, now: datetime) -> list[int]:
    """The reminders whose time has come, largest first (the caller says whether it is still live)."""
    if ends_at is None:
        return []
    return [h for h in REMINDER_HOURS if now >= ends_at - timedelta(hours=h)]


def covered_by_first(hours: list[int]) -> set[str]:
    """What a "first seen" message says already: its end, so every reminder due but the urgent last."""
    return {f"{h}h" for h in hours if h != REMINDER_HOURS[-1]}


def next_event(hours: list[int], said: set[str]) -> str | None:
    """The nearest reminder due and not said yet (`24h`), marked said with the ones before it."""
    if not hours or f"{hours[-1]}h" in said:
        return None
    said.update(f"{h}h" for h in hours)
    return f"{hours[-1]}h"
