"""What each write of a cycle must survive, and what it costs on a directory (issue 12, item 7).

A quiet cycle pays for one fsync (the state file's data, so a crash can never leave
`state.json` pointing at unwritten bytes); the lease is never fsynced (it dies with its
holder); a state that carries something a crash must not undo (an alert owed, a
threshold said, a failure counted) is fsynced with its directory before any delivery.

The cycles are real: `compose.run` against the loopback fake of the usage API, the state
in a directory. `os.fsync` is watched (never replaced), and each call is named by the
file it flushed, so the tests count fsyncs, not time.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from claude_matrix_bot.compose import run
from claude_matrix_bot.model import Alert, ExtraUsage
from claude_matrix_bot.settings import load_settings
from claude_matrix_bot.sinks.base import DeliveryReport
from claude_matrix_bot.state import BucketState, ExtraUsageState, Health, State, lasting_change, parse_state
from devstack.fakes.anthropic import FakeAnthropic
from tests.helpers import bot_env, payload

FIVE_MIN = timedelta(minutes=5)


class Fsyncs:
    """Every `os.fsync` of the process, by what it flushed: the file's name, or `<dir>/` for a directory."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        original = os.fsync

        def watched(fd: int) -> None:
            target = Path(os.readlink(f"/proc/self/fd/{fd}"))
            self.calls.append(f"{target.name}/" if target.is_dir() else target.name)
            original(fd)

        monkeypatch.setattr(os, "fsync", watched)

    def take(self) -> list[str]:
        taken, self.calls = self.calls, []
        return taken


class RecordingSink:
    """A sink that notes which fsyncs had happened when it was handed the alerts."""

    def __init__(self, fsyncs: Fsyncs) -> None:
        self.fsyncs = fsyncs
        self.seen_at_delivery: list[list[str]] = []

    def deliver(self, alerts: Sequence[Alert]) -> DeliveryReport:
        self.seen_at_delivery.append(list(self.fsyncs.calls))
        return DeliveryReport(delivered=tuple(a.id for a in alerts))


@pytest.fixture
def start() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0)


def _usage(anthropic: FakeAnthropic, start: datetime, weekly: float) -> None:
    anthropic.set_usage(
        payload(
            five_hour=(20.0, start + timedelta(hours=4)), weekly={"seven_day": (weekly, start + timedelta(days=3))}
        ),
        jitter=True,
    )


def _state_temp(name: str, key: str = "state.json") -> bool:
    # atomic.write_temp names its temporary ".<target>.<random>.tmp"
    return name.startswith(f".{key}.") and name.endswith(".tmp")


def test_a_quiet_cycle_fsyncs_the_state_once_and_never_the_lease(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs = Fsyncs(monkeypatch)
    sink = RecordingSink(fsyncs)
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)

    def cycle(now: datetime) -> list[str]:
        settings = load_settings({**env, "NOW_OVERRIDE": now.isoformat()})
        assert run(settings, sink=sink).status == "ok"
        return fsyncs.take()

    _usage(anthropic, start, 30.0)
    armed = cycle(start)  # the armed message: owed, so durable before it is handed over
    assert len(sink.seen_at_delivery) == 1
    before_delivery = sink.seen_at_delivery[0]
    assert any(_state_temp(name) for name in before_delivery), before_delivery
    assert "state/" in before_delivery, f"the directory was not flushed before delivery: {before_delivery}"
    assert not any(name.startswith(".lease.json.") for name in armed), armed

    for step in range(1, 4):
        now = start + step * FIVE_MIN
        _usage(anthropic, start, 30.0 + step)
        quiet = cycle(now)
        assert len(quiet) == 1 and _state_temp(quiet[0]), f"quiet cycle {step}: {quiet}"
        # Written every cycle all the same: status reads the last check and the samples from it.
        state = parse_state((tmp_path / "state" / "state.json").read_bytes())
        assert state.health.last_attempt_at == now
        assert state.buckets["seven_day"].history[-1] == (int(now.timestamp()), 30.0 + step)
    assert len(sink.seen_at_delivery) == 1, "quiet cycles deliver nothing"

    # A threshold passed: the alert and its dedup flag are flushed with the directory first.
    _usage(anthropic, start, 55.0)
    alert = cycle(start + 4 * FIVE_MIN)
    assert len(sink.seen_at_delivery) == 2
    assert "state/" in sink.seen_at_delivery[1] and any(_state_temp(n) for n in sink.seen_at_delivery[1])
    assert not any(name.startswith(".lease.json.") for name in alert), alert


