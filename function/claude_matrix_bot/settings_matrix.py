"""The Matrix part of the settings (docs/design.md §3): the room id, the identity and device pins
of `MATRIX_TRUSTED_DEVICES`, and the files `MATRIX_CREDS_DIR` must hold."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# The files `MATRIX_CREDS_DIR` must hold (docs/design.md §3).
MATRIX_CREDENTIAL_FILES = ("homeserver_url", "user_id", "access_token", "device_id")

# Said in the log whenever the key store is opened without a passphrase, and by `status`
# (issue 21 item 5). A store written without one cannot be opened with one later.
UNENCRYPTED_KEY_STORE = (
    "the Matrix key store is not encrypted at rest (MATRIX_STORE_PASSPHRASE is not set): the "
    "cross-signing seeds are plain text and the Olm account is pickled under nio's default key; "
    "set MATRIX_STORE_PASSPHRASE from a Secret before the bot's first Matrix login (for an existing "
    "store: then `matrix-login --new-device`), see docs/deploy.md"
)


def key_store_report(passphrase: str | None) -> dict[str, object]:
    """What `status` says of the key store at rest: an unencrypted one is said, not assumed."""
    return {"encrypted": True} if passphrase else {"encrypted": False, "warning": UNENCRYPTED_KEY_STORE}


# Room versions before 12 carry the server (`!abc:example.org`); v12 ids are bare
# hashes (`!Aa-nrPn…`). Both are valid.
_ROOM_ID = re.compile(r"^![^:\s]+(:\S+)?$")
_USER_ID = re.compile(r"^@[^:\s]+:\S+$")

IDENTITY_PIN = "master"
# An ed25519 public key as Matrix writes it: 32 bytes, unpadded base64.
_ED25519_KEY = re.compile(r"^[A-Za-z0-9+/]{43}$")


@dataclass(frozen=True, slots=True)
class TrustedDevice:
    """One pin of `MATRIX_TRUSTED_DEVICES`: `user_id:device_id:ed25519` pins one device;
    `user_id:master:ed25519` pins the user's cross-signing identity (its master key),
    and with it every device that identity signs."""

    user_id: str
    device_id: str
    ed25519: str

    @property
    def is_identity(self) -> bool:
        return self.device_id == IDENTITY_PIN


def trusted_devices(text: str) -> tuple[TrustedDevice, ...]:
    devices: list[TrustedDevice] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        # user ids contain a colon themselves (@bot:example.org), so split from the right.
        parts = entry.rsplit(":", 2)
        if len(parts) != 3 or not _USER_ID.match(parts[0]) or not parts[1] or not parts[2]:
            raise ValueError(
                f"expected entries of the form @user:server:DEVICEID:ed25519key or @user:server:master:key, "
                f"got {entry!r}"
            )
        pin = TrustedDevice(parts[0], parts[1], parts[2])
        if pin.is_identity and not _ED25519_KEY.match(pin.ed25519):
            raise ValueError(
                f"expected the master key of {pin.user_id} as 43 characters of unpadded base64 "
                f"(as matrix-login and Element show it), got {pin.ed25519!r}"
            )
        devices.append(pin)
    return tuple(devices)


def mention_users(text: str) -> tuple[str, ...]:
    """`MATRIX_MENTION`: comma-separated user ids the urgent alerts mention (docs/design.md §9)."""
    users: list[str] = []
    for raw in text.split(","):
        user = raw.strip()
        if not user:
            continue
        if not _USER_ID.match(user):
            raise ValueError(f"expected comma-separated Matrix user ids like @me:example.org, got {user!r}")
        if user not in users:
            users.append(user)
    if not users:
        raise ValueError(f"expected at least one Matrix user id like @me:example.org, got {text!r}")
    return tuple(users)


def room_id(text: str) -> str:
    if not _ROOM_ID.match(text):
        raise ValueError(f"expected a room id like !abc123:example.org (or a bare !id), got {text!r}")
    return text


def credential_problems(directory: Path) -> list[str]:
    """What is wrong with MATRIX_CREDS_DIR, without reading any secret into memory."""
    if not directory.is_dir():
        return [f"MATRIX_CREDS_DIR: {str(directory)!r} is not a directory (run `claude-matrix-bot matrix-login`)"]
    missing = []
    for name in MATRIX_CREDENTIAL_FILES:
        path = directory / name
        try:
            empty = path.stat().st_size == 0
            readable = os.access(path, os.R_OK) and path.is_file()
        except OSError:
            missing.append(f"{name} (missing)")
            continue
        if not readable:
            missing.append(f"{name} (unreadable)")
        elif empty:
            missing.append(f"{name} (empty)")
    if missing:
        return [f"MATRIX_CREDS_DIR: {str(directory)!r} lacks {', '.join(missing)}"]
    return []
