"""Decision-core journeys shared by the core's tests: the instants and resets of a real-looking
week, `reading` (a usage answer), `Watch` (successive cycles of one bot), `armed_watch`, and the
busy week that ends in a natural weekly rollover (`busy_week`, `roll_over`). Driven directly:
readings in, alerts and state out, `now` passed explicitly; no mocks, no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from claude_matrix_bot.core.decide import DecideConfig, decide, record_failure
from claude_matrix_bot.model import Alert, BucketReading, Reading
from claude_matrix_bot.state import BucketState, State

# A real-looking instant and the API's `…:59:59.6` resets (docs/design.md §2 sample).
T0 = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
FIVE_RESET = datetime(2026, 1, 2, 14, 59, 59, 600956, tzinfo=UTC)
WEEK_RESET = datetime(2026, 1, 8, 6, 59, 59, 600974, tzinfo=UTC)
NEXT_WEEK_RESET = WEEK_RESET + timedelta(days=7)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
CFG = DecideConfig()

Bucket = tuple[float, datetime | None]


def reading(now: datetime, buckets: Mapping[str, Bucket | None]) -> Reading:
    """A usage answer: `None` values are buckets the API returned as `null`."""
    return Reading(
        taken_at=now,
        buckets={name: BucketReading(*value) for name, value in buckets.items() if value is not None},
        null_buckets=tuple(name for name, value in buckets.items() if value is None),
    )


def jitter(moment: datetime, microseconds: int) -> datetime:
    """The same instant as the API reports it on another call: sub-second noise."""
    return moment + timedelta(microseconds=microseconds)


@dataclass
class Watch:
    """Successive cycles of one bot: each `see` is one successful run, each `fail` one failed run."""

    config: DecideConfig = CFG
    state: State | None = None
    now: datetime = T0
    log: list[Alert] = field(default_factory=list)

    def see(self, buckets: Mapping[str, Bucket | None], at: datetime | None = None) -> list[Alert]:
        if at is not None:
            self.now = at
        decision = decide(self.state, reading(self.now, buckets), self.now, self.config)
        self.state = decision.state
        self.log.extend(decision.alerts)
        return list(decision.alerts)

    def fail(
        self, error: str = "usage API answered 401", hint: str = "re-bootstrap the tokens", at: datetime | None = None
    ) -> list[Alert]:
        if at is not None:
            self.now = at
        decision = record_failure(self.state, error, hint, self.now, self.config)
        self.state = decision.state
        self.log.extend(decision.alerts)
        return list(decision.alerts)

    def bucket(self, name: str) -> BucketState:
        assert self.state is not None
        return self.state.buckets[name]


def kinds(alerts: Sequence[Alert]) -> list[str]:
    return [a.kind for a in alerts]


def armed_watch(weekly: float = 10.0, config: DecideConfig = CFG, at: datetime = T0) -> Watch:
    """A bot that has armed with `seven_day` at `weekly` percent."""
    watch = Watch(config=config, now=at)
    assert kinds(watch.see({"five_hour": (5.0, FIVE_RESET), "seven_day": (weekly, WEEK_RESET)})) == ["armed"]
    return watch


def busy_week(config: DecideConfig = CFG, *, until: datetime = WEEK_RESET) -> Watch:
    """Armed at 12:00 on Fri 2 Jan at 2 %, then a reading every hour to the reset: 1 point an
    hour on weekdays' working hours (08-18 UTC), 8 an hour on Tue 6 Jan, capped at 100:
    7 % on Friday, 17 % on Monday, 50 % and 80 % on Tuesday, the limit on Wednesday 10:00."""
    watch = armed_watch(weekly=2.0, config=config)
    value = 2.0
    moment = T0 + HOUR
    while moment < until:
        if moment.weekday() < 5 and 8 <= moment.hour < 18:
            value = min(100.0, value + (8.0 if moment.day == 6 else 1.0))
        watch.see({"seven_day": (value, WEEK_RESET)}, at=moment)
        moment += HOUR
    return watch


def roll_over(watch: Watch, *buckets: str, at: datetime = WEEK_RESET + 5 * MIN) -> list[Alert]:
    return watch.see(dict.fromkeys(buckets or ("seven_day",), (0.5, NEXT_WEEK_RESET)), at=at)
