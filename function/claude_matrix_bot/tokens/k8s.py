"""The OAuth tokens in a Kubernetes Secret (when LOCAL_MODE is off).

The Secret holds the keys `accessToken`, `refreshToken` and `expiresAt` (Unix
ms), the same names as the files in OAUTH_TOKENS_DIR (LOCAL_MODE). We read it
through the API only, and the manifests do not mount it: kubelet refreshes mounted
Secrets lazily, so a file lags behind our own writes and a stale refresh token is a
spent one. A write-back the API does not answer is retried (k8s_write.py).

Writes are compare-and-swap on `metadata.resourceVersion`: the JSON merge patch
carries the version we read, and the API server answers 409 Conflict when the
Secret moved on since (docs/design.md §5). Least privilege: we only ever get and patch
this one Secret, so a Role with `resourceNames: [<name>]` suffices.

Several accounts (docs/design.md §6): one Secret holds every account's triple under
`<account>.accessToken`, `<account>.refreshToken`, `<account>.expiresAt`, and
each account has its own refresh claim. An account's write is still a patch
conditional on the Secret's resourceVersion, but a 409 caused by a write to
*other* keys (another account's refresh, a claim) is not a lost race for this
account: it re-reads, checks that its own three keys are as it read them, and
patches again with the new resourceVersion. Only a change of its own keys is a
`StorageConflict`. So two accounts refreshing at once both keep their tokens.

Secrets never leave through errors: the client's `ApiException` prints the
response body (the Secret's data on a GET) and headers, so we keep only its
status and raise our own errors `from None`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import ConfigError, StorageConflict, StorageError
from .base import OAuthTokens, StoredTokens, to_unix_ms
from .k8s_api import (
    CLAIM_ANNOTATION,
    OWN_KEYS_SEPARATOR,
    ApiUnavailable,
    api_from_environment,
    b64,
    check_name,
    check_namespace,
    fingerprint_of,
    network_reason,
    parse_secret,
    raise_for_status,
    read_claim,
    read_namespace_file,
    resource_version,
    to_millisecond,
)
from .k8s_write import WRITE_BACK_BUDGET_SEC, WRITE_RETRY_DELAYS, write_retrying

if TYPE_CHECKING:
    from kubernetes.client import CoreV1Api

log = logging.getLogger(__name__)

# Key names in the Secret, not secrets themselves.
ACCESS_TOKEN_KEY = "accessToken"  # noqa: S105
REFRESH_TOKEN_KEY = "refreshToken"  # noqa: S105
EXPIRES_AT_KEY = "expiresAt"
SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

# An explicit content type: the generated client would otherwise pick one from
# a list (json-patch, rewritten to strategic-merge for dict bodies in v37).
MERGE_PATCH = "application/merge-patch+json"
FIELD_MANAGER = "claude-matrix-bot"
CLAIM_TTL = timedelta(seconds=90)  # longer than one refresh plus the write-back, with their timeouts
CLAIM_WAIT = timedelta(seconds=30)
CLAIM_POLL = timedelta(seconds=0.5)
# An account's write re-tried after 409s caused by other keys' writers; each retry
# follows a fresh read, so this bounds a pathological storm, not normal contention.
MAX_OTHER_WRITER_RETRIES = 8
# (connect, read) seconds: a hung API server must not hang the cycle.
REQUEST_TIMEOUT = (5.0, 20.0)
# The write-back's retries end this long before the refresh claim expires.
CLAIM_MARGIN_SEC = 15.0


class SecretTokenStore:
    """`TokenStore` backed by one Kubernetes Secret, read and patched through the API."""

    def __init__(
        self,
        name: str,
        namespace: str | None = None,
        api: CoreV1Api | None = None,
        *,
        namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE_FILE,
        claim_ttl: timedelta = CLAIM_TTL,
        claim_wait: timedelta = CLAIM_WAIT,
        claim_poll: timedelta = CLAIM_POLL,
        account: str | None = None,
        write_retry_delays: Sequence[float] = WRITE_RETRY_DELAYS,
        request_timeout: tuple[float, float] = REQUEST_TIMEOUT,
    ) -> None:
        check_name(name)
        context_namespace: str | None = None
        if api is None:
            api, context_namespace = api_from_environment()
        resolved = namespace or read_namespace_file(namespace_file) or context_namespace
        if not resolved:
            raise ConfigError(
                "K8S_NAMESPACE: not set, and the ServiceAccount namespace file "
                f"{namespace_file} is not there (not running in a pod?); set K8S_NAMESPACE"
            )
        check_namespace(resolved)
        self.name = name
        self.namespace = resolved
        self.claim_ttl = claim_ttl
        self.claim_wait = claim_wait
        self.claim_poll = claim_poll
        self.account = account
        self.write_retry_delays = tuple(write_retry_delays)
        self.request_timeout = request_timeout
        self._claim_deadline: float | None = None  # monotonic; set while this store holds the claim
        self._api = api
        prefix = f"{account}." if account else ""
        # The three keys this store owns, in the order the triple is read.
        self.access_key = prefix + ACCESS_TOKEN_KEY
        self.refresh_key = prefix + REFRESH_TOKEN_KEY
        self.expires_key = prefix + EXPIRES_AT_KEY
        self.claim_annotation = f"{CLAIM_ANNOTATION}.{account}" if account else CLAIM_ANNOTATION

    def for_account(self, account: str) -> SecretTokenStore:
        """The same Secret and API client, scoped to one account's keys and claim (docs/design.md §6)."""
        return SecretTokenStore(
            self.name,
            self.namespace,
            self._api,
            claim_ttl=self.claim_ttl,
            claim_wait=self.claim_wait,
            claim_poll=self.claim_poll,
            account=account,
            write_retry_delays=self.write_retry_delays,
            request_timeout=self.request_timeout,
        )

    def __repr__(self) -> str:
        account = f", account={self.account!r}" if self.account else ""
        return f"SecretTokenStore(name={self.name!r}, namespace={self.namespace!r}{account})"

    @property
    def where(self) -> str:
        where = f"Secret {self.namespace}/{self.name}"
        return f"{where} (account {self.account})" if self.account else where

    def _keys(self) -> tuple[str, str, str]:
        return (self.access_key, self.refresh_key, self.expires_key)

    # --- TokenStore -------------------------------------------------------------

    def load(self) -> StoredTokens:
        secret, version = self._read()
        tokens = parse_secret(secret.data or {}, self.where, self._keys())
        log.debug("read OAuth tokens from %s at resourceVersion %s", self.where, version)
        if self.account:
            # The version also pins this account's own keys, so save() can tell
            # another account's write (retry) from a write to ours (conflict).
            version = f"{version}{OWN_KEYS_SEPARATOR}{self._fingerprint(secret)}"
        return StoredTokens(tokens=tokens, version=version)

    def save(self, tokens: OAuthTokens, *, expect_version: str) -> StoredTokens:
        stored = OAuthTokens(
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_at=to_millisecond(tokens.expires_at),
        )
        data = {
            self.access_key: b64(stored.access_token),
            self.refresh_key: b64(stored.refresh_token),
            self.expires_key: b64(str(to_unix_ms(stored.expires_at))),
        }
        # The same write ends our refresh claim (null deletes the annotation in a merge patch).
        drop_claim = {"annotations": {self.claim_annotation: None}}
        if not self.account:
            version = self._write(drop_claim, data, expect_version)
            log.info("wrote OAuth tokens to %s (resourceVersion %s -> %s)", self.where, expect_version, version)
            return StoredTokens(tokens=stored, version=version)
        resource_version, _, own_keys = expect_version.partition(OWN_KEYS_SEPARATOR)
        for _ in range(MAX_OTHER_WRITER_RETRIES):
            try:
                version = self._write(drop_claim, data, resource_version)
            except StorageConflict:
                secret, resource_version = self._read()
                if self._fingerprint(secret) != own_keys:
                    raise StorageConflict(
                        f"{self.where}: its tokens changed since they were read: another writer won"
                    ) from None
                log.info("%s: another writer touched other keys of the Secret; writing again", self.where)
                continue
            log.info("wrote OAuth tokens to %s (resourceVersion %s -> %s)", self.where, resource_version, version)
            return StoredTokens(tokens=stored, version=f"{version}{OWN_KEYS_SEPARATOR}{fingerprint_of(data)}")
        raise StorageError(
            f"{self.where}: the Secret kept changing under {MAX_OTHER_WRITER_RETRIES} writes in a row; "
            "the refreshed tokens could not be written back"
        )

    def _write(self, metadata: dict[str, Any], data: dict[str, str], expect_version: str) -> str:
        """The token write, retried within the claim's time (tokens/k8s_write.py)."""
        deadline = self._claim_deadline or time.monotonic() + WRITE_BACK_BUDGET_SEC
        return write_retrying(
            lambda: self._patch(metadata, data, expect_version=expect_version),
            self._read,
            lambda secret: all((secret.data or {}).get(key) == value for key, value in data.items()),
            delays=self.write_retry_delays,
            deadline=deadline,
            where=self.where,
        )

    def _fingerprint(self, secret: Any) -> str:
        data = secret.data or {}
        return fingerprint_of({key: str(data.get(key) or "") for key in self._keys()})

    # --- the refresh claim (oauth.LockingTokenStore) ---------------------------------------

    @contextlib.contextmanager
    def refresh_lock(self) -> Iterator[None]:
        """Serialise refreshes across pods by claiming the Secret itself.

        Refresh tokens work once, so two runs must not both spend one. The
        claim is an annotation written compare-and-swap: of two runs, one gets
        409 and waits until the winner's save() drops the claim, then re-reads
        and finds the winner's tokens. A claim left by a crashed run expires
        after `claim_ttl`. Needs no permission beyond get/patch on this Secret.
        """
        holder = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + self.claim_wait.total_seconds()
        while True:
            secret, version = self._read()
            claim = read_claim(secret, self.claim_annotation)
            now = datetime.now(UTC)
            if claim is not None and claim[1] > now:
                if time.monotonic() >= deadline:
                    raise StorageError(
                        f"{self.where}: another run ({claim[0]}) is refreshing the tokens until "
                        f"{claim[1].isoformat()}; try again later"
                    )
                time.sleep(self.claim_poll.total_seconds())
                continue
            until = (now + self.claim_ttl).strftime("%Y-%m-%dT%H:%M:%SZ")
            try:
                claimed = self._patch(
                    {"annotations": {self.claim_annotation: f"{holder} {until}"}}, expect_version=version
                )
            except StorageConflict:
                log.info("another run claimed %s first; waiting for its tokens", self.where)
                continue
            log.debug("claimed %s for a refresh at resourceVersion %s", self.where, claimed)
            break
        self._claim_deadline = time.monotonic() + self.claim_ttl.total_seconds() - CLAIM_MARGIN_SEC
        try:
            yield
        finally:
            self._claim_deadline = None
            self._release(holder)

    def _release(self, holder: str) -> None:
        # save() normally dropped the claim already; this covers refreshes that failed.
        # A 409 here is another writer (with several accounts, another account's
        # refresh): read again rather than leave the claim to block us until it expires.
        for _ in range(MAX_OTHER_WRITER_RETRIES):
            try:
                secret, version = self._read()
                claim = read_claim(secret, self.claim_annotation)
                if claim is not None and claim[0] == holder:
                    self._patch({"annotations": {self.claim_annotation: None}}, expect_version=version)
                return
            except StorageConflict:
                continue
            except StorageError as exc:
                log.warning("could not drop the refresh claim on %s (%s); it expires by itself", self.where, exc)
                return
        log.warning(
            "could not drop the refresh claim on %s (the Secret kept changing); it expires by itself", self.where
        )

    # --- API calls, with errors mapped -----------------------------------------------------

    def _read(self) -> tuple[Any, str]:
        """The Secret object (a V1Secret) and its resourceVersion."""
        # Imported here, not at the top: LOCAL_MODE runs never pay for the client.
        from kubernetes.client.exceptions import ApiException

        try:
            secret = self._api.read_namespaced_secret(self.name, self.namespace, _request_timeout=self.request_timeout)
        except ApiException as exc:
            self._raise_for_status(exc, "get")
        except ValueError:
            # A response the client cannot deserialize; its message may quote the data.
            raise StorageError(f"{self.where}: the Kubernetes API answered something that is not a Secret") from None
        except Exception as exc:  # urllib3/socket failures: their messages carry URLs, never data
            raise ApiUnavailable(
                f"cannot reach the Kubernetes API to read {self.where}: {network_reason(exc)}"
            ) from None
        version = resource_version(secret)
        if version is None:
            raise StorageError(f"{self.where}: the API answered without a metadata.resourceVersion")
        return secret, version

    def _patch(self, metadata: dict[str, Any], data: dict[str, str] | None = None, *, expect_version: str) -> str:
        """A JSON merge patch conditional on `expect_version`; returns the new resourceVersion."""
        from kubernetes.client.exceptions import ApiException

        if not expect_version:
            # An empty resourceVersion would make the patch unconditional.
            raise StorageError(f"{self.where}: refusing to write without the resourceVersion it was read at")
        # The precondition: the API server compares it with the live object (409 when it moved on).
        patch: dict[str, Any] = {"metadata": {**metadata, "resourceVersion": expect_version}}
        if data is not None:
            patch["data"] = data
        try:
            secret = self._api.patch_namespaced_secret(
                self.name,
                self.namespace,
                patch,
                field_manager=FIELD_MANAGER,
                _content_type=MERGE_PATCH,
                _request_timeout=self.request_timeout,
            )
        except ApiException as exc:
            self._raise_for_status(exc, "patch", expect_version=expect_version)
        except ValueError:
            raise StorageError(f"{self.where}: the Kubernetes API answered something that is not a Secret") from None
        except Exception as exc:
            # The write may or may not have landed; the next load() tells (its version moves on either way).
            raise ApiUnavailable(
                f"cannot reach the Kubernetes API to write {self.where}: {network_reason(exc)}"
            ) from None
        version = resource_version(secret)
        if version is None:
            raise StorageError(f"{self.where}: the API answered the write without a metadata.resourceVersion")
        return version

    # --- helpers -------------------------------------------------------------------

    def _raise_for_status(self, exc: Any, verb: str, *, expect_version: str | None = None) -> NoReturn:
        raise_for_status(exc, verb, self.where, self.name, self.namespace, self._keys(), expect_version)
