"""A bucket's window lifecycle as one event (docs/design.md §8), decided here only.

At each cycle a bucket's window is in one of these states, from the previous state and
the reading (None when the bucket came back null or was absent):
- `new`: the first reading of the bucket;
- `same`: the window goes on;
- `shift`: the reset of a window still open moved (a reset shift, once per new value);
- `rollover`: the previous window's reset passed and a later window is seen;
- `end`: the bucket is null or absent and the window's reset has passed. Reported at every
  such cycle: a rule that acts on it once keeps its own mark (the session's `back`).
- `none`: nothing to say (null or absent before its reset, or never seen).
Per-window dedup starts again at a rollover; the digest follows a rollover; the session's
"back" follows a rollover or an end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from ..model import BucketReading
from ..state import BucketState

WindowEventKind = Literal["new", "same", "shift", "rollover", "end", "none"]


@dataclass(frozen=True, slots=True)
class WindowEvent:
    kind: WindowEventKind
    # The window that closed (rollover, end) or whose reset moved (shift): the state as
    # it was before this reading.
    previous: BucketState | None = None
    # A shift: the reset it had and the one it moved to.
    old_resets_at: datetime | None = None
    new_resets_at: datetime | None = None

    @property
    def ended(self) -> bool:
        return self.kind in ("rollover", "end")


def _differs(a: datetime, b: datetime, tolerance_sec: int) -> bool:
    return abs((a - b).total_seconds()) > tolerance_sec


def last_reset(state: BucketState) -> datetime | None:
    """After a reading without a reset (null), the last one reported: a moved window
    ends at its moved reset, not at the one it began with."""
    return state.resets_at or state.last_reset or state.window


def window_event(
    old: BucketState | None, current: BucketReading | None, now: datetime, tolerance_sec: int
) -> WindowEvent:
    if old is None:
        return WindowEvent("new" if current is not None else "none")
    reference = last_reset(old)
    if current is None:
        ended = reference is not None and reference <= now
        return WindowEvent("end", old) if ended else WindowEvent("none")
    new_resets = current.resets_at
    if new_resets is None or reference is None or not _differs(new_resets, reference, tolerance_sec):
        return WindowEvent("same")
    if reference <= now + timedelta(seconds=tolerance_sec):
        # Natural rollover: the previous window had expired. Within the tolerance: the old
        # value is jittered and our clock may trail the API's, which rolls over at
        # …:59:59.6, just before a cron tick.
        return WindowEvent("rollover", old)
    said = any(not _differs(new_resets, s, tolerance_sec) for s in old.shifted_to)
    if old.resets_at is not None and not said:
        return WindowEvent("shift", old, old.resets_at, new_resets)
    # Going to or from null is not a shift; a value already said is not said again.
    return WindowEvent("same")
