"""state.json under STATE_URL: read (a corrupt file moved aside) and written compare-and-swap."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from .errors import CorruptState, StorageConflict, StorageError
from .state import State, dump_state, lasting_change, parse_state
from .store import ABSENT, BlobStore, Durability
from .tokens.base import to_unix_ms

log = logging.getLogger("claude_matrix_bot.cycle")

STATE_KEY = "state.json"


def state_key(account: str) -> str:
    """Where an account's state lives under STATE_URL (docs/design.md §6): `<account>/state.json`,
    and `state.json` for the single account (`ports.SINGLE_ACCOUNT`, no name)."""
    return f"{account}/{STATE_KEY}" if account else STATE_KEY


@dataclass(frozen=True, slots=True)
class LoadedState:
    state: State | None  # None: first run ever
    version: str | None  # None: no file yet


def load_state(store: BlobStore, now: datetime, key: str = STATE_KEY) -> LoadedState:
    """Read state.json (`<account>/state.json` with several accounts). A corrupt file is
    moved aside (never deleted) and the bot re-arms saying so; a future schema raises
    StateSchemaError and is left alone."""
    try:
        data, version = store.read(key)
    except FileNotFoundError:
        return LoadedState(None, None)
    try:
        return LoadedState(parse_state(data), version)
    except CorruptState as exc:
        aside = _move_aside(store, key, data, now)
        log.warning("%s is unreadable (%s); moved aside to %s and re-arming", key, exc, aside)
        note = f"{key} could not be read ({exc}) and was moved aside to {aside}; starting over."
        return LoadedState(State(note=note), version)


ASIDE_ATTEMPTS = 100


def _move_aside(store: BlobStore, key: str, data: bytes, now: datetime) -> str:
    """Copy a corrupt file to `<key>.corrupt-<time>` (`-2`, `-3`, … when that name is taken:
    a second corrupt file in one second is kept too). A copy that cannot be written raises:
    re-arming would then write over the only copy (docs/design.md §4: never deleted)."""
    stamp = f"{key}.corrupt-{now:%Y%m%dT%H%M%SZ}"
    for n in range(1, ASIDE_ATTEMPTS + 1):
        aside = stamp if n == 1 else f"{stamp}-{n}"
        try:
            store.write(aside, data, expect=ABSENT)
        except StorageConflict:
            continue
        return aside
    raise StorageError(f"{key} is unreadable and {ASIDE_ATTEMPTS} copies named {stamp}… exist; left in place")


def save_state(
    store: BlobStore, state: State, version: str | None, key: str = STATE_KEY, *, since: State | None = None
) -> str:
    """Write `state` over `version`. With `since` (the state that was read), a change
    that a crash may undo (`lasting_change`) is written "consistent": on a directory one
    fsync instead of two, which is most of a quiet cycle's own time (docs/performance.md)."""
    durability: Durability = "consistent" if since is not None and not lasting_change(since, state) else "durable"
    expect = version if version is not None else ABSENT
    return store.write(key, dump_state(state), expect=expect, durability=durability)


def mark_attempted(
    store: BlobStore,
    state: State,
    version: str | None,
    now: datetime,
    key: str = STATE_KEY,
    only: frozenset[str] | None = None,
) -> tuple[State, str | None]:
    """The outbox marked attempted and written before any send (docs/design.md §5): a crash or a
    lost answer after the send leaves the mark. One write, only when an alert is new."""
    marked = state.mark_attempted(to_unix_ms(now), only)
    if marked is state:
        return state, version
    return marked, save_state(store, marked, version, key)
