"""The composition root (issue 13): every adapter a cycle needs, built once from Settings
at the entry point (the CLI, the HTTP trigger), and nowhere else.

`run(settings)` is what an entry point calls: `build(settings)` → `Ports`, then
`run_cycle(ports, config, now)`. A configuration error found while building (an
unknown namespace, unusable Kubernetes credentials, a missing extra) is a failed
cycle of its own, found before the lease or any write.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .cycle import CycleConfig, run_cycle
from .errors import ConfigError
from .logs import Redactor
from .model import Reading
from .ports import SINGLE_ACCOUNT, Ports, SinkOpener
from .result import CycleResult
from .settings import Settings
from .settings_matrix import UNENCRYPTED_KEY_STORE
from .sinks.base import AlertSink
from .store import BlobStore, open_store
from .tokens.base import OAuthTokens, StoredTokens, TokenStore

if TYPE_CHECKING:
    from .sinks.matrix import MatrixSink
    from .tokens.oauth import TokenRefresher
    from .usage import UsageClient

log = logging.getLogger(__name__)

NIO_PREFIX = "nio/"


def run(
    settings: Settings,
    *,
    redactor: Redactor | None = None,
    enforce_min_interval: bool = False,
    sink: AlertSink | None = None,
) -> CycleResult:
    """One cycle as an entry point runs it, with the entry point's redactor (a new one
    by default). `sink` replaces the configured one (tests)."""
    redactor = redactor or Redactor()
    try:
        ports = build(settings, redactor, sink=sink)
    except ConfigError as exc:
        return CycleResult.failed(redactor(str(exc)), type(exc))
    except Exception as exc:  # before any state exists to count it in (issue 21)
        from .errors import InternalError
        from .unexpected import describe

        return CycleResult.failed(describe(exc, redactor), InternalError)
    return run_cycle(ports, cycle_config(settings, enforce_min_interval=enforce_min_interval), ports.clock())


def cycle_config(settings: Settings, *, enforce_min_interval: bool) -> CycleConfig:
    return CycleConfig(
        decide=settings.decide_config(),
        accounts=settings.accounts,
        min_interval_sec=settings.min_interval_sec if enforce_min_interval else None,
    )


def build(settings: Settings, redactor: Redactor, *, sink: AlertSink | None = None) -> Ports:
    # The token stores first: their configuration errors come before the state store's.
    stores = token_stores(settings)
    state = open_store(settings.state_url)
    tokens = {name: _Registering(_safekept(name, store, state), redactor) for name, store in stores.items()}
    return Ports(
        state=state,
        tokens=tokens,
        usage=_usage_reader(settings),
        open_sink=_sink_opener(settings, state, sink, redactor),
        redactor=redactor,
        clock=settings.now,
    )


# --- tokens and usage --------------------------------------------------------------


def token_stores(settings: Settings) -> dict[str, TokenStore]:
    """By account name: the one store (SINGLE_ACCOUNT), or one per account of `ACCOUNTS`
    (docs/design.md §6): `OAUTH_TOKENS_DIR/<name>/`, or the one Secret's `<name>.*` keys
    through one API client."""
    if settings.local_mode:
        from .tokens.local import DirectoryTokenStore

        if not settings.accounts:
            return {SINGLE_ACCOUNT: DirectoryTokenStore(settings.oauth_tokens_dir)}
        return {name: DirectoryTokenStore.for_account(settings.oauth_tokens_dir, name) for name in settings.accounts}
    from .tokens.k8s import SecretTokenStore

    assert settings.k8s_oauth_secret_name is not None  # guaranteed by load_settings
    secret = SecretTokenStore(settings.k8s_oauth_secret_name, settings.k8s_namespace)
    if not settings.accounts:
        return {SINGLE_ACCOUNT: secret}
    return {name: secret.for_account(name) for name in settings.accounts}


def _safekept(name: str, store: TokenStore, state: BlobStore) -> TokenStore:
    """A refreshed pair the token store refuses is kept in the state store (tokens/pending.py)."""
    from .tokens.pending import SafekeepingTokenStore, pending_key

    account = None if name == SINGLE_ACCOUNT else name
    return SafekeepingTokenStore(store, state, pending_key(account), str(getattr(store, "where", "") or store))


class _Registering:
    """A token store that hands every token it sees to the redactor before anyone can use it."""

    def __init__(self, inner: TokenStore, redactor: Redactor) -> None:
        self.inner = inner
        self.redactor = redactor

    def load(self) -> StoredTokens:
        stored = self.inner.load()
        self.redactor.add(*stored.tokens.secrets())
        return stored

    def save(self, tokens: OAuthTokens, *, expect_version: str) -> StoredTokens:
        self.redactor.add(*tokens.secrets())
        return self.inner.save(tokens, expect_version=expect_version)

    def refresh_lock(self) -> contextlib.AbstractContextManager[None]:
        # Keep the inner store's cross-process refresh lock visible to TokenManager.
        lock = getattr(self.inner, "refresh_lock", None)
        return lock() if callable(lock) else contextlib.nullcontext()


class _UsageReader:
    """The usage client and the token refresher, sharing the process's one HTTP client."""

    def __init__(self, client: UsageClient, refresher: TokenRefresher, leeway_sec: int) -> None:
        self.client = client
        self.refresher = refresher
        self.leeway_sec = leeway_sec

    def read(self, tokens: TokenStore, now: datetime) -> Reading:
        from .tokens.oauth import TokenManager, fetch_with_refresh

        return fetch_with_refresh(TokenManager(tokens, self.refresher, self.leeway_sec), self.client, now)


