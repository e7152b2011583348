"""The lease: one cycle at a time per state store (docs/design.md §5 "one writer at a time").

`lease.json` holds `{"holder", "acquired_at", "expires_at"}` (ISO-8601, UTC).
Taking it is a compare-and-swap on that key: an exclusive create when there is
none, a replacement of the exact version we read when the one there has
expired. A lost race is simply "somebody else holds it" (`LeaseHeld`). The write
is "volatile" (no fsync on a directory): the lease matters only while its holder
runs, and a crash of the machine stops the holder as well.

Time: expiry is judged with the `now` the caller passes, never the wall clock,
so NOW_OVERRIDE simulations stay deterministic. The flip side: a simulated
`now` may jump days between runs while the wall clock does not, so a lease
taken under one simulated instant expires at a simulated instant too; runs
with and without NOW_OVERRIDE against one store should not overlap. A lease
whose `expires_at` lies further ahead than the TTL (written by a run with a
far-future NOW_OVERRIDE, or under a clock that ran ahead) cannot have been
taken by a run sharing our clock, so it counts as stale and is taken over with
a warning: it must not block real runs until that future arrives.

A corrupt lease file counts as expired (with a warning): a stuck bot is worse
than the rare double run the lease exists to prevent, and state writes are
compare-and-swap anyway.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..errors import LeaseHeld, StorageConflict
from .base import ABSENT, BlobStore, Expect

log = logging.getLogger(__name__)

LEASE_KEY = "lease.json"


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease we hold; `version` is what releasing or renewing must expect."""

    holder: str
    acquired_at: datetime
    expires_at: datetime
    version: str

    def is_live(self, now: datetime, ttl_sec: int | None = None) -> bool:
        """Not expired at `now`; with `ttl_sec`, also not expiring further ahead than a
        lease taken now could (such a lease was written under another clock)."""
        if ttl_sec is not None and self.expires_at - now > timedelta(seconds=ttl_sec):
            return False
        return now < self.expires_at


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("lease times must be timezone-aware")
    return now.astimezone(UTC)


def _encode(holder: str, acquired_at: datetime, expires_at: datetime) -> bytes:
    record = {"holder": holder, "acquired_at": acquired_at.isoformat(), "expires_at": expires_at.isoformat()}
    return json.dumps(record, sort_keys=True).encode()


def _decode(data: bytes, version: str) -> Lease | None:
    """The lease in `data`, or None when it cannot be understood."""
    try:
        record = json.loads(data)
        holder = record["holder"]
        acquired_at = datetime.fromisoformat(record["acquired_at"])
        expires_at = datetime.fromisoformat(record["expires_at"])
        if not isinstance(holder, str) or expires_at.tzinfo is None or acquired_at.tzinfo is None:
            return None
    except (ValueError, TypeError, KeyError):
        return None
    return Lease(holder, acquired_at, expires_at, version)


def acquire_lease(store: BlobStore, *, holder: str, now: datetime, ttl_sec: int) -> Lease:
    """Take the lease for `ttl_sec` from `now`, or raise LeaseHeld.

    A live lease of the same holder is renewed; one of another holder refuses;
    an expired or corrupt one is taken over by compare-and-swap on its version.
    """
    if ttl_sec <= 0:
        raise ValueError("ttl_sec must be positive")
    now = _aware(now)
    # Read first, although an exclusive create alone would do where preconditions are
    # enforced: on a server that ignores them, a live lease is still respected (races aside).
    expect: Expect
    try:
        data, version = store.read(LEASE_KEY)
    except FileNotFoundError:
        expect = ABSENT
    else:
        current = _decode(data, version)
        if current is None:
            log.warning("%s is unreadable; treating it as expired", LEASE_KEY)
        elif current.is_live(now, ttl_sec) and current.holder != holder:
            raise LeaseHeld(f"lease held by {current.holder} until {current.expires_at.isoformat()}")
        elif current.expires_at - now > timedelta(seconds=ttl_sec):
            log.warning(
                "taking over the lease of %s: it expires at %s, further ahead than a %ds lease can "
                "(written under a far-future NOW_OVERRIDE or a clock that ran ahead)",
                current.holder,
                current.expires_at.isoformat(),
                ttl_sec,
            )
        elif current.holder != holder:
            log.info("taking over the lease of %s, expired at %s", current.holder, current.expires_at.isoformat())
        expect = version

    expires_at = now + timedelta(seconds=ttl_sec)
    try:
        new_version = _write(store, _encode(holder, now, expires_at), expect)
    except StorageConflict as exc:
        raise LeaseHeld("another cycle took the lease first") from exc
    return Lease(holder, now, expires_at, new_version)


def _write(store: BlobStore, record: bytes, expect: Expect) -> str:
    # Volatile: a lease means something only while its holder lives, and a crash of
    # the machine ends the holder too. Whatever the crash leaves (the lease, none, a
    # torn file, which reads as expired) lets the next run in; so no fsync for it.
    return store.write(LEASE_KEY, record, expect=expect, durability="volatile")


def release_lease(store: BlobStore, lease: Lease) -> None:
    """Give the lease back, unless somebody already took it over after it expired.

    The delete expects our version, so it never removes a successor's lease
    (all three backends enforce conditional deletes: flock, S3 If-Match, GCS
    ifGenerationMatch). A conflict means the lease is no longer ours: nothing to do.
    """
    try:
        store.delete(LEASE_KEY, expect=lease.version)
    except StorageConflict:
        log.warning("the lease of %s was taken over before it was released", lease.holder)
