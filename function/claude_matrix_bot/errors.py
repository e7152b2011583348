"""The project's exceptions: one base, a few families.

Adapters turn library failures (httpx, nio response values, boto3, GCS, the
Kubernetes client) into these at the boundary, so the cycle only ever has to
reason about this small vocabulary. Messages never carry a secret.
"""

from __future__ import annotations


class BotError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(BotError):
    """The environment is unusable; raised before any I/O."""


# --- upstream: the Anthropic usage and token endpoints -----------------------


class UpstreamError(BotError):
    """The Anthropic API did not give us a usable answer."""

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
    """A well-formed answer from which no bucket with a number can be read (DESIGN §1,
    "never silent"): a failed cycle on every cycle, counted by the health rules."""

    hint = (
        "check that the account still has a Claude Pro/Max subscription; if it does, the usage "
        "endpoint changed its answer: look for a newer release of the bot"
    )


class TokenRefreshError(UpstreamError):
    """The token endpoint refused or failed; `invalid_grant` means re-bootstrap."""


# --- storage -------------------------------------------------------------------


class StorageError(BotError):
    """The state store or token store failed (I/O, permissions, corrupt data)."""


class StorageConflict(StorageError):
    """A compare-and-swap write lost a race: somebody else wrote first."""


class LeaseHeld(StorageError):
    """Another live cycle holds the lease; this one must do nothing."""


class StateSchemaError(StorageError):
    """`state.json` has a schema this release does not know; it is left untouched."""


# --- delivery -------------------------------------------------------------------


class DeliveryError(BotError):
    """The alert sink could not deliver; the alerts stay in the outbox."""
