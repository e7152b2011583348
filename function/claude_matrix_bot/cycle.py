"""One watch cycle: lease → load state → tokens → fetch → decide → save → deliver → save.

The imperative shell around the pure core. Both entry points (the HTTP function
and the CLI) call `run_cycle` and only translate its `CycleResult`.

Ordering rules (DESIGN §5):
- new alerts are saved in the state's outbox *before* the sink sees them, and
  leave it only once the sink reports them delivered;
- every write is compare-and-swap, and the lease keeps a second trigger out;
- an upstream failure is recorded in the health counters (so the room hears
  about a persistent one) and still lets the outbox drain.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from .core.decide import DecideConfig, decide, drop_delivered, record_failure
from .errors import (
    BadResponse,
    BotError,
    ConfigError,
    CorruptState,
    DeliveryError,
    Forbidden,
    LeaseHeld,
    NoUsageLimit,
    RateLimited,
    ServerError,
    StorageError,
    TokenRefreshError,
    Unauthorized,
    UpstreamError,
    UpstreamTimeout,
)
from .logs import redact, register_secret
from .model import Reading
from .settings import Settings
from .sinks.base import AlertSink
from .state import State, dump_state, parse_state
from .store import ABSENT, BlobStore, open_store
from .tokens.base import OAuthTokens, StoredTokens, TokenStore

log = logging.getLogger("claude_matrix_bot.cycle")

STATE_KEY = "state.json"
NIO_PREFIX = "nio/"
# Shorter than the five-minute schedule, so a crashed run never costs a second tick,
# and far longer than a healthy cycle (seconds).
LEASE_TTL_SEC = 240

CycleStatus = Literal["ok", "failed", "busy", "too_soon"]


@dataclass(frozen=True, slots=True)
class CycleResult:
    status: CycleStatus
    new_alerts: int = 0
    delivered: int = 0
    pending: int = 0
    error: str | None = None
    # The error family of what failed: it says the failure word, the exit code and the
    # HTTP status itself (errors.py).
    family: type[BotError] | None = None
    retry_after: float | None = None
    # With several accounts (DESIGN §6): each account's own summary, by name.
    accounts: tuple[tuple[str, dict[str, Any]], ...] = ()

    @classmethod
    def failed(cls, error: str, family: type[BotError], **counts: Any) -> CycleResult:
        return cls("failed", error=error, family=family, **counts)

    @property
    def failure(self) -> str | None:
        """"upstream", "delivery", "storage", "config": which part failed."""
        return self.family.failure if self.family is not None else None

    @property
    def exit_code(self) -> int:
        """CLI contract (DESIGN §3): 0 when the work is done or there was nothing to do
        (another cycle holding the lease included), non-zero when something failed."""
        if self.status != "failed" or self.family is None:
            return 0
        return self.family.exit_code

    @property
    def http_status(self) -> int:
        """The HTTP trigger's answer (http.py's table)."""
        if self.status == "busy":
            return LeaseHeld.http_status
        if self.status == "too_soon":
            return 429
        if self.status != "failed" or self.family is None:
            return 200
        return self.family.http_status

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "new_alerts": self.new_alerts,
            "delivered": self.delivered,
            "pending": self.pending,
        }
        if self.error:
            out["error"] = self.error
            out["failure"] = self.failure
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        if self.accounts:
            out["accounts"] = dict(self.accounts)
        return out


# --- state -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadedState:
    state: State | None  # None: first run ever
    version: str | None  # None: no file yet


def load_state(store: BlobStore, now: datetime, key: str = STATE_KEY) -> LoadedState:
    """Read state.json (`<account>/state.json` with several accounts). A corrupt file is
    moved aside (never deleted) and the bot re-arms saying so; a future schema raises
    StateSchemaError and is left alone."""
    try:
        data, version = store.read(key)
    except FileNotFoundError:
        return LoadedState(None, None)
    try:
        return LoadedState(parse_state(data), version)
    except CorruptState as exc:
        aside = f"{key}.corrupt-{now:%Y%m%dT%H%M%SZ}"
        with contextlib.suppress(StorageError):
            # Two corrupt files in one second would collide; keep the first copy.
            store.write(aside, data, expect=ABSENT)
        log.warning("%s is unreadable (%s); moved aside to %s and re-arming", key, exc, aside)
        note = f"{key} could not be read ({exc}) and was moved aside to {aside}; starting over."
        return LoadedState(State(note=note), version)


def save_state(store: BlobStore, state: State, version: str | None, key: str = STATE_KEY) -> str:
    return store.write(key, dump_state(state), expect=version if version is not None else ABSENT)


# --- tokens and usage ------------------------------------------------------------


class _RegisteringTokenStore:
    """Registers every token it sees with the log redactor before anyone can use it."""

    def __init__(self, inner: TokenStore) -> None:
        self.inner = inner

    def load(self) -> StoredTokens:
        stored = self.inner.load()
        register_secret(*stored.tokens.secrets())
        return stored

    def save(self, tokens: OAuthTokens, *, expect_version: str) -> StoredTokens:
        register_secret(*tokens.secrets())
        return self.inner.save(tokens, expect_version=expect_version)

    def refresh_lock(self) -> contextlib.AbstractContextManager[None]:
        # Keep the inner store's cross-process refresh lock visible to TokenManager.
        lock = getattr(self.inner, "refresh_lock", None)
        return lock() if callable(lock) else contextlib.nullcontext()


def build_token_store(settings: Settings) -> TokenStore:
    if settings.local_mode:
        from .tokens.local import DirectoryTokenStore

        store: TokenStore = DirectoryTokenStore(settings.oauth_tokens_dir)
    else:
        from .tokens.k8s import SecretTokenStore

        assert settings.k8s_oauth_secret_name is not None  # guaranteed by load_settings
        store = SecretTokenStore.from_settings(settings.k8s_oauth_secret_name, settings.k8s_namespace)
    return _RegisteringTokenStore(store)


def build_token_stores(settings: Settings) -> dict[str, TokenStore]:
    """One token store per account of `ACCOUNTS` (DESIGN §6): `OAUTH_TOKENS_DIR/<name>/`,
    or the one Secret's `<name>.*` keys through one API client."""
    stores: dict[str, TokenStore] = {}
    if settings.local_mode:
        from .tokens.local import DirectoryTokenStore

        for name in settings.accounts:
            stores[name] = _RegisteringTokenStore(DirectoryTokenStore.for_account(settings.oauth_tokens_dir, name))
        return stores
    from .tokens.k8s import SecretTokenStore

    assert settings.k8s_oauth_secret_name is not None  # guaranteed by load_settings
    secret = SecretTokenStore.from_settings(settings.k8s_oauth_secret_name, settings.k8s_namespace)
    for name in settings.accounts:
        stores[name] = _RegisteringTokenStore(secret.for_account(name))
    return stores


