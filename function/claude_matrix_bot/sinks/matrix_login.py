"""`claude-matrix-bot matrix-login`: the one-time Matrix setup (docs/design.md §3).

Logs the bot's account in as a dedicated device (password from MATRIX_PASSWORD_FILE or
a prompt, never argv, never echoed), writes the four MATRIX_CREDS_DIR files (0600),
creates the device's key store under STATE_URL, publishes the account's cross-signing
identity and signs the device with it, then prints what a person should compare: the
device id and keys, and the master key.

Run again, it keeps a working device (and finishes its setup if need be); a device that
no longer works (token revoked, key store lost) is replaced; `--new-device` replaces a
working one; `--reset-cross-signing` replaces the account's identity (the homeserver
asks for the password: user-interactive auth).
"""

from __future__ import annotations

import getpass
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import httpx

from ..atomic import replace_file
from ..errors import ConfigError, DeliveryError
from ..logs import Redactor
from ..settings import Settings
from ..url_policy import public_url
from .matrix.credentials import CREDENTIAL_FILES, MatrixCredentials, _Stopped

if TYPE_CHECKING:
    from .matrix.sink import PrimeReport

DEVICE_NAME = "claude-matrix-bot"


@dataclass(frozen=True, slots=True)
class LoginRequest:
    homeserver_url: str
    user: str  # localpart or full user id
    new_device: bool = False
    reset_cross_signing: bool = False


def matrix_login(settings: Settings, request: LoginRequest, redactor: Redactor, out: TextIO | None = None) -> int:
    """Do the setup; 0 when the device is ready and cross-signed, 1 otherwise."""
    # The current sys.stdout, not the one at import time (that stream may be closed since).
    out = out or sys.stdout
    from ..compose import matrix_sink, open_key_store
    from ..store import open_store

    homeserver = request.homeserver_url.rstrip("/")
    creds_dir = settings.matrix_creds_dir
    existing = _working_credentials(creds_dir, homeserver)
    password: str | None = None
    store = open_store(settings.state_url)
    with open_key_store(store) as key_dir:
        reason = None if existing is None else _unusable(existing, key_dir)
        if existing is not None and reason is None and not request.new_device:
            print(f"keeping the working device {existing.device_id} of {existing.user_id}", file=out)
            creds = existing
        else:
            if existing is not None and reason is not None:
                print(f"replacing device {existing.device_id}: {reason}", file=out)
            password = _password(settings, redactor)
            creds = _log_in(homeserver, request.user, password, redactor)
            _write_credentials(creds_dir, creds)
            print(f"logged in {creds.user_id} as a new device {creds.device_id}; credentials in {creds_dir}", file=out)
        if request.reset_cross_signing and password is None:
            password = _password(settings, redactor)
        sink = matrix_sink(settings, key_dir, room_id="", redactor=redactor)
        report = sink.prime(password=password, reset_cross_signing=request.reset_cross_signing)
    if report.error is not None:
        print(f"claude-matrix-bot: matrix-login: {report.error}", file=sys.stderr)
        return 1
    return _said(report, out)


def _said(report: PrimeReport, out: TextIO) -> int:
    """What `prime` did, for the person at the terminal: 0 when the device is cross-signed."""
    outcome = report.outcome
    print(f"device: {report.device_id} (ed25519 {report.device_ed25519})", file=out)
    if outcome is None or outcome.foreign_master:
        foreign = outcome.foreign_master if outcome else None
        print(
            f"claude-matrix-bot: matrix-login: the account already has a cross-signing identity (master key "
            f"{foreign}) the bot does not hold, so its device stays unsigned (a red shield in Element). If the "
            "account is the bot's alone, run again with --reset-cross-signing.",
            file=sys.stderr,
        )
        return 1
    if outcome.needs_password:
        print("claude-matrix-bot: matrix-login: the homeserver wants the password; try again", file=sys.stderr)
        return 1
    if outcome.signature_problem:
        print(f"claude-matrix-bot: matrix-login: {outcome.signature_problem}", file=sys.stderr)
        return 1
    state = "new" if outcome.created else "existing"
    print(f"cross-signing identity ({state}), master key: {outcome.master}", file=out)
    print(f"  fingerprint: {_grouped(outcome.master or '')}", file=out)
    print(
        "Compare it with what Element shows for the bot before you verify it; recipients can pin it with\n"
        f"  MATRIX_TRUSTED_DEVICES={report.user_id}:master:{outcome.master}   (on the sending side: see README)",
        file=out,
    )
    return 0


def _grouped(key: str) -> str:
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


def _working_credentials(creds_dir: Path, homeserver: str) -> MatrixCredentials | None:
    try:
        creds = MatrixCredentials.from_dir(creds_dir)
    except _Stopped:
        return None
    return creds if creds.homeserver_url == homeserver else None


def _unusable(creds: MatrixCredentials, key_dir: Path) -> str | None:
    """Why the saved device cannot go on (None: it works)."""
    if not (key_dir / f"{creds.user_id}_{creds.device_id}.db").exists():
        return "its key store is not under STATE_URL (it would mint a second identity)"
    try:
        response = httpx.get(
            f"{creds.homeserver_url}/_matrix/client/v3/account/whoami",
            headers={"Authorization": f"Bearer {creds.access_token}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise DeliveryError(
            f"cannot reach the homeserver {public_url(creds.homeserver_url)}: {type(exc).__name__}"
        ) from None
    if response.status_code == 401:
        return "the homeserver no longer accepts its access token"
    if response.status_code != 200:
        raise DeliveryError(f"checking the saved device failed: HTTP {response.status_code}")
    answer = response.json()
    if answer.get("device_id") not in (None, creds.device_id) or answer.get("user_id") != creds.user_id:
        return "its access token belongs to another device"
    return None


def _password(settings: Settings, redactor: Redactor) -> str:
    if settings.matrix_password_file is not None:
        try:
            password = settings.matrix_password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"MATRIX_PASSWORD_FILE: cannot read it ({exc.strerror})") from None
    elif sys.stdin.isatty():
        password = getpass.getpass("Password of the bot's Matrix account: ")
    else:
        raise ConfigError("MATRIX_PASSWORD_FILE: not set, and there is no terminal to ask for the password")
    if not password:
        raise ConfigError("MATRIX_PASSWORD_FILE: the password is empty")
    redactor.add(password)
    return password


def _log_in(homeserver: str, user: str, password: str, redactor: Redactor) -> MatrixCredentials:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
        "initial_device_display_name": DEVICE_NAME,
    }
    try:
        response = httpx.post(f"{homeserver}/_matrix/client/v3/login", json=body, timeout=30)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"cannot reach the homeserver {public_url(homeserver)}: {type(exc).__name__}") from None
    answer = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code != 200:
        what = answer.get("errcode") or f"HTTP {response.status_code}"
        raise DeliveryError(f"the homeserver refused the login of {user}: {what} {answer.get('error', '')}".strip())
    redactor.add(answer["access_token"])
    return MatrixCredentials(
        homeserver_url=homeserver,
        user_id=answer["user_id"],
        device_id=answer["device_id"],
        access_token=answer["access_token"],
    )


def _write_credentials(creds_dir: Path, creds: MatrixCredentials) -> None:
    creds_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    values = {
        "homeserver_url": creds.homeserver_url,
        "user_id": creds.user_id,
        "access_token": creds.access_token,
        "device_id": creds.device_id,
    }
    assert set(values) == set(CREDENTIAL_FILES)
    for name, value in values.items():
        replace_file(creds_dir / name, (value + "\n").encode())  # 0600, durable
