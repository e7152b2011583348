"""The small files of `store_dir` the sink writes itself (nio keeps its own SQLite store).

`sync.json`: what a resident client would keep in memory between syncs for the alert room
(the token, the tracked users, the room's members, their cross-signing identities);
`device.json`: the identity this device published. Written atomically (temp + rename).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...atomic import replace_file
from ..crosssigning import PublishedIdentity

DEVICE_MARKER = "device.json"
SYNC_STATE = "sync.json"


@dataclass(frozen=True, slots=True)
class _SyncState:
    """What a resident client would keep in memory between syncs, for the alert room."""

    next_batch: str | None = None
    device: str | None = None  # "user_id device_id": the state is only valid for that device
    tracked_users: frozenset[str] = frozenset()
    room_id: str | None = None
    joined: frozenset[str] = frozenset()
    invited: frozenset[str] = frozenset()
    # Cross-signing identities of the tracked users, from the last /keys/query of each.
    # None: written by a release that did not keep them (all tracked users are queried once).
    identities: dict[str, PublishedIdentity] | None = None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    # Not fsynced: a lost sync token or media note after a crash costs a replayed sync or
    # one more upload, never a wrong message; deliveries stay off the disk's flush path.
    replace_file(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), durable=False)


def _read_sync_state(path: Path) -> _SyncState:
    data = _read_json(path)
    token = data.get("next_batch")
    if not isinstance(token, str):
        return _SyncState()

    def users(key: str) -> frozenset[str]:
        value = data.get(key)
        return frozenset(u for u in value if isinstance(u, str)) if isinstance(value, list) else frozenset()

    room_id = data.get("room_id")
    device = data.get("device")
    identities_data = data.get("identities")
    identities = (
        {u: PublishedIdentity.from_json(u, i) for u, i in identities_data.items() if isinstance(u, str)}
        if isinstance(identities_data, dict)
        else None
    )
    return _SyncState(
        next_batch=token,
        device=device if isinstance(device, str) else None,
        tracked_users=users("tracked_users"),
        room_id=room_id if isinstance(room_id, str) else None,
        joined=users("joined"),
        invited=users("invited"),
        identities=identities,
    )


def _write_sync_state(path: Path, state: _SyncState) -> None:
    _write_json(
        path,
        {
            "next_batch": state.next_batch,
            "device": state.device,
            "tracked_users": sorted(state.tracked_users),
            "room_id": state.room_id,
            "joined": sorted(state.joined),
            "invited": sorted(state.invited),
            "identities": {u: i.to_json() for u, i in sorted((state.identities or {}).items())},
        },
    )
