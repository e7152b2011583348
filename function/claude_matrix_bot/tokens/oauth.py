"""Refreshing the Claude OAuth tokens without ever losing the refresh token.

Refresh tokens rotate: each works once (docs/design.md §2). So the rules here are:

1. Write back before use: a refreshed pair is saved to the token store
   (compare-and-swap) before its access token is handed to anybody. If the
   process dies after that, the next run finds the new refresh token.
2. Never spend the same refresh token twice: the refresh happens under the
   store's refresh lock when it has one (`DirectoryTokenStore`), and right
   before spending, the store is re-read; if another run already refreshed,
   its tokens are used instead. Without a lock (a Kubernetes Secret), the
   cycle's lease keeps runs apart, and a lost race is still recovered: a
   `StorageConflict` on save or an `invalid_grant` on refresh both re-read the
   store and take the winner's tokens when there are some.
3. A 401 on the usage call causes at most one refresh and one retry.

Nothing here logs or raises a token.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, runtime_checkable

import httpx

from ..errors import InvalidGrant, StorageConflict, StorageError, TokenRefreshError, Unauthorized
from ..httpclient import AnswerTooLarge, bounded_client, send_bounded
from ..model import Reading
from ..settings import OAUTH_CLIENT_ID
from ..url_policy import public_url
from ..usage import DEFAULT_TIMEOUT, UsageClient
from .base import OAuthTokens, StoredTokens, TokenStore, unusable_token

log = logging.getLogger("claude_matrix_bot.tokens")


# --- the token endpoint -----------------------------------------------------------


class TokenRefresher:
    """Spends one refresh token at the OAuth token endpoint for a new pair."""

    def __init__(
        self,
        token_url: str,
        user_agent: str,
        *,
        client_id: str = OAUTH_CLIENT_ID,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.token_url = token_url
        self.shown_url = public_url(token_url)  # for messages: never a URL's user:password
        self.user_agent = user_agent
        self.client_id = client_id
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client if client is not None else bounded_client(timeout, transport)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> TokenRefresher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def refresh(self, refresh_token: str, now: datetime) -> OAuthTokens:
        """Exchange `refresh_token` for new tokens; `expires_at` = now + expires_in.

        The body is JSON, as Claude Code and other public clients send it. When
        the answer carries no `refresh_token` the server did not rotate, and the
        old one stays valid, so it is kept.
        """
        body = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": self.client_id}
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        try:
            request = self._client.build_request(
                "POST", self.token_url, json=body, headers=headers, timeout=self._timeout
            )
            response = send_bounded(self._client, request)
        except (AnswerTooLarge, httpx.DecodingError) as exc:
            raise TokenRefreshError(f"token endpoint {self.shown_url}: {exc}, refused") from None
        except httpx.TimeoutException as exc:
            raise TokenRefreshError(
                f"token endpoint {self.shown_url} timed out ({type(exc).__name__}); if it did rotate the "
                "refresh token meanwhile, the next run reports invalid_grant and the tokens need re-bootstrapping"
            ) from None
        except httpx.HTTPError as exc:
            raise TokenRefreshError(
                f"token endpoint {self.shown_url} unreachable: {type(exc).__name__}: {exc}; "
                "the stored refresh token is kept for the next run"
            ) from None
        return self._interpret(response, refresh_token, now)

    def _interpret(self, response: httpx.Response, refresh_token: str, now: datetime) -> OAuthTokens:
        status = response.status_code
        if status >= 400:
            raise _refused(response, status, self.user_agent)
        if status != 200:
            raise TokenRefreshError(f"token endpoint answered {status} instead of 200", status=status)
        try:
            answer = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise TokenRefreshError(
                f"token endpoint answered 200 with a body that is not JSON ({len(response.content)} bytes)",
                status=status,
            ) from None
        if not isinstance(answer, dict):
            raise TokenRefreshError("token endpoint answered a JSON value that is not an object", status=status)
        access = answer.get("access_token")
        rotated = answer.get("refresh_token")
        expires_in = answer.get("expires_in")
        if not isinstance(access, str) or not access.strip():
            raise TokenRefreshError("token endpoint answer has no access_token", status=status)
        if rotated is not None and (not isinstance(rotated, str) or not rotated.strip()):
            raise TokenRefreshError("token endpoint answer has a refresh_token that is not a string", status=status)
        for name, value in (("access_token", access), ("refresh_token", rotated)):
            problem = unusable_token(value.strip()) if isinstance(value, str) else None
            if problem:
                raise TokenRefreshError(f"token endpoint answer's {name} {problem}", status=status)
        if (
            isinstance(expires_in, bool)
            or not isinstance(expires_in, int | float)
            or not math.isfinite(expires_in)
            or not 0 < expires_in < 10 * 365 * 86400
        ):
            raise TokenRefreshError("token endpoint answer has no usable expires_in", status=status)
        return OAuthTokens(
            access_token=access.strip(),
            refresh_token=rotated.strip() if isinstance(rotated, str) else refresh_token,
            expires_at=now + timedelta(seconds=float(expires_in)),
        )


def _refused(response: httpx.Response, status: int, user_agent: str) -> TokenRefreshError:
    """The error for a 4xx/5xx answer of the token endpoint."""
    # Only the OAuth error code is quoted, never the body: a token endpoint's answer
    # may echo the refresh token in any encoding (issue 21 item 6).
    code = _oauth_error(response)
    said = f"OAuth error {code}" if code else "no OAuth error code in the answer"
    if status in (400, 401) and code == "invalid_grant":
        return InvalidGrant(
            f"token endpoint answered invalid_grant ({status}): the refresh token was already used or "
            "was revoked; bootstrap the tokens again (log in with Claude Code and copy its "
            "accessToken/refreshToken/expiresAt)",
            status=status,
        )
    if status >= 500:
        return TokenRefreshError(
            f"token endpoint failed ({status}, {said}), the stored refresh token is kept for the next run",
            status=status,
        )
    if status == 403 and not user_agent.startswith(("claude-cli/", "claude-code/")):
        # docs/design.md §2: the CDN in front of it refuses agents that are not Claude Code's.
        return TokenRefreshError(
            f"token endpoint refused the refresh ({status}, {said}); its CDN refuses clients without Claude "
            f"Code's User-Agent, claude-cli/<version> (external, cli) (ANTHROPIC_USER_AGENT is {user_agent!r}); "
            "the stored refresh token is kept",
            status=status,
        )
    return TokenRefreshError(f"token endpoint refused the refresh ({status}, {said})", status=status)


# RFC 6749 §5.2 error codes are words of these characters (`invalid_grant`, `invalid_client`, …).
_OAUTH_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _oauth_error(response: httpx.Response) -> str | None:
    """The RFC 6749 §5.2 `error` code of an error answer, if it has one that is a code word."""
    code = _oauth_error_field(response)
    return code if code is not None and _OAUTH_ERROR_CODE.fullmatch(code) else None


def _oauth_error_field(response: httpx.Response) -> str | None:
    try:
        answer = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(answer, dict):
        error = answer.get("error")
        if isinstance(error, str):
            return error
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return str(error["type"])
    return None


# --- the manager --------------------------------------------------------------------


class Refresher(Protocol):
    def refresh(self, refresh_token: str, now: datetime) -> OAuthTokens: ...


@runtime_checkable
class LockingTokenStore(Protocol):
    """A token store that can serialise refreshes across processes (a directory can, a Secret cannot)."""

    def refresh_lock(self) -> AbstractContextManager[None]: ...


class TokenManager:
    """Hands out a usable access token, refreshing and writing back when needed."""

    def __init__(self, store: TokenStore, refresher: Refresher, leeway_sec: int = 600) -> None:
        self.store = store
        self.refresher = refresher
        self.leeway = timedelta(seconds=leeway_sec)
        # How many refreshes this manager performed (tests and the cycle summary read it).
        self.refreshes = 0

    def _expiring(self, tokens: OAuthTokens, now: datetime) -> bool:
        return tokens.expires_at - now <= self.leeway

    def _guard(self) -> AbstractContextManager[None]:
        if isinstance(self.store, LockingTokenStore):
            return self.store.refresh_lock()
        return contextlib.nullcontext()

    def current(self, now: datetime) -> OAuthTokens:
        """The stored tokens, refreshed first if they expire within the leeway."""
        stored = self.store.load()
        if not self._expiring(stored.tokens, now):
            return stored.tokens
        return self._refresh(stored, now, still_needed=lambda latest: self._expiring(latest.tokens, now))

    def after_unauthorized(self, now: datetime, rejected: OAuthTokens) -> OAuthTokens:
        """New tokens after the API rejected `rejected.access_token` with a 401.

        If another run already stored a different access token, that one is
        returned; otherwise one refresh is forced.
        """
        stored = self.store.load()
        if stored.tokens.access_token != rejected.access_token:
            log.info("the stored access token changed since it was rejected; using the stored one")
            return stored.tokens
        return self._refresh(
            stored, now, still_needed=lambda latest: latest.tokens.access_token == rejected.access_token
        )

    def _refresh(
        self, seen: StoredTokens, now: datetime, *, still_needed: Callable[[StoredTokens], bool]
    ) -> OAuthTokens:
        with self._guard():
            # Re-read under the lock: a run that refreshed while we waited has
            # already spent the refresh token we saw.
            latest = self.store.load()
            if latest.version != seen.version and not still_needed(latest):
                log.info("another run refreshed the tokens meanwhile; using its tokens (no refresh)")
                return latest.tokens
            try:
                fresh = self.refresher.refresh(latest.tokens.refresh_token, now)
            except InvalidGrant:
                winner = self.store.load()
                if winner.tokens.refresh_token != latest.tokens.refresh_token:
                    log.warning("refresh token was already spent by another run; using the tokens it stored")
                    return winner.tokens
                raise
            self.refreshes += 1
            try:
                self.store.save(fresh, expect_version=latest.version)
            except StorageConflict:
                # Somebody wrote between our read and our write: theirs wins, ours is
                # dropped (our new refresh token stays unspent, so nothing is locked out).
                winner = self.store.load()
                log.warning("token store changed while refreshing; using the tokens the other writer stored")
                return winner.tokens
            except StorageError as exc:
                log.error("refreshed tokens could not be saved; the previous refresh token is now spent")
                raise StorageError(
                    f"refreshed OAuth tokens could not be written back ({exc}); the old refresh token is spent, "
                    "so if the next run reports invalid_grant the tokens must be bootstrapped again"
                ) from None
            log.info("OAuth tokens refreshed, access token expires at %s", fresh.expires_at.isoformat())
            return fresh


def fetch_with_refresh(manager: TokenManager, client: UsageClient, now: datetime) -> Reading:
    """current() → fetch; on a 401 one `after_unauthorized()` and one retry.

    Never more than one refresh per call: when the token was just refreshed
    because it was expiring and the brand-new token still gets a 401, that 401
    propagates instead of spending another refresh token.
    """
    refreshes_before = manager.refreshes
    tokens = manager.current(now)
    try:
        return client.fetch(tokens.access_token, now)
    except Unauthorized:
        if manager.refreshes != refreshes_before:
            raise
        log.info("usage endpoint answered 401; refreshing once and retrying")
    retry = manager.after_unauthorized(now, tokens)
    return client.fetch(retry.access_token, now)
