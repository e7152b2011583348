"""The last resort of the token write-back: a refreshed pair kept in the state store.

Refresh tokens work once (docs/design.md §2): once the token endpoint has answered,
the old refresh token is spent, and a pair that cannot be written back to the token
store (a Kubernetes API outage outlasting the store's own retries) would lock the bot
out for good. So the pair is sealed into `tokens-pending.json` beside `state.json`, the
cycle goes on with it, and the next run that can reach the token store writes it back
and removes the file (issue 21 item 3).

The key: AES-256-GCM under a key derived (HKDF-SHA256, a random salt per file) from the
pair the token store still holds, the one the kept pair replaces. That is the one secret
the next run is sure to have: it reads it from the token store before anything else, and
it needs no setting (MATRIX_STORE_PASSPHRASE is optional and Matrix-only). Whoever can
read the file needs the token store too, which is where the pair was going anyway; and
the spent pair opens nothing at Anthropic. A file sealed under another pair than the one
the store holds (the write-back landed after all, or the tokens were bootstrapped again)
does not open: it is stale and removed. The file never holds a token in clear, and no
log line quotes one.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os

from ..errors import StorageConflict, StorageError
from ..store import ABSENT, BlobStore
from .base import OAuthTokens, StoredTokens, TokenStore, from_unix_ms, to_unix_ms

log = logging.getLogger("claude_matrix_bot.tokens")

PENDING_FILE = "tokens-pending.json"
_FORMAT = "claude-matrix-bot pending tokens v1"


def pending_key(account: str | None) -> str:
    """Beside the account's state.json (docs/design.md §6)."""
    return f"{account}/{PENDING_FILE}" if account else PENDING_FILE


def _key(replaces: OAuthTokens, salt: bytes, where: str) -> bytes:
    # `where` is the file's key under STATE_URL: stable across runs, unlike a mount path.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    material = json.dumps([replaces.access_token, replaces.refresh_token]).encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=f"{_FORMAT} {where}".encode()).derive(material)


def seal(fresh: OAuthTokens, replaces: OAuthTokens, where: str) -> bytes:
    """`fresh` encrypted under a key only `replaces` (and this `where`) gives."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt, nonce = os.urandom(16), os.urandom(12)
    plain = json.dumps(
        {"access": fresh.access_token, "refresh": fresh.refresh_token, "expires_ms": to_unix_ms(fresh.expires_at)}
    ).encode()
    sealed = AESGCM(_key(replaces, salt, where)).encrypt(nonce, plain, _FORMAT.encode())
    fields = {"salt": salt, "nonce": nonce, "sealed": sealed}
    document = {"format": _FORMAT, **{name: base64.b64encode(value).decode() for name, value in fields.items()}}
    return json.dumps(document).encode()


def unseal(data: bytes, current: OAuthTokens, where: str) -> OAuthTokens | None:
    """The kept pair, or None when it was not sealed under `current` (stale) or is unreadable."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        document = json.loads(data)
        if document.get("format") != _FORMAT:
            return None
        salt, nonce, sealed = (base64.b64decode(document[k], validate=True) for k in ("salt", "nonce", "sealed"))
        plain = json.loads(AESGCM(_key(current, salt, where)).decrypt(nonce, sealed, _FORMAT.encode()))
        return OAuthTokens(str(plain["access"]), str(plain["refresh"]), from_unix_ms(int(plain["expires_ms"])))
    except (InvalidTag, ValueError, TypeError, KeyError, AttributeError, OverflowError):
        return None


class SafekeepingTokenStore:
    """A token store whose failed write-back keeps the pair in the state store (see above)."""

    def __init__(self, inner: TokenStore, state: BlobStore, key: str, where: str) -> None:
        self.inner = inner
        self.state = state
        self.key = key
        self.where = where
        self._underlying: OAuthTokens | None = None  # what the token store held at the last load
        self._pending_version: str | None = None  # the kept file seen at the last load

    def load(self) -> StoredTokens:
        stored = self.inner.load()
        self._underlying, self._pending_version = stored.tokens, None
        try:
            data, version = self.state.read(self.key)
        except FileNotFoundError:
            return stored
        kept = unseal(data, stored.tokens, self.key)
        if kept is None:
            log.info("%s: tokens kept in %s are older than the store's; removing them", self.where, self.key)
            self._forget(version)
            return stored
        self._pending_version = version
        try:
            saved = self.inner.save(kept, expect_version=stored.version)
        except StorageConflict:
            raise
        except StorageError as exc:
            log.warning("%s: still cannot write back the tokens kept in %s (%s)", self.where, self.key, exc)
            return StoredTokens(tokens=kept, version=stored.version)
        log.info("%s: wrote back the tokens kept in %s", self.where, self.key)
        self._underlying, self._pending_version = saved.tokens, None
        self._forget(version)
        return saved

    def save(self, tokens: OAuthTokens, *, expect_version: str) -> StoredTokens:
        try:
            saved = self.inner.save(tokens, expect_version=expect_version)
        except StorageConflict:
            raise
        except StorageError as exc:
            if self._underlying is None:
                raise
            self._keep(tokens, self._underlying, exc)
            return StoredTokens(tokens=tokens, version=expect_version)
        self._underlying = saved.tokens
        if self._pending_version is not None:  # a newer pair reached the store: the kept one is stale
            self._forget(self._pending_version)
            self._pending_version = None
        return saved

    def _keep(self, tokens: OAuthTokens, replaces: OAuthTokens, failure: StorageError) -> None:
        try:
            expect = self._pending_version if self._pending_version is not None else ABSENT
            self._pending_version = self.state.write(self.key, seal(tokens, replaces, self.key), expect=expect)
        except StorageError as exc:
            raise StorageError(
                f"refreshed OAuth tokens could not be written back ({failure}) nor kept in the state store "
                f"({exc}); the old refresh token is spent"
            ) from None
        log.warning(
            "%s: the refreshed tokens could not be written back (%s); kept them encrypted in %s under STATE_URL: "
            "the next run writes them back",
            self.where,
            failure,
            self.key,
        )

    def _forget(self, version: str) -> None:
        with contextlib.suppress(StorageError):
            self.state.delete(self.key, expect=version)

    def refresh_lock(self) -> contextlib.AbstractContextManager[None]:
        lock = getattr(self.inner, "refresh_lock", None)
        return lock() if callable(lock) else contextlib.nullcontext()
