"""Who gets the room key (sinks/matrix/trust.py): the pure decision, table-tested without
Synapse or nio. The Synapse and Element tests prove the same rules end to end
(test_matrix_sink, test_cross_signing, test_element_recipient); here every combination of
pins, identities and MATRIX_EXCLUDE_INSECURE_DEVICES is spelled out."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from claude_matrix_bot.sinks.crosssigning import PublishedIdentity
from claude_matrix_bot.sinks.matrix.trust import Device, TrustDecision, TrustPolicy, decide_trust

ROOM = "!room:localhost"
ALICE, BOB = "@alice:localhost", "@bob:localhost"
LAPTOP = Device(ALICE, "LAPTOP", "laptop-key")
PHONE = Device(ALICE, "PHONE", "phone-key")
BOBS = Device(BOB, "BOBS", "bob-key")
# alice's identity signed her laptop only; bob has no identity at all.
ALICE_ID = PublishedIdentity(
    ALICE, master="alice-master", self_signing="alice-ssk", signed_devices={"LAPTOP": "laptop-key"}
)
IDENTITIES = {ALICE: ALICE_ID}
DEVICES = {ALICE: [LAPTOP, PHONE], BOB: [BOBS]}


@dataclass(frozen=True)
class Case:
    policy: TrustPolicy
    admitted: set[Device]
    withheld: set[str] = field(default_factory=set)  # the "who" of each withheld entry
    problem: str | None = None  # a fragment of the sentence that stops the delivery
    says: tuple[str, ...] = ()  # fragments of the notes


CASES = {
    "tofu: everyone": Case(TrustPolicy(), {LAPTOP, PHONE, BOBS}),
    "exclude insecure: only signed devices": Case(
        TrustPolicy(exclude_insecure=True),
        {LAPTOP},
        withheld={"@alice:localhost PHONE", "@bob:localhost BOBS"},
        says=("not sending room keys to @alice:localhost PHONE (not signed by its owner's", "EXCLUDE_INSECURE"),
    ),
    "device pin: that device with that key": Case(
        TrustPolicy(device_pins={(ALICE, "PHONE"): "phone-key"}),
        {PHONE},
        says=("not sending room keys to @alice:localhost LAPTOP (not in MATRIX_TRUSTED_DEVICES)",),
    ),
    "device pin with another key: refused loudly": Case(
        TrustPolicy(device_pins={(ALICE, "PHONE"): "other-key", (BOB, "BOBS"): "bob-key"}),
        {BOBS},
        says=("PINNED DEVICE KEY MISMATCH: @alice:localhost PHONE presents ed25519 phone-key",),
    ),
    "device pin beats exclude insecure when signed only": Case(
        TrustPolicy(
            device_pins={(ALICE, "PHONE"): "phone-key", (ALICE, "LAPTOP"): "laptop-key"}, exclude_insecure=True
        ),
        {LAPTOP},
        withheld={"@alice:localhost PHONE"},
    ),
    "identity pin: every device the identity signed": Case(
        TrustPolicy(identity_pins={ALICE: "alice-master"}),
        {LAPTOP},
        says=(
            "not sending room keys to @alice:localhost PHONE (not signed by the pinned cross-signing identity)",
            "not sending room keys to @bob:localhost BOBS (not in MATRIX_TRUSTED_DEVICES)",
        ),
    ),
    "identity pin, identity changed: none of its devices": Case(
        TrustPolicy(identity_pins={ALICE: "old-master"}, device_pins={(BOB, "BOBS"): "bob-key"}),
        {BOBS},
        withheld={ALICE},
        says=("PINNED IDENTITY MISMATCH: @alice:localhost now has master key alice-master",),
    ),
    "identity pin on a user without identity": Case(
        TrustPolicy(identity_pins={BOB: "bob-master"}),
        set(),
        withheld={BOB},
        problem="none of the MATRIX_TRUSTED_DEVICES is in room",
        says=("now has no cross-signing identity",),
    ),
    "pins for people not in the room": Case(
        TrustPolicy(device_pins={("@carol:localhost", "C"): "c-key"}, identity_pins={"@dave:localhost": "d"}),
        set(),
        problem="none of the MATRIX_TRUSTED_DEVICES is in room !room:localhost",
        says=(
            "pinned device @carol:localhost C is not in room !room:localhost (or has no keys)",
            "pinned identity of @dave:localhost: the user is not in room !room:localhost",
        ),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_who_gets_the_room_key(case: Case) -> None:
    decision = decide_trust(case.policy, ROOM, [BOB, ALICE], DEVICES, IDENTITIES)

    assert set(decision.recipients) == case.admitted
    every = {d for devices in DEVICES.values() for d in devices}
    assert set(decision.refused) == every - case.admitted, "every device is decided, once"
    assert {who for who, _why in decision.withheld} == case.withheld
    if case.problem is None:
        assert decision.problem is None
    else:
        assert decision.problem is not None and case.problem in decision.problem
    notes = "\n".join(text for _level, text in decision.notes)
    for fragment in case.says:
        assert fragment in notes


def test_mismatches_are_errors_and_refusals_warnings() -> None:
    decision = decide_trust(
        TrustPolicy(device_pins={(ALICE, "PHONE"): "other-key"}, identity_pins={BOB: "bob-master"}),
        ROOM,
        [ALICE, BOB],
        DEVICES,
        IDENTITIES,
    )
    levels = {text.split(":")[0]: level for level, text in decision.notes if text.startswith("PINNED")}
    assert levels == {"PINNED DEVICE KEY MISMATCH": logging.ERROR, "PINNED IDENTITY MISMATCH": logging.ERROR}
    assert all(level == logging.WARNING for level, text in decision.notes if not text.startswith("PINNED"))


def test_nobody_signed_under_exclude_insecure_stops_the_delivery() -> None:
    decision = decide_trust(TrustPolicy(exclude_insecure=True), ROOM, [BOB], DEVICES, IDENTITIES)
    assert decision.recipients == ()
    assert decision.problem is not None and "MATRIX_EXCLUDE_INSECURE_DEVICES" in decision.problem


def test_an_empty_room_under_tofu_is_no_problem_of_trust() -> None:
    assert decide_trust(TrustPolicy(), ROOM, [], {}, {}) == TrustDecision()


def test_a_device_signed_with_another_key_is_not_signed() -> None:
    forged = Device(ALICE, "LAPTOP", "forged-key")
    decision = decide_trust(TrustPolicy(exclude_insecure=True), ROOM, [ALICE], {ALICE: [forged]}, IDENTITIES)
    assert decision.recipients == () and decision.refused == (forged,)


def test_the_policy_reads_the_settings_pins() -> None:
    from claude_matrix_bot.settings import TrustedDevice

    pins = (TrustedDevice(ALICE, "PHONE", "phone-key"), TrustedDevice(BOB, "master", "bob-master"))
    policy = TrustPolicy.from_settings(pins, exclude_insecure=True)
    assert policy.device_pins == {(ALICE, "PHONE"): "phone-key"}
    assert policy.identity_pins == {BOB: "bob-master"}
    assert policy.strict and policy.exclude_insecure
    assert not TrustPolicy.from_settings((), exclude_insecure=False).strict