def fetch_reading(settings: Settings, now: datetime, token_store: TokenStore | None = None) -> Reading:
    from .httpclient import shared_client
    from .tokens.oauth import TokenManager, TokenRefresher, fetch_with_refresh
    from .usage import UsageClient

    tokens = token_store or build_token_store(settings)
    # One client per process, kept between the cycles of a warm instance (issue 12).
    http = shared_client()
    refresher = TokenRefresher(
        token_url=settings.anthropic_token_url, user_agent=settings.anthropic_user_agent, client=http
    )
    client = UsageClient(base_url=settings.anthropic_base_url, user_agent=settings.anthropic_user_agent, client=http)
    manager = TokenManager(tokens, refresher, settings.oauth_refresh_leeway_sec)
    return fetch_with_refresh(manager, client, now)


def explain(exc: BotError) -> tuple[str, str]:
    """(what went wrong, what to do) for the degraded alert and the status output.
    The text is redacted: it reaches state.json, the room and HTTP answers."""
    what, hint = _explain(exc)
    return redact(what), hint


def _explain(exc: BotError) -> tuple[str, str]:
    if isinstance(exc, TokenRefreshError):
        return str(exc), "re-bootstrap the Claude OAuth tokens (scripts/bootstrap-local.sh) and update the Secret"
    if isinstance(exc, Unauthorized):
        return str(exc), "the OAuth tokens were revoked or expired: re-bootstrap them"
    if isinstance(exc, Forbidden):
        return str(exc), "the token lacks the user:profile scope: log in with Claude Code again and re-bootstrap"
    if isinstance(exc, RateLimited):
        return str(exc), "check that ANTHROPIC_USER_AGENT looks like claude-code/<version>; otherwise it will pass"
    if isinstance(exc, ServerError | UpstreamTimeout):
        return str(exc), "the Anthropic API is having trouble; nothing to do unless it persists"
    if isinstance(exc, NoUsageLimit):
        return str(exc), exc.hint
    if isinstance(exc, BadResponse):
        return str(exc), "the usage endpoint changed its answer: look for a newer release of the bot"
    if isinstance(exc, StorageError):
        return str(exc), "check the token Secret, its RBAC Role, or OAUTH_TOKENS_DIR"
    return str(exc), ""


