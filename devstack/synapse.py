"""A throwaway Synapse homeserver on 127.0.0.1 for the Matrix tests and the demo.

Synapse lives in its own venv (its pins clash with ours): `SYNAPSE_PYTHON` names that
venv's python, else the repository's own `.venv-synapse` (what `make synapse` builds) is
used, so plain `pytest` on a clone finds it. One homeserver per test session;
`stop()` / `start()` keep the data directory and the port, so a test can take the
homeserver away mid-scenario and bring the very same one back.

As a script, `python -m devstack.synapse [DIR]` starts one, registers `@bot` and
`@alice`, prints their credentials as JSON and serves until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
# What `make synapse` builds (Makefile: SYNAPSE_VENV).
REPO_SYNAPSE_VENV = ".venv-synapse"
SERVER_NAME = "localhost"


@dataclass(frozen=True, slots=True)
class Account:
    """One logged-in device of a user on the test homeserver."""

    user_id: str
    device_id: str
    access_token: str = field(repr=False)
    password: str = field(repr=False)

    def write_creds_dir(self, directory: Path, homeserver_url: str) -> Path:
        """The `MATRIX_CREDS_DIR` layout the bot reads (one value per file)."""
        directory.mkdir(parents=True, exist_ok=True)
        values = {
            "homeserver_url": homeserver_url,
            "user_id": self.user_id,
            "device_id": self.device_id,
            "access_token": self.access_token,
        }
        for name, value in values.items():
            (directory / name).write_text(value + "\n")
        return directory


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SynapseMissing(RuntimeError):
    """No Synapse environment to start a homeserver from."""


def synapse_python(env: Mapping[str, str] | None = None, repo: Path = REPO) -> str:
    """The python of Synapse's venv: `SYNAPSE_PYTHON`, else the repository's `.venv-synapse`."""
    configured = (os.environ if env is None else env).get("SYNAPSE_PYTHON", "").strip()
    python = Path(configured) if configured else repo / REPO_SYNAPSE_VENV / "bin" / "python"
    if not python.exists():
        where = f"SYNAPSE_PYTHON={configured}" if configured else f"{repo / REPO_SYNAPSE_VENV}"
        raise SynapseMissing(
            f"no Synapse environment at {where}: run `make synapse` in {repo} (it builds {REPO_SYNAPSE_VENV}), "
            "or set SYNAPSE_PYTHON to the python of a venv with matrix-synapse installed"
        )
    return str(python)


class Homeserver:
    """A Synapse process with SQLite, one client listener, no federation; media kept on disk."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server_name = SERVER_NAME
        self._shared_secret = secrets.token_urlsafe(24)
        self._process: subprocess.Popen[bytes] | None = None
        self._config_path = data_dir / "homeserver.yaml"
        self._log_path = data_dir / "synapse.log"
        self._write_config()

    # --- lifecycle -------------------------------------------------------------

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_config = self.data_dir / "log.yaml"
        log_config.write_text(
            json.dumps(
                {
                    "version": 1,
                    "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
                    "handlers": {
                        "file": {
                            "class": "logging.FileHandler",
                            "filename": str(self._log_path),
                            "formatter": "plain",
                        }
                    },
                    "root": {"level": "WARNING", "handlers": ["file"]},
                    "disable_existing_loggers": False,
                }
            )
        )
        # Generous rate limits: the tests send bursts; the 429 test uses the admin
        # override API on one user instead of a second homeserver.
        relaxed = {"per_second": 1000, "burst_count": 1000}
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "pid_file": str(self.data_dir / "homeserver.pid"),
            "public_baseurl": self.url + "/",
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(self.data_dir / "homeserver.db")}},
            "log_config": str(log_config),
            "media_store_path": str(self.data_dir / "media"),
            # The charts travel as encrypted media (docs/design.md §7): the recipients download them.
            "enable_media_repo": True,
            "max_upload_size": "10M",
            "signing_key_path": str(self.data_dir / "signing.key"),
            "registration_shared_secret": self._shared_secret,
            "enable_registration": False,
            "report_stats": False,
            "enable_metrics": False,
            "url_preview_enabled": False,
            "presence": {"enabled": False},
            "macaroon_secret_key": secrets.token_urlsafe(24),
            "form_secret": secrets.token_urlsafe(24),
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "rc_message": relaxed,
            "rc_registration": relaxed,
            "rc_login": {"address": relaxed, "account": relaxed, "failed_attempts": relaxed},
            "rc_joins": {"local": relaxed, "remote": relaxed},
            "rc_joins_per_room": relaxed,
            "rc_invites": {"per_room": relaxed, "per_user": relaxed, "per_issuer": relaxed},
            "rc_key_requests": relaxed,
            "rc_room_creation": relaxed,
            "rc_admin_redaction": relaxed,
        }
        # JSON is valid YAML: no YAML library needed on our side.
        self._config_path.write_text(json.dumps(config, indent=2))

    def start(self, timeout: float = 60.0) -> None:
        if self._process is not None:
            raise RuntimeError("homeserver already running")
        python = synapse_python()
        if not (self.data_dir / "signing.key").exists():
            subprocess.run(
                [python, "-m", "synapse.app.homeserver", "-c", str(self._config_path), "--generate-keys"],
                check=True,
                capture_output=True,
                cwd=self.data_dir,
            )
        stderr = (self.data_dir / "stderr.log").open("ab")
        self._process = subprocess.Popen(
            [python, "-m", "synapse.app.homeserver", "-c", str(self._config_path)],
            stdout=stderr,
            stderr=stderr,
            cwd=self.data_dir,
        )
        stderr.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                raise RuntimeError(f"synapse exited during startup; see {self.data_dir / 'stderr.log'}")
            try:
                if httpx.get(self.url + "/_matrix/client/versions", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"synapse did not answer within {timeout}s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def forget_transaction_ids(self) -> int:
        """What Synapse does to a day-old transaction id, now: the rows that map one to its
        event are deleted (with the homeserver stopped) and the restart empties the
        in-memory response cache. The events keep their `unsigned.transaction_id`.
        Returns how many rows were deleted."""
        running = self.running
        self.stop()
        deleted = 0
        with contextlib.closing(sqlite3.connect(self.data_dir / "homeserver.db")) as db, db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table in ("event_txn_id", "event_txn_id_device_id"):
                if table in tables:
                    deleted += db.execute(f"DELETE FROM {table}").rowcount  # noqa: S608 - fixed names
        if running:
            self.start()
        return deleted

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> Homeserver:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- users -----------------------------------------------------------------

    def register(self, localpart: str, *, admin: bool = False, password: str | None = None) -> Account:
        """Create a user through the shared-secret admin API; returns its first device."""
        password = password or secrets.token_urlsafe(12)
        endpoint = self.url + "/_synapse/admin/v1/register"
        nonce = httpx.get(endpoint, timeout=10).json()["nonce"]
        # HMAC-SHA1 over nonce NUL user NUL password NUL admin|notadmin (Synapse admin API docs).
        parts = (nonce, localpart, password, "admin" if admin else "notadmin")
        mac = hmac.new(self._shared_secret.encode(), b"\x00".join(p.encode() for p in parts), hashlib.sha1)
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        response = httpx.post(endpoint, json=body, timeout=30)
        response.raise_for_status()
        data = response.json()
        return Account(data["user_id"], data["device_id"], data["access_token"], password)

    def login(self, account: Account, *, device_id: str | None = None) -> Account:
        """A new device (a new access token) for an existing user."""
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": account.user_id},
            "password": account.password,
        }
        if device_id:
            body["device_id"] = device_id
        response = httpx.post(self.url + "/_matrix/client/v3/login", json=body, timeout=30)
        response.raise_for_status()
        data = response.json()
        return Account(data["user_id"], data["device_id"], data["access_token"], account.password)

    def admin_request(self, admin: Account, method: str, path: str, body: Any = None) -> httpx.Response:
        response = httpx.request(
            method,
            self.url + path,
            json=body,
            headers={"Authorization": f"Bearer {admin.access_token}"},
            timeout=30,
        )
        response.raise_for_status()
        return response

    def throttle_messages(self, admin: Account, user_id: str) -> None:
        """One event per second for `user_id` (the slowest the admin API allows: integers
        only, 0 means unlimited): back-to-back sends get 429 M_LIMIT_EXCEEDED."""
        self.admin_request(
            admin,
            "POST",
            f"/_synapse/admin/v1/users/{user_id}/override_ratelimit",
            {"messages_per_second": 1, "burst_count": 1},
        )

    def unthrottle_messages(self, admin: Account, user_id: str) -> None:
        # Both at 0 means "no limit at all" for this user.
        self.admin_request(
            admin,
            "POST",
            f"/_synapse/admin/v1/users/{user_id}/override_ratelimit",
            {"messages_per_second": 0, "burst_count": 0},
        )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    data_dir = Path(args[0]) if args else Path(tempfile.mkdtemp(prefix="synapse-"))
    with Homeserver(data_dir) as server:
        bot = server.register("bot")
        alice = server.register("alice")
        print(
            json.dumps(
                {
                    "homeserver_url": server.url,
                    "data_dir": str(data_dir),
                    "bot": {"user_id": bot.user_id, "device_id": bot.device_id, "access_token": bot.access_token},
                    "alice": {
                        "user_id": alice.user_id,
                        "device_id": alice.device_id,
                        "password": alice.password,
                    },
                },
                indent=2,
            ),
            flush=True,
        )
        try:
            while server.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
