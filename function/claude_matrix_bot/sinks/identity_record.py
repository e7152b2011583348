"""`identity.json`: what the bot knows about its own cross-signing identity, public
values only, so `status` can read it without the passphrase (crosssigning.py holds the
keys themselves); and the atomic 0600 writer both files use."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..atomic import replace_file

IDENTITY_FILE = "identity.json"
MAX_SET_ASIDE = 10  # alerts set aside that `status` lists (all are counted)
MAX_NOTE = 500


# --- the public file: what the bot knows about its identity (status shows it) ------------------


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    """`identity.json`: public values only.

    `signed_devices`: the bot's devices its self-signing key signed (a device listed
    here costs no request on later deliveries). `foreign_master`: the account has a
    master key the bot does not hold; the bot does not replace it by itself.
    `withheld`: recipients that got no room key on the last delivery because of an
    identity pin or MATRIX_EXCLUDE_INSECURE_DEVICES, with the reason.
    `set_aside`: the last alerts the homeserver refused for good (too large, malformed),
    each "id (kind): why"; `set_aside_total` counts them all. `signature_problem`: the
    bot signed its device but recipients cannot see the signature (what to tell them).
    """

    user_id: str | None = None
    master: str | None = None
    self_signing: str | None = None
    signed_devices: tuple[str, ...] = ()
    foreign_master: str | None = None
    foreign_checked_device: str | None = None
    withheld: tuple[tuple[str, str], ...] = ()
    set_aside: tuple[str, ...] = ()
    set_aside_total: int = 0
    signature_problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "master": self.master,
            "self_signing": self.self_signing,
            "signed_devices": list(self.signed_devices),
            "foreign_master": self.foreign_master,
            "foreign_checked_device": self.foreign_checked_device,
            "withheld": [{"device": device, "reason": reason} for device, reason in self.withheld],
            "set_aside": list(self.set_aside),
            "set_aside_total": self.set_aside_total,
            "signature_problem": self.signature_problem,
        }

    @classmethod
    def from_json(cls, data: Any) -> IdentityRecord:
        if not isinstance(data, Mapping):
            return cls()

        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        devices = data.get("signed_devices")
        withheld = data.get("withheld")
        set_aside = data.get("set_aside")
        total = data.get("set_aside_total")
        return cls(
            user_id=text("user_id"),
            master=text("master"),
            self_signing=text("self_signing"),
            signed_devices=tuple(d for d in devices if isinstance(d, str)) if isinstance(devices, list) else (),
            foreign_master=text("foreign_master"),
            foreign_checked_device=text("foreign_checked_device"),
            withheld=tuple(
                (str(w.get("device")), str(w.get("reason")))
                for w in withheld
                if isinstance(w, Mapping) and w.get("device") and w.get("reason")
            )
            if isinstance(withheld, list)
            else (),
            set_aside=tuple(str(a)[:MAX_NOTE] for a in set_aside if a)[-MAX_SET_ASIDE:]
            if isinstance(set_aside, list)
            else (),
            set_aside_total=total if isinstance(total, int) and not isinstance(total, bool) and total > 0 else 0,
            signature_problem=text("signature_problem"),
        )


def read_identity(store_dir: Path) -> IdentityRecord:
    try:
        return IdentityRecord.from_json(json.loads((store_dir / IDENTITY_FILE).read_text()))
    except (OSError, ValueError, RecursionError):
        return IdentityRecord()


def write_identity(store_dir: Path, record: IdentityRecord) -> None:
    if read_identity(store_dir) == record and (store_dir / IDENTITY_FILE).exists():
        return  # unchanged: no rewrite, so a bucket store has nothing to upload
    write_private_json(store_dir / IDENTITY_FILE, record.to_json())


def record_set_aside(store_dir: Path, note: str) -> None:
    """One more alert the homeserver refused for good, for `status` (the last few kept)."""
    record = read_identity(store_dir)
    write_identity(
        store_dir,
        replace(
            record,
            set_aside=(*record.set_aside, note[:MAX_NOTE])[-MAX_SET_ASIDE:],
            set_aside_total=record.set_aside_total + 1,
        ),
    )


def signature_notice(device_id: str, why: str) -> str:
    """What a signature recipients cannot see means (log, status, the room)."""
    return (
        f"the bot's device {device_id} is not shown as signed by its cross-signing identity ({why}): "
        "Element may hide these alerts (a red shield; with 'exclude insecure devices' it does not decrypt "
        "them). The bot signs it again on its next delivery; `claude-matrix-bot matrix-login` does it at once."
    )


def foreign_identity_notice(user_id: str, foreign_master: str) -> str:
    """What a foreign master key means and how to fix it (log, status, armed message)."""
    return (
        f"the Matrix account {user_id} already has a cross-signing identity (master key {foreign_master}) "
        "whose private keys the bot does not hold (a personal account reused for the bot, or a lost key store). "
        "Alerts are still delivered, but Element shows them with a red shield and, with 'exclude insecure "
        "devices', does not decrypt them. The bot never replaces an identity by itself: if the account is the "
        "bot's alone, run `claude-matrix-bot matrix-login --reset-cross-signing` (it asks for the password)."
    )


def write_private_json(path: Path, data: Mapping[str, Any]) -> None:
    """Atomic, 0600, durable: these files travel with the nio store and hold private keys."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    replace_file(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


# --- for `status` and GET / ------------------------------------------------------------------------


def identity_report(data: bytes | None) -> dict[str, Any] | None:
    """What `status` shows about the bot's Matrix identity, from `identity.json`'s bytes
    (None: the bot has not delivered to Matrix yet). Public values only."""
    if data is None:
        return None
    try:
        record = IdentityRecord.from_json(json.loads(data))
    except (ValueError, RecursionError):  # a file nested deeper than the parser goes (issue 21)
        return None
    report: dict[str, Any] = {
        "user_id": record.user_id,
        "master_key": record.master,
        "signed_devices": list(record.signed_devices),
    }
    if record.foreign_master and record.user_id:
        report["problem"] = foreign_identity_notice(record.user_id, record.foreign_master)
    if record.withheld:
        report["withheld"] = [{"device": device, "reason": reason} for device, reason in record.withheld]
    if record.signature_problem:
        report["signature_problem"] = record.signature_problem
    if record.set_aside_total:
        report["set_aside"] = {"total": record.set_aside_total, "last": list(record.set_aside)}
    return report


def identity_lines(report: dict[str, Any] | None) -> list[str]:
    """`identity_report` as text lines for `claude-matrix-bot status`."""
    if not report:
        return []
    lines = []
    if report.get("master_key"):
        devices = ", ".join(report["signed_devices"]) or "none"
        lines.append(f"matrix identity: master key {report['master_key']} (signed devices: {devices})")
    if report.get("problem"):
        lines.append(f"MATRIX IDENTITY: {report['problem']}")
    for entry in report.get("withheld", []):
        lines.append(f"matrix: no room keys for {entry['device']}: {entry['reason']}")
    if report.get("signature_problem"):
        lines.append(f"MATRIX SIGNATURE: {report['signature_problem']}")
    if report.get("set_aside"):
        set_aside = report["set_aside"]
        lines.append(f"MATRIX: {set_aside['total']} alert(s) refused for good by the homeserver and set aside:")
        lines.extend(f"  {note}" for note in set_aside["last"])
    return lines
