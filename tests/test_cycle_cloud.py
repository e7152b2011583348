"""The full cycle, in this process, with its state on every backend that enforces
compare-and-swap: memory, a directory, S3 (moto's server over HTTP) and GCS (a loopback
server that enforces generation preconditions); and two cycles started at the same instant
on each backend: every alert is emitted exactly once (issue 4)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from claude_matrix_bot.compose import run
from claude_matrix_bot.model import Alert
from claude_matrix_bot.result import CycleResult
from claude_matrix_bot.settings import load_settings
from claude_matrix_bot.sinks.base import DeliveryReport
from claude_matrix_bot.state import parse_state
from claude_matrix_bot.store import open_store
from devstack.fakes.anthropic import FakeAnthropic
from tests.fakes.storage_servers import Backend
from tests.helpers import bot_env, payload

NOW = datetime(2031, 5, 5, 9, 0, tzinfo=UTC)


class RecordingSink:
    """Collects what it is asked to deliver; thread-safe, like a room would be."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.alerts: list[Alert] = []

    def deliver(self, alerts: Sequence[Alert]) -> DeliveryReport:
        with self.lock:
            self.alerts.extend(alerts)
        return DeliveryReport(tuple(a.id for a in alerts))


@pytest.fixture
def state_url(cas_backend: Backend) -> str:
    """Every backend that enforces compare-and-swap, memory:// included: these cycles run in
    this process (compose.run), so a store only this process reaches will do."""
    return cas_backend.url


def test_cycle_keeps_state_in_the_bucket(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, state_url: str
) -> None:
    reset = NOW + timedelta(days=2)
    sink = RecordingSink()
    anthropic.set_usage(payload(five_hour=(5.0, NOW + timedelta(hours=2)), weekly={"seven_day": (20.0, reset)}))
    first = run(
        load_settings(
            bot_env(
                tmp_path, anthropic.base_url, anthropic.token_url, STATE_URL=state_url, NOW_OVERRIDE=NOW.isoformat()
            )
        ),
        sink=sink,
    )
    assert first.status == "ok" and [a.kind for a in sink.alerts] == ["armed"]

    anthropic.set_usage(payload(five_hour=(5.0, NOW + timedelta(hours=2)), weekly={"seven_day": (51.0, reset)}))
    later = NOW + timedelta(minutes=5)
    second = run(
        load_settings(
            bot_env(
                tmp_path, anthropic.base_url, anthropic.token_url, STATE_URL=state_url, NOW_OVERRIDE=later.isoformat()
            )
        ),
        sink=sink,
    )
    assert second.status == "ok"
    assert [a.kind for a in sink.alerts] == ["armed", "threshold"]

    store = open_store(state_url)
    state = parse_state(store.read("state.json")[0])
    assert state.outbox == ()
    assert state.buckets["seven_day"].alerted_thresholds == (50,)
    assert "lease.json" not in store.list(), "the lease is released after the cycle"


def test_two_cycles_at_the_same_instant_emit_each_alert_once(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, state_url: str
) -> None:
    reset = NOW + timedelta(days=2)
    anthropic.set_usage(payload(five_hour=(5.0, NOW + timedelta(hours=2)), weekly={"seven_day": (20.0, reset)}))
    sink = RecordingSink()
    results: list[CycleResult] = []
    barrier = threading.Barrier(2)

    def trigger(now: datetime) -> None:
        settings = load_settings(
            bot_env(
                tmp_path, anthropic.base_url, anthropic.token_url, STATE_URL=state_url, NOW_OVERRIDE=now.isoformat()
            )
        )
        barrier.wait()
        results.append(run(settings, sink=sink))  # type: ignore[arg-type]

    for step, usage in enumerate((20.0, 55.0, 85.0)):
        anthropic.set_usage(payload(five_hour=(5.0, NOW + timedelta(hours=2)), weekly={"seven_day": (usage, reset)}))
        now = NOW + timedelta(minutes=5 * step)
        threads = [threading.Thread(target=trigger, args=(now,)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)

    ids = [a.id for a in sink.alerts]
    assert len(ids) == len(set(ids)), "no alert was emitted twice"
    assert [a.kind for a in sink.alerts] == ["armed", "threshold", "threshold"]
    assert {r.status for r in results} <= {"ok", "busy"}
    assert sum(r.status == "ok" for r in results) >= 3
