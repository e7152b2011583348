"""`MATRIX_CREDS_DIR`: the four files a login leaves, read at each delivery."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...errors import DeliveryError

CREDENTIAL_FILES = ("homeserver_url", "user_id", "access_token", "device_id")
LOGIN_HINT = (
    "log in again to get a new device: claude-matrix-bot matrix-login --homeserver {hs} --user {user} "
    "--new-device (README: Matrix setup)"
)


class _Stopped(DeliveryError):
    """Ends a delivery early with a message meant for a person (never a secret)."""


@dataclass(frozen=True, slots=True)
class MatrixCredentials:
    """The files of `MATRIX_CREDS_DIR`. The token is kept out of repr."""

    homeserver_url: str
    user_id: str
    device_id: str
    access_token: str = field(repr=False)

    @classmethod
    def from_dir(cls, directory: Path) -> MatrixCredentials:
        values: dict[str, str] = {}
        problems: list[str] = []
        for name in CREDENTIAL_FILES:
            try:
                values[name] = (directory / name).read_text().strip()
            except OSError as exc:
                problems.append(f"{name} ({exc.strerror or type(exc).__name__})")
                continue
            if not values[name]:
                problems.append(f"{name} (empty)")
        if problems:
            raise _Stopped(f"cannot read the Matrix credentials in {directory}: {', '.join(problems)}")
        return cls(
            homeserver_url=values["homeserver_url"].rstrip("/"),
            user_id=values["user_id"],
            device_id=values["device_id"],
            access_token=values["access_token"],
        )


def login_hint(creds: MatrixCredentials) -> str:
    return LOGIN_HINT.format(hs=creds.homeserver_url, user=creds.user_id)
