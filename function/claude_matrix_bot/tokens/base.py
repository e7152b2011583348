"""The token-store contract: load the three values, save them compare-and-swap."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


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
