"""Which devices get the room key: a pure decision, from the pins, the members' devices
and their cross-signing identities. No nio, no I/O; the delivery applies it (blacklists
the refused, verifies the admitted) and logs its notes.

Trust on first use when nothing is pinned: every device is admitted. Strict when
MATRIX_TRUSTED_DEVICES is set: a device pin admits that device with that key; an identity
pin (`user:master:key`) admits every device that identity signed, and none at all once
the user's identity is another. Everything else is refused. MATRIX_EXCLUDE_INSECURE_DEVICES
then also refuses every device its owner's identity did not sign (MSC4153).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ...settings import TrustedDevice
from ..crosssigning import PublishedIdentity


@dataclass(frozen=True, slots=True)
class Device:
    """A member's device as its keys present it."""

    user_id: str
    device_id: str
    ed25519: str


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    device_pins: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (user, device) -> ed25519
    identity_pins: Mapping[str, str] = field(default_factory=dict)  # user -> master key
    exclude_insecure: bool = False

    @classmethod
    def from_settings(cls, trusted: Sequence[TrustedDevice], exclude_insecure: bool) -> TrustPolicy:
        return cls(
            device_pins={(d.user_id, d.device_id): d.ed25519 for d in trusted if not d.is_identity},
            identity_pins={d.user_id: d.ed25519 for d in trusted if d.is_identity},
            exclude_insecure=exclude_insecure,
        )

    @property
    def strict(self) -> bool:
        return bool(self.device_pins or self.identity_pins)


@dataclass(frozen=True, slots=True)
class TrustDecision:
    recipients: tuple[Device, ...] = ()
    refused: tuple[Device, ...] = ()
    # What `status` shows as withheld: (who, why).
    withheld: tuple[tuple[str, str], ...] = ()
    # What to log, in the order it was found: (logging level, sentence).
    notes: tuple[tuple[int, str], ...] = ()
    # Set when nobody could decrypt: the delivery must stop with this sentence.
    problem: str | None = None


@dataclass
class _Tally:
    recipients: list[Device] = field(default_factory=list)
    refused: list[Device] = field(default_factory=list)
    withheld: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)


def decide_trust(
    policy: TrustPolicy,
    room_id: str,
    members: Sequence[str],
    devices: Mapping[str, Sequence[Device]],
    identities: Mapping[str, PublishedIdentity],
) -> TrustDecision:
    """The decision for the room's `members`; `devices` excludes the bot's own device."""
    tally = _Tally()
    for user_id in sorted(members):
        identity = identities.get(user_id) or PublishedIdentity(user_id)
        changed = _identity_changed(policy, identity, tally)
        for device in devices.get(user_id, ()):
            admitted = _judge(policy, device, identity, changed, tally)
            (tally.recipients if admitted else tally.refused).append(device)
    _note_absent_pins(policy, room_id, members, devices, tally)
    return TrustDecision(
        recipients=tuple(tally.recipients),
        refused=tuple(tally.refused),
        withheld=tuple(tally.withheld),
        notes=tuple(tally.notes),
        problem=_problem(policy, room_id, tally.recipients),
    )


def _identity_changed(policy: TrustPolicy, identity: PublishedIdentity, tally: _Tally) -> bool:
    pinned = policy.identity_pins.get(identity.user_id)
    if pinned is None or identity.master == pinned:
        return False
    found = f"master key {identity.master}" if identity.master else "no cross-signing identity"
    tally.notes.append(
        (
            logging.ERROR,
            f"PINNED IDENTITY MISMATCH: {identity.user_id} now has {found}, MATRIX_TRUSTED_DEVICES pins master key "
            f"{pinned}; not sending room keys to any of its devices (they reset their identity, or someone "
            "impersonates them: check with them, then update the pin)",
        )
    )
    tally.withheld.append((identity.user_id, f"cross-signing identity changed ({found}, pinned {pinned})"))
    return True


def _judge(
    policy: TrustPolicy, device: Device, identity: PublishedIdentity, identity_changed: bool, tally: _Tally
) -> bool:
    """Admitted or not; the reasons go into `tally`."""
    signed = identity.signs(device.device_id, device.ed25519)
    if policy.strict and not _pinned_admits(policy, device, signed, identity_changed, tally):
        return False
    if policy.exclude_insecure and not signed:
        tally.notes.append(
            (
                logging.WARNING,
                f"not sending room keys to {device.user_id} {device.device_id} (not signed by its owner's "
                "cross-signing identity; MATRIX_EXCLUDE_INSECURE_DEVICES)",
            )
        )
        tally.withheld.append(
            (f"{device.user_id} {device.device_id}", "not signed by its owner's cross-signing identity")
        )
        return False
    return True


def _pinned_admits(policy: TrustPolicy, device: Device, signed: bool, identity_changed: bool, tally: _Tally) -> bool:
    who = f"{device.user_id} {device.device_id}"
    expected = policy.device_pins.get((device.user_id, device.device_id))
    if expected is not None:
        if expected == device.ed25519:
            return True
        tally.notes.append(
            (
                logging.ERROR,
                f"PINNED DEVICE KEY MISMATCH: {who} presents ed25519 {device.ed25519}, MATRIX_TRUSTED_DEVICES pins "
                f"{expected}; not sending it room keys (possible impersonation, or a wrong pin)",
            )
        )
        return False
    if device.user_id in policy.identity_pins:
        if identity_changed:
            return False  # said once for the whole identity
        if not signed:
            tally.notes.append(
                (logging.WARNING, f"not sending room keys to {who} (not signed by the pinned cross-signing identity)")
            )
        return signed
    tally.notes.append((logging.WARNING, f"not sending room keys to {who} (not in MATRIX_TRUSTED_DEVICES)"))
    return False


def _note_absent_pins(
    policy: TrustPolicy, room_id: str, members: Sequence[str], devices: Mapping[str, Sequence[Device]], tally: _Tally
) -> None:
    seen = {(d.user_id, d.device_id) for user in members for d in devices.get(user, ())}
    for user_id, device_id in policy.device_pins.keys() - seen:
        tally.notes.append(
            (logging.WARNING, f"pinned device {user_id} {device_id} is not in room {room_id} (or has no keys)")
        )
    for user_id in policy.identity_pins.keys() - set(members):
        tally.notes.append((logging.WARNING, f"pinned identity of {user_id}: the user is not in room {room_id}"))


def _problem(policy: TrustPolicy, room_id: str, recipients: Sequence[Device]) -> str | None:
    if recipients:
        return None
    if policy.strict:
        return f"none of the MATRIX_TRUSTED_DEVICES is in room {room_id}: nobody could decrypt the alerts"
    if policy.exclude_insecure:
        return (
            f"no device in room {room_id} is signed by its owner's cross-signing identity "
            "(MATRIX_EXCLUDE_INSECURE_DEVICES): nobody could decrypt the alerts"
        )
    return None
