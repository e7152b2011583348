"""The state's values (docs/design.md §4) and the bounds that keep state.json small."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from ..model import Alert, ExtraUsage
from .family_records import FamilyState

# A trigger storm is refused after MIN_INTERVAL_SEC, but the cap keeps the file
# small even if that is set to 0: 6 h at one sample a minute.
MAX_HISTORY_SAMPLES = 360
# A week and a day: a window whose reset moved later lasts longer than seven days.
MAX_HOURLY_SAMPLES = 8 * 24
HOUR_SEC = 3600
MAX_SHIFT_MEMORY = 4
MAX_OUTBOX = 200
MAX_UNKNOWN_NUMBERS = 20
# A text kept from a reading (a severity, a reason, an unknown number's name).
_MAX_TEXT = 80
# A note or an error message the bot wrote itself (a few hundred characters at most).
MAX_LONG_TEXT = 2000


Sample = tuple[int, float]  # (Unix seconds, utilization percent)


@dataclass(frozen=True, slots=True)
class BucketState:
    utilization: float | None = None
    resets_at: datetime | None = None
    # The `resets_at` that identified the current window when it began; it keys
    # per-window dedup (threshold and forecast alert ids) and survives shifts.
    window: datetime | None = None
    alerted_thresholds: tuple[int, ...] = ()
    history: tuple[Sample, ...] = ()
    forecast_fired: bool = False
    # The last `resets_at` reported, kept while readings carry none (the bucket null, or
    # its reset null): a window whose reset moved ends at the moved reset.
    last_reset: datetime | None = None
    # New `resets_at` values already announced as shifts (dedup "once per value").
    shifted_to: tuple[datetime, ...] = ()
    # The server's judgement at the last reading (limits[] `is_active`, `severity`).
    is_active: bool | None = None
    severity: str | None = None
    # The current window at one sample per hour (docs/design.md §7): the chart and the digest
    # draw the whole window from these. Times are whole hours; values one decimal.
    hourly: tuple[Sample, ...] = ()
    # When this window passed each threshold and the limit (100): (percent, Unix
    # seconds), for the weekly digest. A threshold already past at arming has no time.
    passed: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class ExtraUsageState:
    """Paid overage across cycles (docs/design.md §1 extra usage): the current spend period
    and what was already said in it. A period begins at the first reading and
    whenever the used amount falls below the previous reading (a new month)."""

    period_start: datetime
    last: ExtraUsage
    # The last used amount seen (kept when a reading omits it, so a drop is still seen).
    last_used: int | None = None
    started_alerted: bool = False
    alerted_thresholds: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Health:
    consecutive_failures: int = 0
    degraded: bool = False
    failing_since: datetime | None = None
    last_error: str | None = None
    last_success_at: datetime | None = None
    last_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class State:
    buckets: dict[str, BucketState] = field(default_factory=dict)
    outbox: tuple[Alert, ...] = ()
    health: Health = field(default_factory=Health)
    armed_at: datetime | None = None
    # Where an upgrade or a repair came from, shown once in the next armed message.
    note: str | None = None
    extra_usage: ExtraUsageState | None = None
    # Where the last answer carried numbers this release does not read (shown by status).
    unknown_numbers: tuple[str, ...] = ()
    # Credits, banked-reset grants, locks and the last breakdown (docs/design.md §8).
    families: FamilyState = field(default_factory=FamilyState)

    def with_outbox(self, outbox: tuple[Alert, ...]) -> State:
        # An alert decided twice (same stable id) is queued once.
        first: dict[str, Alert] = {}
        for alert in outbox:
            first.setdefault(alert.id, alert)
        return replace(self, outbox=tuple(first.values())[-MAX_OUTBOX:])

    def mark_attempted(self, at_ms: int, only: frozenset[str] | None = None) -> State:
        """Every outbox alert not yet attempted marked as attempted at `at_ms` (docs/design.md §5).

        Written before the sink sees the alerts: a crash or a lost answer after a send
        leaves the mark, and the next delivery looks for the alert in the room before
        sending it again. `only`: the ids about to be sent (the others wait for quiet hours
        to end, and are not in the room). `self` itself when nothing changes."""

        def unmarked(alert: Alert) -> bool:
            return alert.attempted_at is None and (only is None or alert.id in only)

        if not any(unmarked(alert) for alert in self.outbox):
            return self
        marked = tuple(replace(alert, attempted_at=at_ms) if unmarked(alert) else alert for alert in self.outbox)
        return replace(self, outbox=marked)