def _usage_reader(settings: Settings) -> _UsageReader:
    from .httpclient import shared_client
    from .tokens.oauth import TokenRefresher
    from .usage import UsageClient

    # One client per process, kept between the cycles of a warm instance (issue 12).
    http = shared_client()
    agent = settings.anthropic_user_agent
    return _UsageReader(
        UsageClient(
            base_url=settings.anthropic_base_url,
            user_agent=agent,
            client=http,
            banked_resets=settings.banked_resets_enabled,
        ),
        TokenRefresher(token_url=settings.anthropic_token_url, user_agent=agent, client=http),
        settings.oauth_refresh_leeway_sec,
    )


# --- the sink --------------------------------------------------------------------------


def _sink_opener(settings: Settings, state: BlobStore, given: AlertSink | None, redactor: Redactor) -> SinkOpener:
    if given is not None:
        return lambda: contextlib.nullcontext(given)
    if settings.alert_sink == "stdout":
        from .sinks.stdout import StdoutSink

        return lambda: contextlib.nullcontext(StdoutSink())
    return lambda: _open_matrix_sink(settings, state, redactor)


@contextlib.contextmanager
def _open_matrix_sink(settings: Settings, state: BlobStore, redactor: Redactor) -> Iterator[AlertSink]:
    with open_key_store(state) as nio_dir:
        yield matrix_sink(settings, nio_dir, redactor=redactor)


def matrix_sink(
    settings: Settings, store_dir: Path, *, room_id: str | None = None, redactor: Redactor | None = None
) -> MatrixSink:
    """The one place a MatrixSink is built (the cycle's, and matrix-login's with no room)."""
    from .sinks.matrix import MatrixSink

    room = settings.matrix_room_id if room_id is None else room_id
    assert room is not None  # guaranteed by load_settings when the sink is Matrix
    if not settings.matrix_store_passphrase:
        log.warning("%s", UNENCRYPTED_KEY_STORE)
    return MatrixSink(
        creds_dir=settings.matrix_creds_dir,
        room_id=room,
        store_dir=store_dir,
        trusted_devices=settings.matrix_trusted_devices,
        store_passphrase=settings.matrix_store_passphrase,
        exclude_insecure_devices=settings.matrix_exclude_insecure_devices,
        redactor=redactor,
        mention=settings.matrix_mention,
    )


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