# --- delivery ----------------------------------------------------------------------


@contextlib.contextmanager
def open_key_store(store: BlobStore) -> Iterator[Path]:
    """The Matrix key store's directory (nio's store, the cross-signing keys): beside
    state.json on a directory store, or a temporary copy of it for S3/GCS that is
    written back (compare-and-swap) on the way out."""
    local = store.local_dir()
    if local is not None:
        nio_dir = Path(local) / NIO_PREFIX.rstrip("/")
        nio_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        yield nio_dir
        return

    from .store.sync import download_tree, upload_tree

    with tempfile.TemporaryDirectory(prefix="cmb-nio-") as tmp:
        nio_dir = Path(tmp)
        versions = download_tree(store, NIO_PREFIX, nio_dir)
        try:
            yield nio_dir
        finally:
            # Write back even after a failed delivery: keys uploaded or Olm sessions
            # created must not be lost, or the next run would mint a new identity.
            upload_tree(store, NIO_PREFIX, nio_dir, versions)


@contextlib.contextmanager
def open_sink(settings: Settings, store: BlobStore) -> Iterator[AlertSink]:
    """The configured sink. For Matrix, the key store comes from `open_key_store`."""
    if settings.alert_sink == "stdout":
        from .sinks.stdout import StdoutSink

        yield StdoutSink()
        return

    from .sinks.matrix import MatrixSink

    token_file = settings.matrix_creds_dir / "access_token"
    with contextlib.suppress(OSError):
        register_secret(token_file.read_text().strip())
    register_secret(settings.matrix_store_passphrase)
    assert settings.matrix_room_id is not None  # guaranteed by load_settings

    with open_key_store(store) as nio_dir:
        yield MatrixSink(
            creds_dir=settings.matrix_creds_dir,
            room_id=settings.matrix_room_id,
            store_dir=nio_dir,
            trusted_devices=settings.matrix_trusted_devices,
            store_passphrase=settings.matrix_store_passphrase,
            exclude_insecure_devices=settings.matrix_exclude_insecure_devices,
        )


def flush_outbox(
    settings: Settings, store: BlobStore, state: State, version: str, sink: AlertSink | None
) -> tuple[State, str, int, str | None]:
    """Deliver what the outbox holds; return (state, version, delivered count, error)."""
    if not state.outbox:
        return state, version, 0, None  # no sink, no Matrix traffic on quiet cycles
    try:
        with contextlib.ExitStack() as stack:
            target = sink if sink is not None else stack.enter_context(open_sink(settings, store))
            report = target.deliver(state.outbox)
    except DeliveryError as exc:
        return state, version, 0, redact(str(exc))
    if report.delivered:
        state = drop_delivered(state, report.delivered)
        version = save_state(store, state, version)
    return state, version, len(report.delivered), redact(report.error) if report.error else None


