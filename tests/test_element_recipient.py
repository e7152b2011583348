"""Alerts as Element reads them: matrix-js-sdk with its Rust crypto, against a real Synapse.

matrix-nio (the other recipient of the suite) ignores cross-signing; Element does not:
an unsigned sender gets a red shield, and under "exclude insecure devices"
(OnlySignedDevicesIsolationMode, MSC4153) nothing it sends decrypts.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_matrix_bot.model import Alert
from claude_matrix_bot.settings import TrustedDevice
from claude_matrix_bot.sinks.matrix import MatrixSink
from tests.element_recipient import ElementDevice, ensure_installed, versions
from tests.synapse import Account, Homeserver

pytestmark = [pytest.mark.synapse, pytest.mark.slow]

SINK_LOGGER = "claude_matrix_bot.sinks.matrix"


@pytest.fixture(scope="module")
def homeserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Homeserver]:
    ensure_installed()  # npm ci on a fresh clone or a changed lock file
    server = Homeserver(tmp_path_factory.mktemp("synapse"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def devices() -> Iterator[list[ElementDevice]]:
    started: list[ElementDevice] = []
    yield started
    for device in started:
        device.close()
    for device in started:  # nothing secret in what the JS side logged
        assert device.password not in device.stderr
        assert device.access_token not in device.stderr


def element(
    homeserver: Homeserver, account: Account, devices: list[ElementDevice], isolation: str = "all"
) -> ElementDevice:
    device = ElementDevice(homeserver.url, account.user_id, account.password, isolation=isolation)
    devices.append(device)
    return device.start()


def alert(alert_id: str) -> Alert:
    return Alert(id=alert_id, kind="threshold", plain=f"alert {alert_id}", html=f"<p>alert {alert_id}</p>")


def users(homeserver: Homeserver, tmp_path: Path) -> tuple[Account, Account]:
    suffix = uuid.uuid4().hex[:8]
    bot = homeserver.register(f"bot-{suffix}")
    bot.write_creds_dir(tmp_path / "creds", homeserver.url)
    return bot, homeserver.register(f"alice-{suffix}")


def test_alerts_decrypt_without_a_shield_even_when_only_signed_devices_are_trusted(
    homeserver: Homeserver, tmp_path: Path, devices: list[ElementDevice], capsys: pytest.CaptureFixture[str]
) -> None:
    bot, alice = users(homeserver, tmp_path)
    laptop = element(homeserver, alice, devices)
    room_id = laptop.create_encrypted_room([bot.user_id])
    sink = MatrixSink(tmp_path / "creds", room_id, tmp_path / "store", timeout=10)

    first = sink.deliver([alert("e-1")])
    warm = MatrixSink(tmp_path / "creds", room_id, tmp_path / "store", timeout=10).deliver([alert("e-2")])

    assert first.delivered == ("e-1",) and warm.delivered == ("e-2",)
    shown = laptop.messages(room_id, bot.user_id, 2)
    assert [(m.decrypted, m.body, m.shield, m.shield_reason) for m in shown] == [
        (True, "alert e-1", "NONE", None),
        (True, "alert e-2", "NONE", None),
    ]
    assert laptop.device_status(bot.user_id, bot.device_id)["signed_by_owner"] is True
    laptop.set_isolation("only_signed")
    assert [(m.decrypted, m.body) for m in laptop.messages(room_id, bot.user_id, 2)] == [
        (True, "alert e-1"),
        (True, "alert e-2"),
    ]
    # A phone that runs with the rule from the start reads the next alert too.
    phone = element(homeserver, alice, devices, isolation="only_signed")
    assert MatrixSink(tmp_path / "creds", room_id, tmp_path / "store", timeout=10).deliver([alert("e-3")]).delivered
    [latest] = [m for m in phone.messages(room_id, bot.user_id, 3) if m.body == "alert e-3"]
    assert latest.shield == "NONE"
    with capsys.disabled():
        print(f"\nElement recipient: {versions()}; matrix requests first {first.requests}, warm {warm.requests}")


def test_excluding_insecure_devices_keeps_room_keys_from_unsigned_ones(
    homeserver: Homeserver, tmp_path: Path, devices: list[ElementDevice], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    bot, alice = users(homeserver, tmp_path)
    signed = element(homeserver, alice, devices)
    signed.bootstrap_cross_signing()
    unsigned = element(homeserver, alice, devices)
    room_id = signed.create_encrypted_room([bot.user_id])
    sink = MatrixSink(tmp_path / "creds", room_id, tmp_path / "store", timeout=10, exclude_insecure_devices=True)

    assert sink.deliver([alert("x-1")]).delivered == ("x-1",)

    [readable] = signed.messages(room_id, bot.user_id, 1)
    assert (readable.decrypted, readable.body) == (True, "alert x-1")
    [locked] = unsigned.messages(room_id, bot.user_id, 1)
    assert not locked.decrypted and locked.failure == "MEGOLM_UNKNOWN_INBOUND_SESSION_ID"
    warnings = [r.getMessage() for r in caplog.records if r.name == SINK_LOGGER and r.levelno == logging.WARNING]
    assert any(unsigned.device_id in w and "MATRIX_EXCLUDE_INSECURE_DEVICES" in w for w in warnings)
    assert not any(signed.device_id in w for w in warnings)


def test_an_identity_pin_admits_a_newly_signed_phone_without_a_config_change(
    homeserver: Homeserver, tmp_path: Path, devices: list[ElementDevice], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    bot, alice = users(homeserver, tmp_path)
    laptop = element(homeserver, alice, devices)
    master = laptop.bootstrap_cross_signing()
    room_id = laptop.create_encrypted_room([bot.user_id])
    pin = (TrustedDevice(alice.user_id, "master", master),)

    def deliver(alert_id: str) -> tuple[str, ...]:
        sink = MatrixSink(tmp_path / "creds", room_id, tmp_path / "store", timeout=10, trusted_devices=pin)
        return sink.deliver([alert(alert_id)]).delivered

    assert deliver("p-1") == ("p-1",)
    phone = element(homeserver, alice, devices)
    laptop.cross_sign_device(phone.device_id)  # "verify this session" on the laptop
    assert deliver("p-2") == ("p-2",)

    [second] = [m for m in phone.messages(room_id, bot.user_id, 2) if m.body == "alert p-2"]
    assert second.decrypted
    assert [m.body for m in laptop.messages(room_id, bot.user_id, 2)] == ["alert p-1", "alert p-2"]
