"""The credit, banked-reset and account families in one step (docs/design.md §8), for the
decision: their alerts, their memory and their armed-baseline rows. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from ..model import Alert, Reading
from ..state import BucketState, FamilyState
from . import account, banked, credit
from . import family_messages as fm
from .config import DecideConfig


@dataclass(frozen=True, slots=True)
class FamilyStep:
    state: FamilyState
    alerts: tuple[Alert, ...]  # on arming: only what must ring anyway (locked)
    baseline: tuple[str, ...]  # the armed baseline's rows: each credit and grant


def step(
    old: FamilyState,
    reading: Reading,
    buckets: dict[str, BucketState],
    now: datetime,
    config: DecideConfig,
    *,
    arming: bool,
) -> FamilyStep:
    """`buckets` are the next state's (the weekly window the breakdown belongs to)."""
    zone = config.timezone
    credits, credit_alerts = credit.step(
        old.credits, reading.credits, now, config.credit_thresholds, zone, arming=arming
    )
    state = replace(old, credits=credits)
    reset_alerts: list[Alert] = []
    if config.banked_resets_enabled:
        state, reset_alerts = banked.step(state, reading.banked, reading, now, zone, arming=arming)
    state, locked = account.locked_step(state, reading, now)
    state = account.breakdown_step(state, reading, buckets)
    rows = [fm.credit_row(c, now, zone) for c in reading.credits]
    if config.banked_resets_enabled and reading.banked is not None:
        rows.extend(fm.grant_row(g, now, zone) for g in reading.banked.grants if g.available(now))
    return FamilyStep(state, (*credit_alerts, *reset_alerts, *locked), tuple(rows))
