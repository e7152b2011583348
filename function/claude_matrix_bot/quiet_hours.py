"""`QUIET_HOURS` (docs/design.md §9): a daily span of the reader's local time, `HH:MM-HH:MM`,
that may wrap midnight (`22:00-07:00`). A plain value: the settings parse it, the rules that
hold alerts back ask it whether a local time of day falls inside."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time

_SPAN = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True, slots=True)
class QuietHours:
    """From `start` (inclusive) to `end` (exclusive), local wall-clock times in `TIMEZONE`."""

    start: time
    end: time

    @property
    def wraps_midnight(self) -> bool:
        return self.end < self.start

    def contains(self, moment: time) -> bool:
        """Whether a local time of day (its tzinfo ignored) is inside the quiet span."""
        local = moment.replace(tzinfo=None)
        if self.wraps_midnight:
            return local >= self.start or local < self.end
        return self.start <= local < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_quiet_hours(text: str) -> QuietHours:
    match = _SPAN.match(text.strip())
    if match is None:
        raise ValueError(f"expected HH:MM-HH:MM in 24-hour time (e.g. 22:00-07:00), got {text!r}")
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    span = QuietHours(time(start_h, start_m), time(end_h, end_m))
    if span.start == span.end:
        raise ValueError(f"start and end are the same ({text!r}): quiet all day or never is not a span")
    return span
