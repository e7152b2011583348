"""The lease on every backend.

Sequential behaviour runs everywhere, gcp-storage-emulator included; races
and the release of a lease somebody took over need a server that enforces
preconditions, so they run on the CAS backends (see test_store_contract).
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from claude_matrix_bot.errors import LeaseHeld
from claude_matrix_bot.store.base import ABSENT, ANY, BlobStore
from claude_matrix_bot.store.lease import LEASE_KEY, Lease, acquire_lease, release_lease

if TYPE_CHECKING:
    from tests.fakes.storage_servers import Backend


NOW = datetime(2026, 1, 2, 19, 0, tzinfo=UTC)
TTL = 240
RACERS = 8


def read_lease(store: BlobStore) -> Lease | None:
    """The lease on record, as the file says it (None: no lease). The tests' own reader:
    the bot never reads a lease except to take it (acquire_lease)."""
    try:
        data, version = store.read(LEASE_KEY)
    except FileNotFoundError:
        return None
    record = json.loads(data)
    return Lease(
        record["holder"],
        datetime.fromisoformat(record["acquired_at"]),
        datetime.fromisoformat(record["expires_at"]),
        version,
    )


def test_free_store_is_acquired_and_recorded(backend: Backend) -> None:
    store = backend.open()
    lease = acquire_lease(store, holder="run-a", now=NOW, ttl_sec=TTL)
    assert lease.holder == "run-a"
    assert lease.acquired_at == NOW
    assert lease.expires_at == NOW + timedelta(seconds=TTL)
    record = json.loads(store.read(LEASE_KEY)[0])
    assert record == {"holder": "run-a", "acquired_at": NOW.isoformat(), "expires_at": lease.expires_at.isoformat()}
    assert read_lease(store) == lease


def test_live_lease_of_another_holder_refuses(backend: Backend) -> None:
    store = backend.open()
    held = acquire_lease(store, holder="run-a", now=NOW, ttl_sec=TTL)
    with pytest.raises(LeaseHeld, match="run-a"):
        acquire_lease(store, holder="run-b", now=NOW + timedelta(seconds=TTL - 1), ttl_sec=TTL)
    assert read_lease(store) == held


def test_expired_lease_is_taken_over(backend: Backend) -> None:
    store = backend.open()
    acquire_lease(store, holder="run-a", now=NOW, ttl_sec=TTL)
    later = NOW + timedelta(seconds=TTL)  # expires_at itself is already expired
    taken = acquire_lease(store, holder="run-b", now=later, ttl_sec=TTL)
    assert taken.holder == "run-b"
    assert read_lease(store) == taken


def test_simulated_time_decides_expiry(backend: Backend) -> None:
    """NOW_OVERRIDE may jump days between runs: only the `now` passed in counts."""
    store = backend.open()
    acquire_lease(store, holder="sim-1", now=NOW, ttl_sec=TTL)
    taken = acquire_lease(store, holder="sim-2", now=NOW + timedelta(days=3), ttl_sec=TTL)
    assert taken.expires_at == NOW + timedelta(days=3, seconds=TTL)


def test_a_lease_expiring_further_ahead_than_its_ttl_is_stale(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """A run under a far-future NOW_OVERRIDE must not block real runs until that future comes."""
    store = backend.open()
    acquire_lease(store, holder="sim-future", now=NOW + timedelta(days=30), ttl_sec=TTL)
    with caplog.at_level(logging.WARNING, logger="claude_matrix_bot.store.lease"):
        taken = acquire_lease(store, holder="real-run", now=NOW, ttl_sec=TTL)
    assert taken.holder == "real-run"
    assert read_lease(store) == taken
    assert "further ahead than a 240s lease can" in caplog.text
    # A lease within its TTL still refuses, to the second.
    with pytest.raises(LeaseHeld, match="real-run"):
        acquire_lease(store, holder="other", now=NOW + timedelta(seconds=TTL - 1), ttl_sec=TTL)


def test_same_holder_renews(backend: Backend) -> None:
    store = backend.open()
    first = acquire_lease(store, holder="run-a", now=NOW, ttl_sec=TTL)
    renewed = acquire_lease(store, holder="run-a", now=NOW + timedelta(seconds=60), ttl_sec=TTL)
    assert renewed.expires_at == first.expires_at + timedelta(seconds=60)
    assert renewed.version != first.version


def test_release_lets_another_acquire(backend: Backend) -> None:
    store = backend.open()
    lease = acquire_lease(store, holder="run-a", now=NOW, ttl_sec=TTL)
    release_lease(store, lease)
    assert read_lease(store) is None
    assert acquire_lease(store, holder="run-b", now=NOW, ttl_sec=TTL).holder == "run-b"


def test_release_after_takeover_keeps_the_successor(cas_backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    store = cas_backend.open()
    stale = acquire_lease(store, holder="slow-run", now=NOW, ttl_sec=TTL)
    successor = acquire_lease(store, holder="next-run", now=NOW + timedelta(seconds=TTL + 1), ttl_sec=TTL)
    with caplog.at_level(logging.WARNING, logger="claude_matrix_bot.store.lease"):
        release_lease(store, stale)  # swallowed: the lease is no longer ours
    assert read_lease(store) == successor
    assert "taken over" in caplog.text


def test_release_of_a_vanished_lease_is_quiet(backend: Backend) -> None:
    store = backend.open()
    lease = acquire_lease(store, holder="run-a", now=NOW, ttl_sec=TTL)
    store.delete(LEASE_KEY, expect=ANY)  # an operator broke the lease by hand
    release_lease(store, lease)
    assert read_lease(store) is None


@pytest.mark.parametrize("garbage", [b"", b"{not json", b'{"holder": "x"}', b'{"holder": "x", "acquired_at": 1}'])
def test_corrupt_lease_counts_as_expired(
    cas_backend: Backend, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    store = cas_backend.open()
    store.write(LEASE_KEY, garbage, expect=ABSENT)
    with caplog.at_level(logging.WARNING, logger="claude_matrix_bot.store.lease"):
        lease = acquire_lease(store, holder="run-a", now=NOW, ttl_sec=TTL)
    assert read_lease(store) == lease
    assert "unreadable" in caplog.text


def test_naive_time_is_a_programming_error(backend: Backend) -> None:
    with pytest.raises(ValueError, match="timezone"):
        acquire_lease(backend.open(), holder="a", now=datetime(2026, 1, 1), ttl_sec=TTL)


def _race(backend: Backend, now: datetime) -> list[Lease | None]:
    stores = [backend.open() for _ in range(RACERS)]
    start = threading.Barrier(RACERS)

    def acquire(index: int) -> Lease | None:
        start.wait()
        try:
            return acquire_lease(stores[index], holder=f"racer-{index}", now=now, ttl_sec=TTL)
        except LeaseHeld:
            return None

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(acquire, range(RACERS)))


def test_simultaneous_acquirers_of_a_free_lease_have_one_winner(cas_backend: Backend) -> None:
    outcomes = _race(cas_backend, NOW)
    winners = [lease for lease in outcomes if lease is not None]
    assert len(winners) == 1
    assert read_lease(cas_backend.open()) == winners[0]


def test_simultaneous_takeovers_of_an_expired_lease_have_one_winner(cas_backend: Backend) -> None:
    acquire_lease(cas_backend.open(), holder="crashed-run", now=NOW, ttl_sec=TTL)
    outcomes = _race(cas_backend, NOW + timedelta(hours=1))
    winners = [lease for lease in outcomes if lease is not None]
    assert len(winners) == 1
    assert read_lease(cas_backend.open()) == winners[0]