def test_a_failed_usage_check_is_counted_durably(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs = Fsyncs(monkeypatch)
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    _usage(anthropic, start, 30.0)
    assert run(load_settings({**env, "NOW_OVERRIDE": start.isoformat()})).status == "ok"
    fsyncs.take()
    anthropic.fail_next("usage", 500)
    failed = run(load_settings({**env, "NOW_OVERRIDE": (start + FIVE_MIN).isoformat()}))
    assert failed.status == "failed" and failed.failure == "upstream"
    # The health counter drives the degraded alert: a crash must not forget it.
    assert "state/" in fsyncs.take()
    state = parse_state((tmp_path / "state" / "state.json").read_bytes())
    assert state.health.consecutive_failures == 1


def test_each_account_of_a_quiet_cycle_fsyncs_its_state_once(
    tmp_path: Path, anthropic: FakeAnthropic, start: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("work", "priv"):
        anthropic.write_tokens_dir(tmp_path / "tokens" / name, account=name)
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, ACCOUNTS="work,priv")
    fsyncs = Fsyncs(monkeypatch)
    _usage(anthropic, start, 30.0)
    assert run(load_settings({**env, "NOW_OVERRIDE": start.isoformat()})).status == "ok"
    fsyncs.take()
    _usage(anthropic, start, 31.0)
    assert run(load_settings({**env, "NOW_OVERRIDE": (start + FIVE_MIN).isoformat()})).status == "ok"
    quiet = fsyncs.take()
    assert len(quiet) == 2 and all(_state_temp(name) for name in quiet), quiet


# --- which changes are lasting (pure) --------------------------------------------------------

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SPEND = ExtraUsage(enabled=True, used=500, limit=2000, currency="USD", exponent=2, percent=25.0)
BASE = State(
    buckets={
        "seven_day": BucketState(
            utilization=30.0,
            resets_at=T0 + timedelta(days=3),
            window=T0 + timedelta(days=3),
            alerted_thresholds=(),
            history=((int(T0.timestamp()), 30.0),),
            last_reset=T0 + timedelta(days=3),
        )
    },
    health=Health(last_success_at=T0, last_attempt_at=T0),
    armed_at=T0 - timedelta(days=1),
    extra_usage=ExtraUsageState(period_start=T0 - timedelta(days=2), last=SPEND, last_used=500),
)
ALERT = Alert(id="cmb-threshold-x", kind="threshold", plain="p", html="h", bucket="seven_day", created_at=T0)


def _bucket(change: Callable[[BucketState], BucketState]) -> Callable[[State], State]:
    return lambda s: dataclasses.replace(s, buckets={**s.buckets, "seven_day": change(s.buckets["seven_day"])})


LATER = T0 + FIVE_MIN
SOFT: dict[str, Callable[[State], State]] = {
    "a new sample and utilization": _bucket(
        lambda b: dataclasses.replace(b, utilization=31.0, history=(*b.history, (int(LATER.timestamp()), 31.0)))
    ),
    "a jittered resets_at": _bucket(lambda b: dataclasses.replace(b, resets_at=T0 + timedelta(days=3, seconds=1))),
    "server flags": _bucket(lambda b: dataclasses.replace(b, is_active=True, severity="warning")),
    "the last attempt and success": lambda s: dataclasses.replace(
        s, health=dataclasses.replace(s.health, last_success_at=LATER, last_attempt_at=LATER)
    ),
    "the last spend reading": lambda s: dataclasses.replace(
        s,
        extra_usage=dataclasses.replace(
            s.extra_usage, last=dataclasses.replace(SPEND, used=600, percent=30.0), last_used=600
        )
        if s.extra_usage
        else None,
    ),
    "unknown numbers": lambda s: dataclasses.replace(s, unknown_numbers=("limits[3].utilization",)),
    "an hourly chart sample": _bucket(lambda b: dataclasses.replace(b, hourly=((int(T0.timestamp()), 30.0),))),
    "the reset as reported, jittered": _bucket(
        lambda b: dataclasses.replace(b, last_reset=T0 + timedelta(days=3, seconds=0.6))
    ),
}
LASTING: dict[str, Callable[[State], State]] = {
    "an alert owed": lambda s: s.with_outbox((ALERT,)),
    "an alert marked attempted": lambda s: s.with_outbox((ALERT,)).mark_attempted(int(LATER.timestamp() * 1000)),
    "when a threshold fell": _bucket(lambda b: dataclasses.replace(b, passed=((50, int(LATER.timestamp())),))),
    "a moved reset kept": _bucket(lambda b: dataclasses.replace(b, last_reset=T0 + timedelta(days=3, hours=2))),
    "a threshold said": _bucket(lambda b: dataclasses.replace(b, alerted_thresholds=(50,))),
    "a forecast said": _bucket(lambda b: dataclasses.replace(b, forecast_fired=True)),
    "a new window": _bucket(lambda b: dataclasses.replace(b, window=T0 + timedelta(days=10))),
    "a shift announced": _bucket(lambda b: dataclasses.replace(b, shifted_to=(T0 + timedelta(days=4),))),
    "a new bucket": lambda s: dataclasses.replace(s, buckets={**s.buckets, "seven_day_opus": BucketState()}),
    "a failure counted": lambda s: dataclasses.replace(
        s, health=dataclasses.replace(s.health, consecutive_failures=1, failing_since=LATER, last_error="500")
    ),
    "degraded": lambda s: dataclasses.replace(s, health=dataclasses.replace(s.health, degraded=True)),
    "a note to show": lambda s: dataclasses.replace(s, note="moved aside"),
    "the arming": lambda s: dataclasses.replace(s, armed_at=LATER),
    "a new spend period": lambda s: dataclasses.replace(
        s, extra_usage=dataclasses.replace(s.extra_usage, period_start=LATER) if s.extra_usage else None
    ),
    "spend alerted": lambda s: dataclasses.replace(
        s,
        extra_usage=dataclasses.replace(s.extra_usage, started_alerted=True, alerted_thresholds=(50,))
        if s.extra_usage
        else None,
    ),
}


@pytest.mark.parametrize("change", SOFT, ids=list(SOFT))
def test_what_the_next_reading_rewrites_is_not_lasting(change: str) -> None:
    changed = SOFT[change](BASE)
    assert changed != BASE
    assert not lasting_change(BASE, changed)


def test_all_soft_changes_together_are_not_lasting() -> None:
    changed = BASE
    for change in SOFT.values():
        changed = change(changed)
    assert not lasting_change(BASE, changed)


@pytest.mark.parametrize("change", LASTING, ids=list(LASTING))
def test_what_a_crash_must_not_undo_is_lasting(change: str) -> None:
    assert lasting_change(BASE, LASTING[change](BASE))
    owed = BASE.with_outbox((ALERT,))
    if LASTING[change](owed) != owed:  # also on top of an alert already owed
        assert lasting_change(owed, LASTING[change](owed))
    # Also when it comes with soft changes in the same cycle.
    assert lasting_change(BASE, SOFT["a new sample and utilization"](LASTING[change](BASE)))


def test_a_first_state_is_lasting() -> None:
    assert lasting_change(None, BASE)
    assert lasting_change(None, State())
