"""The token-store contract: load the three values, save them compare-and-swap."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def to_unix_ms(moment: datetime) -> int:
    """`expiresAt` as Claude Code writes it. Exact (timedelta arithmetic, no float), rounded down."""
    if moment.tzinfo is None:
        raise ValueError("expires_at must be an aware datetime (UTC)")
    return (moment - _EPOCH) // _MILLISECOND


def from_unix_ms(ms: int) -> datetime:
    """Raises OverflowError for a value outside datetime's range."""
    return _EPOCH + ms * _MILLISECOND


BOM = "\ufeff"


def clean_value(text: str) -> str:
    """A stored value as it is meant: a UTF-8 BOM (a Windows editor's) and surrounding
    whitespace (a trailing newline) stripped."""
    return text.strip().lstrip(BOM).strip()


def unusable_token(text: str) -> str | None:
    """Why `text` cannot be sent as a bearer token (None: it can): tokens are printable
    ASCII, and anything else fails only when the header is built (issue 21). The
    reason never quotes the value."""
    if not text:
        return "is empty"
    if any(ch.isspace() for ch in text):
        return "holds more than one token"
    if not all("!" <= ch <= "~" for ch in text):
        return "holds a character a token cannot have (tokens are printable ASCII; value not shown)"
    return None


@dataclass(frozen=True, slots=True)
class OAuthTokens:
    """The Claude OAuth triple. Never printed: repr hides the secrets."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime  # aware UTC; stored as Unix milliseconds (`expiresAt`)

    def secrets(self) -> tuple[str, str]:
        return (self.access_token, self.refresh_token)


@dataclass(frozen=True, slots=True)
class StoredTokens:
    """Tokens plus the opaque version they were read at (for compare-and-swap)."""

    tokens: OAuthTokens
    version: str


class TokenStore(Protocol):
    """Where the tokens live: `OAUTH_TOKENS_DIR` (LOCAL_MODE) or a Kubernetes Secret."""

    def load(self) -> StoredTokens:
        """Read the current tokens. Raise StorageError (clear message) if unusable."""
        ...

    def save(self, tokens: OAuthTokens, *, expect_version: str) -> StoredTokens:
        """Write `tokens` if the store is still at `expect_version`.

        Raise StorageConflict if somebody else wrote in between: the caller then
        re-loads and uses the winner's tokens instead of refreshing again.
        """
        ...