# --- the cycle -------------------------------------------------------------------------


def run_cycle(
    settings: Settings,
    *,
    store: BlobStore | None = None,
    token_store: TokenStore | None = None,
    sink: AlertSink | None = None,
    enforce_min_interval: bool = False,
    token_stores: dict[str, TokenStore] | None = None,
) -> CycleResult:
    now = settings.now()
    try:
        # Built before the lease and the store: an unknown namespace or unusable
        # Kubernetes credentials are a configuration error, found before any write.
        token_store = token_store or build_token_store(settings)
        store = store or open_store(settings.state_url)
    except ConfigError as exc:
        return CycleResult.failed(str(exc), type(exc))

    from .store.lease import acquire_lease, release_lease

    try:
        lease = acquire_lease(store, holder=f"{os.getpid()}-{uuid.uuid4().hex[:12]}", now=now, ttl_sec=LEASE_TTL_SEC)
    except LeaseHeld as exc:
        log.info("another cycle is running (%s); nothing to do", exc)
        return CycleResult("busy")
    except StorageError as exc:
        log.error("state store unusable: %s", exc)
        return CycleResult.failed(str(exc), type(exc))

    try:
        if settings.accounts:
            from .accounts_cycle import accounts_cycle

            return accounts_cycle(settings, store, now, token_stores, sink, enforce_min_interval)
        return _locked_cycle(settings, store, now, token_store, sink, enforce_min_interval)
    except StorageError as exc:
        log.error("state store failed: %s", exc)
        return CycleResult.failed(redact(str(exc)), type(exc))
    finally:
        try:
            release_lease(store, lease)
        except StorageError as exc:  # expiry frees it anyway
            log.warning("could not release the lease: %s", exc)


def _locked_cycle(
    settings: Settings,
    store: BlobStore,
    now: datetime,
    token_store: TokenStore | None,
    sink: AlertSink | None,
    enforce_min_interval: bool,
) -> CycleResult:
    loaded = load_state(store, now)
    previous = loaded.state
    last_poll = previous.health.last_attempt_at if previous else None
    if enforce_min_interval and last_poll is not None:
        elapsed = (now - last_poll).total_seconds()
        if 0 <= elapsed < settings.min_interval_sec:
            return CycleResult(
                "too_soon",
                pending=len(previous.outbox) if previous else 0,
                retry_after=settings.min_interval_sec - elapsed,
            )

    config = DecideConfig.from_settings(settings)
    upstream_error: BotError | None = None
    try:
        reading = fetch_reading(settings, now, token_store)
    except ConfigError as exc:
        return CycleResult.failed(str(exc), type(exc))
    except (UpstreamError, StorageError) as exc:
        upstream_error = exc
        summary, hint = explain(exc)
        log.error("usage check failed: %s", summary)
        decision = record_failure(previous, summary, hint, now, config)
    else:
        decision = decide(previous, reading, now, config)

    for alert in decision.alerts:
        log.info("alert %s %s%s", alert.kind, alert.id, f" ({alert.bucket})" if alert.bucket else "")
    state = decision.state
    version = save_state(store, state, loaded.version)
    state, version, delivered, delivery_error = flush_outbox(settings, store, state, version, sink)
    if delivery_error:
        log.error("delivery failed, %d alert(s) kept for the next run: %s", len(state.outbox), delivery_error)

    result = CycleResult(
        "ok",
        new_alerts=len(decision.alerts),
        delivered=delivered,
        pending=len(state.outbox),
    )
    if upstream_error is not None:
        retry_after = upstream_error.retry_after if isinstance(upstream_error, RateLimited) else None
        return replace(
            result,
            status="failed",
            error=explain(upstream_error)[0],
            # the error's own family: a token Secret refused by RBAC is "storage", not "upstream"
            family=type(upstream_error),
            retry_after=retry_after,
        )
    if delivery_error:
        return replace(result, status="failed", error=delivery_error, family=DeliveryError)
    return result
