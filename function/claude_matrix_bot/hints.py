"""What went wrong and what to do: the words of the degraded alert and of `status`."""

from __future__ import annotations

from collections.abc import Callable

from .errors import (
    BadResponse,
    BotError,
    Forbidden,
    InvalidGrant,
    NoUsageLimit,
    RateLimited,
    ServerError,
    StorageError,
    TokenRefreshError,
    Unauthorized,
    UpstreamTimeout,
)


def explain(exc: BotError, redact: Callable[[str], str]) -> tuple[str, str]:
    """(what went wrong, what to do). The text is redacted: it reaches state.json,
    the room and HTTP answers."""
    return redact(str(exc)), _hint(exc)


def _refresh_hint(exc: TokenRefreshError) -> str:
    if not isinstance(exc, InvalidGrant) and "ANTHROPIC_USER_AGENT" in str(exc):
        return "set ANTHROPIC_USER_AGENT to Claude Code's form, claude-cli/<version> (external, cli), or unset it"
    if not isinstance(exc, InvalidGrant) and (exc.status is None or exc.status >= 500):
        return "the token endpoint is having trouble and the refresh token is kept; nothing to do unless it persists"
    return "re-bootstrap the Claude OAuth tokens (scripts/bootstrap-local.sh) and update the Secret"


def _hint(exc: BotError) -> str:
    if isinstance(exc, TokenRefreshError):
        return _refresh_hint(exc)
    if isinstance(exc, Unauthorized):
        return "the OAuth tokens were revoked or expired: re-bootstrap them"
    if isinstance(exc, Forbidden):
        return "the token lacks the user:profile scope: log in with Claude Code again and re-bootstrap"
    if isinstance(exc, RateLimited):
        return (
            "check that ANTHROPIC_USER_AGENT is Claude Code's form, claude-cli/<version> (external, cli); "
            "otherwise it will pass"
        )
    if isinstance(exc, ServerError | UpstreamTimeout):
        return "the Anthropic API is having trouble; nothing to do unless it persists"
    if isinstance(exc, NoUsageLimit):
        return exc.hint
    if isinstance(exc, BadResponse):
        return "the usage endpoint changed its answer: look for a newer release of the bot"
    if isinstance(exc, StorageError):
        return "check the token Secret, its RBAC Role, or OAUTH_TOKENS_DIR"
    return ""
