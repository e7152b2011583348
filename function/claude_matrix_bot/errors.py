"""The project's exceptions: one base, a few families.

Adapters turn library failures (httpx, nio response values, boto3, GCS, the
Kubernetes client) into these at the boundary, so the cycle only ever has to
reason about this small vocabulary. Messages never carry a secret.

Each family carries what the shell needs as class attributes, the way h11's
`ProtocolError` carries `error_status_hint`: `failure` (the word in the cycle's
JSON result), `exit_code` (the CLI's, docs/design.md §3), `http_status` (the HTTP
trigger's answer) and `precedence` (with several accounts failing differently, the
cycle reports the family an operator must act on first: the lowest). The entry
points read them; nothing maps strings.
"""

from __future__ import annotations

from typing import ClassVar


class BotError(Exception):
    """Base of every error this project raises on purpose."""

    failure: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500
    precedence: ClassVar[int] = 4


class ConfigError(BotError):
    """The environment is unusable; raised before any I/O."""

    failure = "config"
    exit_code = 2
    http_status = 500
    precedence = 0


class InternalError(BotError):
    """An exception outside every family (a defect, or input nobody foresaw) turned into
    a failure by the entry point (issue 21): exit 1, a JSON 500, and in a cycle counted
    in the health counters like any other failure. Never raised by the code itself."""

    failure = "internal"
    http_status = 500


class MissingExtra(ConfigError, ImportError):
    """A backend's optional dependency is not installed: an ImportError (as fsspec and
    obstore raise it) that names the extra to install, and a configuration failure."""

    def __init__(self, message: str, *, extra: str) -> None:
        super().__init__(f"{message} (pip install 'claude-matrix-bot[{extra}]')")
        self.extra = extra


# --- upstream: the Anthropic usage and token endpoints -----------------------


class UpstreamError(BotError):
    """The Anthropic API did not give us a usable answer."""

    failure = "upstream"
    http_status = 502  # Bad Gateway: our upstream failed us
    precedence = 2

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Unauthorized(UpstreamError):
    """401: the access token is expired or revoked (one refresh, one retry)."""


class Forbidden(UpstreamError):
    """403: usually a token without the `user:profile` scope."""


class RateLimited(UpstreamError):
    """429. `retry_after` is information for the operator; we never sleep on it."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


class ServerError(UpstreamError):
    """5xx from the API."""


class UpstreamTimeout(UpstreamError):
    """Connection refused, reset or timed out."""


class BadResponse(UpstreamError):
    """A body that is not the JSON we expect."""


class NoUsageLimit(BadResponse):
    """A well-formed answer from which no bucket with a number can be read (docs/design.md §1,
    "never silent"): a failed cycle on every cycle, counted by the health rules."""

    hint = (
        "check that the account still has a Claude Pro/Max subscription; if it does, the usage "
        "endpoint changed its answer: look for a newer release of the bot"
    )


class TokenRefreshError(UpstreamError):
    """The token endpoint refused or failed; `invalid_grant` means re-bootstrap."""


class InvalidGrant(TokenRefreshError):
    """The token endpoint said `invalid_grant`: the refresh token was spent or revoked."""


# --- storage -------------------------------------------------------------------


class StorageError(BotError):
    """The state store or token store failed (I/O, permissions, corrupt data).

    A token Secret the ServiceAccount may not read (RBAC 403) is one of these: our
    own deployment is wrong, the Anthropic API is not at fault (so 500, not 502)."""

    failure = "storage"
    http_status = 500
    precedence = 1


class StorageConflict(StorageError):
    """A compare-and-swap write lost a race: somebody else wrote first."""


class LeaseHeld(StorageError):
    """Another live cycle holds the lease; this one must do nothing."""

    # Not a failure of this run: the other cycle does the work (docs/design.md §3).
    failure = "busy"
    exit_code = 0
    http_status = 409


class StateSchemaError(StorageError):
    """`state.json` has a schema this release does not know; it is left untouched."""


class CorruptState(StorageError, ValueError):
    """`state.json` cannot be understood at all: it is moved aside and the bot re-arms.
    (Still a ValueError, which it was before it joined this family.)"""


# --- delivery -------------------------------------------------------------------


class DeliveryError(BotError):
    """The alert sink could not deliver; the alerts stay in the outbox."""

    failure = "delivery"
    http_status = 503  # the homeserver is unavailable; the alerts wait in the outbox
    precedence = 3
