"""Alerts as Element reads them: matrix-js-sdk with its Rust crypto, against a real Synapse.

matrix-nio (the other recipient of the suite) ignores cross-signing; Element does not:
an unsigned sender gets a red shield, and under "exclude insecure devices"
(OnlySignedDevicesIsolationMode, MSC4153) nothing it sends decrypts.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from claude_matrix_bot.charts import PNG_SIGNATURE
from claude_matrix_bot.cli import main as cli_main
from claude_matrix_bot.model import Alert
from claude_matrix_bot.settings import TrustedDevice
from claude_matrix_bot.sinks.crosssigning import CrossSigningKeys
from claude_matrix_bot.sinks.identity_record import foreign_identity_notice
from claude_matrix_bot.sinks.matrix import MatrixSink
from devstack.crosssigning_check import assert_chain, keys_query, only_key
from devstack.fakes.anthropic import FakeAnthropic
from devstack.synapse import Account, Homeserver
from tests.element_recipient import ElementDevice, ElementMessage, ensure_installed, versions
from tests.helpers import CliResult, assert_no_secrets, bot_env, issued_secrets, payload, run_cli

pytestmark = [pytest.mark.synapse, pytest.mark.slow]

SINK_LOGGER = "claude_matrix_bot.sinks.matrix"


@pytest.fixture(scope="module", autouse=True)
def _element_installed() -> None:
    """Before the homeserver (conftest) starts: npm ci on a fresh clone or a changed lock file."""
    ensure_installed()


def test_the_recipient_runs_todays_element_crypto() -> None:
    """Element Web and Element X run the Rust crypto 18.x: matrix-js-sdk 42 and later need
    crypto-wasm 18.3.1 or newer (CVE-2026-45056 fixed) and Node 22, pinned by the lock file."""
    found = versions()

    def release(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.lstrip("v").split("-")[0].split("."))

    assert release(found["node"]) >= (22,), found
    assert release(found["matrix-js-sdk"]) >= (42,), found
    assert release(found["@matrix-org/matrix-sdk-crypto-wasm"]) >= (18, 3, 1), found


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


# --- the real CLI: matrix-login, several cycles ----------------------------------------------------

T0 = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
RESET = T0 + timedelta(days=3)


def first_lines(messages: list[ElementMessage]) -> list[str]:
    return [(m.body or "").splitlines()[0] for m in messages]


def test_a_new_device_from_matrix_login_is_signed_and_read_when_only_signed_devices_are_trusted(
    homeserver: Homeserver,
    tmp_path: Path,
    devices: list[ElementDevice],
    anthropic: FakeAnthropic,
    tokens_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`matrix-login`, a cycle, `matrix-login --new-device`, more cycles: the new device is
    signed by the bot's self-signing key, and Element reads it like the first one."""
    localpart = f"bot-{uuid.uuid4().hex[:8]}"
    bot = homeserver.register(localpart)
    alice = homeserver.register(f"alice-{localpart}")
    password_file = tmp_path / "password"
    password_file.write_text(bot.password + "\n")
    creds = tmp_path / "creds"
    env = bot_env(
        tmp_path,
        anthropic.base_url,
        anthropic.token_url,
        ALERT_SINK="matrix",
        MATRIX_CREDS_DIR=str(creds),
        MATRIX_STORE_PASSPHRASE="store secret",
    )
    for name in ("STATE_URL", "MATRIX_CREDS_DIR", "MATRIX_STORE_PASSPHRASE"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("MATRIX_PASSWORD_FILE", str(password_file))
    login = ["matrix-login", "--homeserver", homeserver.url, "--user", localpart]
    outputs: list[str] = []

    def run(minutes: int, weekly: float) -> None:
        anthropic.set_usage(payload(weekly={"seven_day": (weekly, RESET)}), jitter=True)
        result = run_cli(env, "run", now=T0 + timedelta(minutes=minutes), timeout=120)
        outputs.extend([result.stdout, result.stderr])
        assert result.code == 0, result.stderr

    assert cli_main(login) == 0
    first_device = (creds / "device_id").read_text().strip()
    master = assert_chain(keys_query(homeserver, bot, bot.user_id), bot.user_id, first_device)
    laptop = element(homeserver, alice, devices)
    env["MATRIX_ROOM_ID"] = room_id = laptop.create_encrypted_room([bot.user_id])
    run(0, 30.0)  # armed, by the first device

    assert cli_main([*login, "--new-device"]) == 0
    new_device = (creds / "device_id").read_text().strip()
    assert new_device != first_device
    # The same identity signs the new device: device <- self-signing <- master, checked independently.
    assert assert_chain(keys_query(homeserver, alice, bot.user_id), bot.user_id, new_device) == master
    run(10, 52.0)  # passed 50 %, by the new device

    shown = laptop.messages(room_id, bot.user_id, 2)
    assert [(m.decrypted, m.shield, m.shield_reason) for m in shown] == [(True, "NONE", None)] * 2
    assert first_lines(shown) == ["📊 Claude usage watch armed", "🟠 Weekly (all models) usage passed 50%"]
    assert [m.sender_device for m in shown] == [first_device, new_device]
    status = laptop.device_status(bot.user_id, new_device)
    assert status["known"] and status["signed_by_owner"] is True
    laptop.set_isolation("only_signed")
    assert [m.decrypted for m in laptop.messages(room_id, bot.user_id, 2)] == [True, True]
    # A phone that runs with the rule from the start reads the new device's next alert.
    phone = element(homeserver, alice, devices, isolation="only_signed")
    run(20, 81.0)
    [latest] = [m for m in phone.messages(room_id, bot.user_id, 3) if m.sender_device == new_device and m.decrypted]
    assert (first_lines([latest]), latest.shield) == (["🔴 Weekly (all models) usage passed 80%"], "NONE")

    login_output = capsys.readouterr()
    assert_no_secrets(
        issued_secrets(anthropic) | {bot.password, "store secret", (creds / "access_token").read_text().strip()},
        *outputs,
        login_output.out,
        login_output.err,
    )


def test_a_foreign_identity_is_kept_alerts_still_decrypt_and_the_warning_is_said_once(
    homeserver: Homeserver,
    tmp_path: Path,
    devices: list[ElementDevice],
    anthropic: FakeAnthropic,
    tokens_dir: Path,
) -> None:
    """The account already has a master key the bot does not hold (uploaded before the bot's
    first delivery): several cycles later it is still that key, every alert went out and
    decrypts in Element's default mode (red shield), and the notice was said once in the
    log and once in the armed message, while `status` keeps showing it."""
    bot, alice = users(homeserver, tmp_path)
    foreign = CrossSigningKeys.generate(bot.user_id)
    homeserver.admin_request(bot, "POST", "/_matrix/client/v3/keys/device_signing/upload", foreign.upload_body())
    laptop = element(homeserver, alice, devices)
    room_id = laptop.create_encrypted_room([bot.user_id])
    env = bot_env(
        tmp_path,
        anthropic.base_url,
        anthropic.token_url,
        ALERT_SINK="matrix",
        MATRIX_ROOM_ID=room_id,
        MATRIX_CREDS_DIR=str(tmp_path / "creds"),
    )
    notice = foreign_identity_notice(bot.user_id, foreign.master.public)
    runs: list[CliResult] = []
    statuses: list[CliResult] = []

    # armed, quiet, passed 50 %, passed 80 %: each cycle its own process, as in production.
    for minutes, weekly in ((0, 30.0), (5, 31.0), (10, 52.0), (15, 81.0)):
        anthropic.set_usage(payload(weekly={"seven_day": (weekly, RESET)}), jitter=True)
        result = run_cli(env, "run", now=T0 + timedelta(minutes=minutes), timeout=120)
        assert result.code == 0, result.stderr
        runs.append(result)
        statuses.append(run_cli(env, "status", now=T0 + timedelta(minutes=minutes + 1)))

    published = keys_query(homeserver, alice, bot.user_id)
    assert only_key(published["master_keys"][bot.user_id]) == foreign.master.public  # untouched
    assert [r.stderr.count(notice) for r in runs] == [1, 0, 0, 0]
    for status in statuses:
        assert status.code == 0, status.stderr
        assert status.stdout.count(notice) == 1
    shown = laptop.messages(room_id, bot.user_id, 3)
    assert first_lines(shown) == [
        "📊 Claude usage watch armed",
        "🟠 Weekly (all models) usage passed 50%",
        "🔴 Weekly (all models) usage passed 80%",
    ]
    assert [(m.body or "").count(notice) for m in shown] == [1, 0, 0]
    # What the notice says Element does: decrypts, with a red shield...
    assert [(m.decrypted, m.shield, m.shield_reason) for m in shown] == [(True, "RED", "UNSIGNED_DEVICE")] * 3
    # ...and nothing at all once only signed devices are trusted.
    laptop.set_isolation("only_signed")
    assert [m.failure for m in laptop.messages(room_id, bot.user_id, 3)] == ["UNSIGNED_SENDER_DEVICE"] * 3
    texts = [text for r in runs + statuses for text in (r.stdout, r.stderr)]
    assert_no_secrets(issued_secrets(anthropic) | {bot.access_token}, *texts)


def test_two_accounts_alerts_reach_element_in_one_session_each_led_by_its_name(
    homeserver: Homeserver, tmp_path: Path, devices: list[ElementDevice], anthropic: FakeAnthropic
) -> None:
    """ACCOUNTS=work,priv (docs/design.md §6): each cycle delivers both accounts' alerts through one
    Matrix session, and Element reads every one led by its account's name, with that
    account's numbers."""
    bot, alice = users(homeserver, tmp_path)
    for name in ("work", "priv"):
        anthropic.write_tokens_dir(tmp_path / "tokens" / name, account=name)
    laptop = element(homeserver, alice, devices)
    room_id = laptop.create_encrypted_room([bot.user_id])
    env = bot_env(
        tmp_path,
        anthropic.base_url,
        anthropic.token_url,
        ACCOUNTS="work,priv",
        ALERT_SINK="matrix",
        MATRIX_ROOM_ID=room_id,
        MATRIX_CREDS_DIR=str(tmp_path / "creds"),
        LOG_LEVEL="DEBUG",  # the sink numbers its requests: "matrix request 1" opens a session
    )
    runs: list[CliResult] = []

    def cycle(minutes: int, work: float, priv: float) -> CliResult:
        anthropic.set_usage(payload(weekly={"seven_day": (work, RESET)}), jitter=True, account="work")
        anthropic.set_usage(payload(weekly={"seven_day": (priv, RESET)}), jitter=True, account="priv")
        result = run_cli(env, "run", now=T0 + timedelta(minutes=minutes), timeout=120)
        assert result.code == 0, result.stderr
        runs.append(result)
        return result

    cycle(0, 36.0, 12.0)  # both armed
    cycle(10, 52.0, 51.0)  # both passed 50 %
    cycle(20, 53.0, 81.0)  # only priv: passed 80 %

    assert [r.stderr.count("matrix request 1:") for r in runs] == [1, 1, 1], "one Matrix session per cycle"
    shown = laptop.messages(room_id, bot.user_id, 5)
    assert all(m.decrypted and m.shield == "NONE" for m in shown)
    assert first_lines(shown) == [
        "work · 📊 Claude usage watch armed",
        "priv · 📊 Claude usage watch armed",
        "work · 🟠 Weekly (all models) usage passed 50%",
        "priv · 🟠 Weekly (all models) usage passed 50%",
        "priv · 🔴 Weekly (all models) usage passed 80%",
    ]
    # Each message carries its own account's numbers, never the other's.
    bodies = [m.body or "" for m in shown]
    assert "Weekly (all models): 36%" in bodies[0] and "12%" not in bodies[0]
    assert "Weekly (all models): 12%" in bodies[1] and "36%" not in bodies[1]
    assert "Now at 52%." in bodies[2] and "Now at 51%." in bodies[3]
    assert "Now at 81%." in bodies[4]
    for message, name in zip(shown, ("work", "priv", "work", "priv", "priv"), strict=True):
        assert (message.formatted_body or "").startswith(f"<b>{name} · ")
    texts = [text for r in runs for text in (r.stdout, r.stderr)]
    assert_no_secrets(issued_secrets(anthropic) | {bot.access_token}, *texts)


def test_the_forecast_chart_downloads_decrypts_and_is_the_picture_the_bot_drew(
    homeserver: Homeserver, tmp_path: Path, devices: list[ElementDevice], anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    """docs/design.md §7 as Element shows it: the m.image after the forecast alert is downloaded from
    the authenticated media API, its ciphertext checked against `file.hashes`, decrypted with
    WebCrypto's AES-CTR, and the PNG is the one a twin bot with the stdout sink, fed the same
    readings at the same instants, reports by `image_sha256`."""
    bot, alice = users(homeserver, tmp_path)
    laptop = element(homeserver, alice, devices)
    room_id = laptop.create_encrypted_room([bot.user_id])
    mpl = str(tmp_path / "mpl")
    env = bot_env(
        tmp_path,
        anthropic.base_url,
        anthropic.token_url,
        ALERT_SINK="matrix",
        MATRIX_ROOM_ID=room_id,
        MATRIX_CREDS_DIR=str(tmp_path / "creds"),
        MPLCONFIGDIR=mpl,
    )
    twin_dir = tmp_path / "twin"
    anthropic.write_tokens_dir(twin_dir / "tokens")
    twin_env = bot_env(twin_dir, anthropic.base_url, anthropic.token_url, MPLCONFIGDIR=mpl)
    twin_alerts: list[dict[str, object]] = []
    outputs: list[str] = []

    def run(which: dict[str, str], now: datetime) -> CliResult:
        result = run_cli(which, "run", now=now, timeout=120)
        assert result.code == 0, result.stderr
        outputs.extend([result.stdout, result.stderr])
        return result

    # A steady burn raises one forecast (as in test_charts); no jitter, so both bots read the same.
    for step in range(9):
        anthropic.set_usage(payload(weekly={"seven_day": (40.0 + 2.5 * step, RESET)}))
        now = T0 + timedelta(minutes=12 * step)
        run(env, now)
        twin_alerts += run(twin_env, now).alerts

    [forecast] = [a for a in twin_alerts if a["kind"] == "forecast"]
    shown = laptop.messages(room_id, bot.user_id, len(twin_alerts) + 1)
    assert all(m.decrypted and m.shield == "NONE" for m in shown)
    assert [m.msgtype for m in shown] == ["m.text"] * len(twin_alerts) + ["m.image"]
    text, image = shown[-2:]
    assert text.body == forecast["plain"], "the picture comes right after its forecast"
    assert image.file is not None and image.info is not None
    assert image.url is None, "encrypted media names its URL only inside `file`"
    assert image.info["mimetype"] == "image/png" and image.info["size"] == forecast["image_bytes"]

    picture = laptop.download_image(image)

    assert picture.ciphertext_sha256 == image.file["hashes"]["sha256"]
    assert picture.data.startswith(PNG_SIGNATURE)
    assert picture.sha256 == hashlib.sha256(picture.data).hexdigest() == forecast["image_sha256"]
    assert len(picture.data) == forecast["image_bytes"]
    assert_no_secrets(issued_secrets(anthropic) | {bot.access_token}, *outputs)


def test_with_two_accounts_a_foreign_identity_is_said_in_one_armed_message(
    homeserver: Homeserver, tmp_path: Path, devices: list[ElementDevice], anthropic: FakeAnthropic
) -> None:
    """Both accounts arm in the same delivery: the notice about the account's foreign
    identity belongs to the bot's Matrix account, not to either Claude account, so it is
    said once, in the first armed message."""
    bot, alice = users(homeserver, tmp_path)
    foreign = CrossSigningKeys.generate(bot.user_id)
    homeserver.admin_request(bot, "POST", "/_matrix/client/v3/keys/device_signing/upload", foreign.upload_body())
    for name in ("work", "priv"):
        anthropic.write_tokens_dir(tmp_path / "tokens" / name, account=name)
        anthropic.set_usage(payload(weekly={"seven_day": (20.0, RESET)}), account=name)
    laptop = element(homeserver, alice, devices)
    room_id = laptop.create_encrypted_room([bot.user_id])
    env = bot_env(
        tmp_path,
        anthropic.base_url,
        anthropic.token_url,
        ACCOUNTS="work,priv",
        ALERT_SINK="matrix",
        MATRIX_ROOM_ID=room_id,
        MATRIX_CREDS_DIR=str(tmp_path / "creds"),
    )
    notice = foreign_identity_notice(bot.user_id, foreign.master.public)

    result = run_cli(env, "run", now=T0, timeout=120)

    assert result.code == 0, result.stderr
    assert result.stderr.count(notice) == 1
    shown = laptop.messages(room_id, bot.user_id, 2)
    assert first_lines(shown) == ["work · 📊 Claude usage watch armed", "priv · 📊 Claude usage watch armed"]
    assert [(m.body or "").count(notice) for m in shown] == [1, 0]
