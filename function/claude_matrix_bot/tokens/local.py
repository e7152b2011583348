"""LOCAL_MODE: the tokens live as three files in `OAUTH_TOKENS_DIR`.

Files: `accessToken`, `refreshToken`, `expiresAt` (Unix milliseconds, as text;
surrounding whitespace such as a trailing newline is ignored).

The version used for compare-and-swap is a truncated SHA-256 of the three
files' contents, so a write by any other process (another run, an operator
pasting new tokens) is detected, not only writes through this class.

Crash safety. Three files cannot be replaced in one atomic step, so each is
written to a temp file and fsynced first, then the temp files are renamed in
this order, and the directory is fsynced:

1. `refreshToken` first: it is the only value that cannot be recovered. Once
   it is in place, every later crash leaves a usable state: the new refresh
   token has not been spent yet, so the next run can refresh with it.
2. `accessToken` next: a new access token next to the old `expiresAt` at worst
   looks like it expires early, which causes one unnecessary refresh (with the
   new, valid refresh token).
3. `expiresAt` last, so it never claims a lifetime for an access token that is
   not in place: the bot never sends a token it believes valid that is not.

A crash before step 1 leaves the old, complete triple whose refresh token was
spent: that is the one unavoidable window (between the token endpoint's answer
and the first rename), kept as short as an fsync.

Two lock files in the directory: `.tokens.lock` makes the compare and the
renames one step for concurrent writers; `.refresh.lock` is held by the
`TokenManager` around a whole refresh so two processes never spend the same
refresh token. They are separate because flock is per open file: the save
taken inside a refresh must not wait for the refresh's own lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..atomic import fsync_dir, write_temp
from ..errors import StorageConflict, StorageError
from .base import OAuthTokens, StoredTokens, clean_value, from_unix_ms, to_unix_ms, unusable_token

ACCESS_FILE = "accessToken"
REFRESH_FILE = "refreshToken"
EXPIRES_FILE = "expiresAt"
# Rename order on save: the refresh token first (see the module docstring).
WRITE_ORDER = (REFRESH_FILE, ACCESS_FILE, EXPIRES_FILE)
SAVE_LOCK = ".tokens.lock"
REFRESH_LOCK = ".refresh.lock"


def _version(contents: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in (ACCESS_FILE, REFRESH_FILE, EXPIRES_FILE):
        data = contents[name]
        # Length-prefixed, so moving bytes between files changes the version.
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:16]


class DirectoryTokenStore:
    """`TokenStore` on `OAUTH_TOKENS_DIR`; also a `LockingTokenStore`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def for_account(cls, tokens_dir: Path, account: str) -> DirectoryTokenStore:
        """One account's store with several accounts (docs/design.md §6): `OAUTH_TOKENS_DIR/<account>/`,
        with its own locks, so accounts never wait for each other's refresh."""
        return cls(tokens_dir / account)

    def __repr__(self) -> str:
        return f"DirectoryTokenStore({str(self.directory)!r})"

    # --- reading ---------------------------------------------------------------

    def _read_raw(self) -> dict[str, bytes]:
        contents: dict[str, bytes] = {}
        for name in (ACCESS_FILE, REFRESH_FILE, EXPIRES_FILE):
            path = self.directory / name
            try:
                contents[name] = path.read_bytes()
            except FileNotFoundError:
                raise StorageError(
                    f"OAUTH_TOKENS_DIR {self.directory}: file {name} is missing "
                    f"(expected {ACCESS_FILE}, {REFRESH_FILE} and {EXPIRES_FILE})"
                ) from None
            except OSError as exc:
                raise StorageError(f"OAUTH_TOKENS_DIR {self.directory}: cannot read {name}: {exc.strerror}") from None
        return contents

    def _parse(self, contents: dict[str, bytes]) -> OAuthTokens:
        values: dict[str, str] = {}
        for name, data in contents.items():
            try:
                text = clean_value(data.decode("utf-8"))
            except UnicodeDecodeError:
                raise StorageError(f"OAUTH_TOKENS_DIR {self.directory}: file {name} is not UTF-8 text") from None
            if not text:
                raise StorageError(f"OAUTH_TOKENS_DIR {self.directory}: file {name} is empty")
            problem = unusable_token(text) if name != EXPIRES_FILE else None
            if problem:
                raise StorageError(f"OAUTH_TOKENS_DIR {self.directory}: file {name} {problem}")
            values[name] = text
        try:
            expires_ms = int(values[EXPIRES_FILE])
            expires_at = from_unix_ms(expires_ms)
        except (ValueError, OverflowError, OSError):
            raise StorageError(
                f"OAUTH_TOKENS_DIR {self.directory}: file {EXPIRES_FILE} is not a Unix time in milliseconds"
            ) from None
        return OAuthTokens(values[ACCESS_FILE], values[REFRESH_FILE], expires_at)

    def load(self) -> StoredTokens:
        contents = self._read_raw()
        return StoredTokens(self._parse(contents), _version(contents))

    # --- writing ---------------------------------------------------------------

    @contextlib.contextmanager
    def _flock(self, name: str) -> Iterator[None]:
        try:
            fd = os.open(self.directory / name, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(
                f"OAUTH_TOKENS_DIR {self.directory} is not writable ({exc.strerror}); "
                "LOCAL_MODE needs to write refreshed tokens back there"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def refresh_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held around load → refresh → save so no two processes spend one refresh token.

        Taking it fails (StorageError) on a read-only directory, before any
        refresh token is spent whose successor could not be saved.
        """
        return self._flock(REFRESH_LOCK)

    def save(self, tokens: OAuthTokens, *, expect_version: str) -> StoredTokens:
        contents = {
            ACCESS_FILE: tokens.access_token.encode("utf-8"),
            REFRESH_FILE: tokens.refresh_token.encode("utf-8"),
            EXPIRES_FILE: str(to_unix_ms(tokens.expires_at)).encode("ascii"),
        }
        with self._flock(SAVE_LOCK):
            try:
                current = _version(self._read_raw())
            except StorageError:
                current = None
            if current != expect_version:
                raise StorageConflict(f"OAUTH_TOKENS_DIR {self.directory}: the tokens changed since they were read")
            temps: dict[str, str] = {}
            try:
                for name in WRITE_ORDER:
                    temps[name] = str(write_temp(self.directory, contents[name], prefix=f".{name}."))
                for name in WRITE_ORDER:
                    os.replace(temps[name], self.directory / name)
                    del temps[name]
                fsync_dir(self.directory)
            except OSError as exc:
                reason = "disk full" if exc.errno == errno.ENOSPC else exc.strerror
                raise StorageError(f"OAUTH_TOKENS_DIR {self.directory}: cannot write the tokens: {reason}") from None
            finally:
                for tmp in temps.values():
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
        return StoredTokens(tokens, _version(contents))
