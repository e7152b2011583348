"""The bot's cross-signing identity: the pure parts, then against a real Synapse.

The signature chain is checked independently of the bot's own code, by
devstack/crosssigning_check.py: canonical JSON built with the standard library (the spec's
definition) and ed25519 verified by vodozemac (Rust), where the bot signs with
`canonicaljson` and `cryptography` (OpenSSL).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_matrix_bot.cli import main as cli_main
from claude_matrix_bot.errors import ConfigError
from claude_matrix_bot.model import Alert
from claude_matrix_bot.settings import TrustedDevice, load_settings
from claude_matrix_bot.sinks.crosssigning import (
    KEYS_FILE,
    CrossSigningError,
    CrossSigningKeys,
    PublishedIdentity,
    load_keys,
    save_keys,
    verify_signature,
)
from claude_matrix_bot.sinks.identity_record import IDENTITY_FILE, identity_report
from claude_matrix_bot.sinks.matrix import MatrixSink
from claude_matrix_bot.status import collect, format_status
from devstack.crosssigning_check import assert_chain, keys_query, only_key, signed_by
from devstack.matrix_recipient import Recipient
from devstack.synapse import Account, Homeserver

SINK_LOGGER = "claude_matrix_bot.sinks.matrix"
USER = "@bot:example.org"


# --- pure ----------------------------------------------------------------------------------------


def test_the_upload_body_is_a_valid_chain_by_an_independent_verifier() -> None:
    keys = CrossSigningKeys.generate(USER)
    body = keys.upload_body()
    master = only_key(body["master_key"])
    assert body["master_key"]["usage"] == ["master"]
    assert body["self_signing_key"]["usage"] == ["self_signing"]
    assert body["user_signing_key"]["usage"] == ["user_signing"]
    assert signed_by(body["self_signing_key"], USER, master)
    assert signed_by(body["user_signing_key"], USER, master)
    device = {
        "user_id": USER,
        "device_id": "DEV",
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {"ed25519:DEV": "x" * 43, "curve25519:DEV": "y" * 43},
        "signatures": {USER: {"ed25519:DEV": "device-self-signature"}},
        "unsigned": {"device_display_name": "ünïcode"},
    }
    signed = keys.sign_device(device)
    assert signed_by(signed, USER, only_key(body["self_signing_key"]))
    # Only the new signature travels: the upload must not restate the device's own.
    assert signed["signatures"] == {
        USER: {keys.self_signing.key_id: signed["signatures"][USER][keys.self_signing.key_id]}
    }
    assert "unsigned" not in signed


def test_a_changed_object_no_longer_verifies() -> None:
    keys = CrossSigningKeys.generate(USER)
    ssk = keys.upload_body()["self_signing_key"]
    assert verify_signature(ssk, USER, keys.master.public)
    tampered = {**ssk, "keys": {"ed25519:" + "A" * 43: "A" * 43}}
    assert not verify_signature(tampered, USER, keys.master.public)
    assert not verify_signature(ssk, USER, keys.self_signing.public)  # signed by master, not by itself
    assert not verify_signature(ssk, "@other:example.org", keys.master.public)


def test_a_published_identity_admits_only_validly_signed_devices() -> None:
    keys = CrossSigningKeys.generate(USER)
    body = keys.upload_body()

    def device(device_id: str) -> dict[str, Any]:
        return {
            "user_id": USER,
            "device_id": device_id,
            "algorithms": [],
            "keys": {f"ed25519:{device_id}": device_id * 4},
        }

    signed = keys.sign_device(device("GOOD"))
    forged = {**device("FORGED"), "signatures": signed["signatures"]}  # a signature over another object
    answer = {
        "master_keys": {USER: body["master_key"]},
        "self_signing_keys": {USER: body["self_signing_key"]},
        "device_keys": {USER: {"GOOD": signed, "FORGED": forged, "PLAIN": device("PLAIN")}},
    }
    identity = PublishedIdentity.from_keys_query(answer, USER)
    assert identity.master == keys.master.public
    assert identity.signed_devices == {"GOOD": "GOODGOODGOODGOOD"}
    assert identity.signs("GOOD", "GOODGOODGOODGOOD")
    assert not identity.signs("GOOD", "another key")
    # A self-signing key the master did not sign signs nothing.
    other = CrossSigningKeys.generate(USER)
    answer["self_signing_keys"] = {USER: other.upload_body()["self_signing_key"]}
    assert PublishedIdentity.from_keys_query(answer, USER).signed_devices == {}
    assert PublishedIdentity.from_json(USER, identity.to_json()) == identity


def test_private_keys_are_encrypted_at_rest_with_the_store_passphrase(tmp_path: Path) -> None:
    keys = CrossSigningKeys.generate(USER)
    save_keys(tmp_path, keys, "correct horse")
    text = (tmp_path / KEYS_FILE).read_text()
    for usage in ("master", "self_signing", "user_signing"):
        seed = getattr(keys, usage).seed
        assert seed.hex() not in text
        assert base64.b64encode(seed).decode() not in text
    assert (tmp_path / KEYS_FILE).stat().st_mode & 0o777 == 0o600
    assert load_keys(tmp_path, USER, "correct horse") == keys
    with pytest.raises(CrossSigningError, match="MATRIX_STORE_PASSPHRASE"):
        load_keys(tmp_path, USER, "wrong")
    with pytest.raises(CrossSigningError, match="MATRIX_STORE_PASSPHRASE is not set"):
        load_keys(tmp_path, USER, None)
    assert load_keys(tmp_path, "@someone-else:example.org", "correct horse") is None
    assert "seed" not in repr(keys) and keys.master.seed.hex() not in repr(keys)


def test_a_damaged_key_file_is_named_not_trusted(tmp_path: Path) -> None:
    keys = CrossSigningKeys.generate(USER)
    save_keys(tmp_path, keys, None)
    document = json.loads((tmp_path / KEYS_FILE).read_text())
    document["public"]["master"] = CrossSigningKeys.generate(USER).master.public
    (tmp_path / KEYS_FILE).write_text(json.dumps(document))
    with pytest.raises(CrossSigningError, match="damaged"):
        load_keys(tmp_path, USER, None)


def test_identity_pins_and_the_exclusion_rule_are_settings() -> None:
    master = CrossSigningKeys.generate("@alice:example.org").master.public
    env = {
        "MATRIX_ROOM_ID": "!r:example.org",
        "LOCAL_MODE": "1",
        "MATRIX_TRUSTED_DEVICES": f"@alice:example.org:master:{master},@bob:example.org:PHONE:edKey",
        "MATRIX_EXCLUDE_INSECURE_DEVICES": "on",
        "MATRIX_PASSWORD_FILE": "/run/secrets/bot-password",
    }
    settings = load_settings(env)
    assert settings.matrix_trusted_devices == (
        TrustedDevice("@alice:example.org", "master", master),
        TrustedDevice("@bob:example.org", "PHONE", "edKey"),
    )
    assert [d.is_identity for d in settings.matrix_trusted_devices] == [True, False]
    assert settings.matrix_exclude_insecure_devices is True
    assert settings.matrix_password_file == Path("/run/secrets/bot-password")
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                **env,
                "MATRIX_TRUSTED_DEVICES": f"@alice:example.org:master:{master}=",
                "MATRIX_EXCLUDE_INSECURE_DEVICES": "maybe",
            }
        )
    message = str(caught.value)
    assert "MATRIX_TRUSTED_DEVICES: expected the master key" in message
    assert "unpadded" in message
    assert "MATRIX_EXCLUDE_INSECURE_DEVICES:" in message


# --- against Synapse --------------------------------------------------------------------------------


def alert(alert_id: str, kind: str = "threshold") -> Alert:
    return Alert(id=alert_id, kind=kind, plain=f"alert {alert_id}", html=f"<p>alert {alert_id}</p>")  # type: ignore[arg-type]


@pytest.fixture
def room(homeserver: Homeserver, tmp_path: Path) -> Iterator[tuple[Account, Account, Recipient, str]]:
    suffix = uuid.uuid4().hex[:8]
    bot = homeserver.register(f"bot-{suffix}")
    alice = homeserver.register(f"alice-{suffix}")
    bot.write_creds_dir(tmp_path / "creds", homeserver.url)
    recipient = Recipient(homeserver.url, alice, tmp_path / "alice")
    room_id = recipient.create_encrypted_room([bot.user_id])
    yield bot, alice, recipient, room_id
    recipient.close()


@pytest.mark.synapse
def test_the_first_delivery_publishes_the_identity_and_signs_the_device_once(
    homeserver: Homeserver,
    room: tuple[Account, Account, Recipient, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    bot, alice, recipient, room_id = room
    store = tmp_path / "store"
    sink = MatrixSink(tmp_path / "creds", room_id, store, store_passphrase="pass phrase", timeout=10)

    first = sink.deliver([alert("x-1")])
    warm = MatrixSink(tmp_path / "creds", room_id, store, store_passphrase="pass phrase", timeout=10).deliver(
        [alert("x-2")]
    )

    assert first.delivered == ("x-1",) and warm.delivered == ("x-2",)
    assert warm.requests == 3  # the identity costs nothing once the device is signed
    master = assert_chain(keys_query(homeserver, alice, bot.user_id), bot.user_id, bot.device_id)
    user_signing = keys_query(homeserver, bot, bot.user_id)["user_signing_keys"][bot.user_id]
    assert signed_by(user_signing, bot.user_id, master)
    record = json.loads((store / IDENTITY_FILE).read_text())
    assert record["master"] == master and record["signed_devices"] == [bot.device_id]
    assert recipient.history(room_id).bodies() == ["alert x-1", "alert x-2"]
    messages = [r.getMessage() for r in caplog.records if r.name == SINK_LOGGER]
    assert sum("signed the bot's device" in m for m in messages) == 1
    # Public values only outside the encrypted key file; no seed anywhere in the log.
    keys = load_keys(store, bot.user_id, "pass phrase")
    assert keys is not None and keys.master.public == master
    for usage in ("master", "self_signing", "user_signing"):
        seed = getattr(keys, usage).seed
        for text in (caplog.text, (store / IDENTITY_FILE).read_text(), (store / KEYS_FILE).read_text()):
            assert seed.hex() not in text
    assert bot.access_token not in caplog.text


@pytest.mark.synapse
def test_a_foreign_identity_is_left_alone_and_said_once(
    homeserver: Homeserver,
    room: tuple[Account, Account, Recipient, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    bot, _, recipient, room_id = room
    foreign = CrossSigningKeys.generate(bot.user_id)
    homeserver.admin_request(bot, "POST", "/_matrix/client/v3/keys/device_signing/upload", foreign.upload_body())
    store = tmp_path / "store"

    reports = [
        MatrixSink(tmp_path / "creds", room_id, store, timeout=10).deliver([alert(f"f-{n}", kind)])
        for n, kind in enumerate(("armed", "threshold"))
    ]

    assert [r.delivered for r in reports] == [("f-0",), ("f-1",)]
    assert reports[1].requests == 3
    published = keys_query(homeserver, bot, bot.user_id)
    assert only_key(published["master_keys"][bot.user_id]) == foreign.master.public  # untouched
    warnings = [r.getMessage() for r in caplog.records if r.name == SINK_LOGGER and r.levelno == logging.WARNING]
    notices = [w for w in warnings if "--reset-cross-signing" in w]
    assert len(notices) == 1 and foreign.master.public in notices[0]
    armed, threshold = recipient.history(room_id).decrypted
    assert "matrix-login --reset-cross-signing" in armed.body and foreign.master.public in armed.body
    assert "reset-cross-signing" not in threshold.body
    report = identity_report((store / IDENTITY_FILE).read_bytes())
    assert report is not None and "--reset-cross-signing" in report["problem"]


@pytest.mark.synapse
def test_matrix_login_sets_up_a_signed_device_and_keeps_it(
    homeserver: Homeserver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    localpart = f"bot-{uuid.uuid4().hex[:8]}"
    bot = homeserver.register(localpart)
    password_file = tmp_path / "password"
    password_file.write_text(bot.password + "\n")
    creds = tmp_path / "creds"
    monkeypatch.setenv("MATRIX_CREDS_DIR", str(creds))
    monkeypatch.setenv("STATE_URL", f"file://{tmp_path / 'state'}")
    monkeypatch.setenv("MATRIX_PASSWORD_FILE", str(password_file))
    monkeypatch.setenv("MATRIX_STORE_PASSPHRASE", "store secret")
    argv = ["matrix-login", "--homeserver", homeserver.url, "--user", localpart]

    assert cli_main(argv) == 0
    first = capsys.readouterr()
    device_id = (creds / "device_id").read_text().strip()
    token = (creds / "access_token").read_text().strip()
    assert {p.name: p.stat().st_mode & 0o777 for p in creds.iterdir()} == dict.fromkeys(
        ("homeserver_url", "user_id", "access_token", "device_id"), 0o600
    )
    master = assert_chain(keys_query(homeserver, bot, bot.user_id), bot.user_id, device_id)
    assert f"device: {device_id}" in first.out and f"master key: {master}" in first.out
    assert f"{bot.user_id}:master:{master}" in first.out
    assert (tmp_path / "state" / "nio" / f"{bot.user_id}_{device_id}.db").exists()

    assert cli_main(argv) == 0  # again: the same device, the same identity
    again = capsys.readouterr()
    assert (creds / "device_id").read_text().strip() == device_id
    assert f"keeping the working device {device_id}" in again.out and master in again.out

    assert cli_main([*argv, "--new-device"]) == 0
    new_device = (creds / "device_id").read_text().strip()
    assert new_device != device_id
    assert assert_chain(keys_query(homeserver, bot, bot.user_id), bot.user_id, new_device) == master

    assert cli_main([*argv, "--reset-cross-signing"]) == 0
    reset = capsys.readouterr()
    new_master = assert_chain(keys_query(homeserver, bot, bot.user_id), bot.user_id, new_device)
    assert new_master != master and f"master key: {new_master}" in reset.out

    for output in (first, again, reset):
        for secret in (bot.password, token, "store secret"):
            assert secret not in output.out + output.err
    snapshot = collect(
        load_settings({"LOCAL_MODE": "1", "ALERT_SINK": "stdout", "STATE_URL": f"file://{tmp_path / 'state'}"})
    )
    status = snapshot.to_json()
    assert status["matrix_identity"]["master_key"] == new_master
    assert f"master key {new_master}" in format_status(snapshot)


def test_matrix_login_without_a_password_source_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MATRIX_CREDS_DIR", str(tmp_path / "creds"))
    monkeypatch.setenv("STATE_URL", f"file://{tmp_path / 'state'}")
    monkeypatch.delenv("MATRIX_PASSWORD_FILE", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # no terminal to prompt on

    code = cli_main(["matrix-login", "--homeserver", "http://127.0.0.1:9", "--user", "bot"])

    assert code == 2
    assert "MATRIX_PASSWORD_FILE" in capsys.readouterr().err
    assert not (tmp_path / "creds").exists()
