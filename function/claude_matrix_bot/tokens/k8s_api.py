"""The Kubernetes side of the token Secret: the API client from the environment, name
checks, the refresh claim's annotation, version fingerprints, and error texts that
never carry the Secret's data (see k8s.py)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import ConfigError, StorageConflict, StorageError
from .base import OAuthTokens, clean_value, from_unix_ms, to_unix_ms, unusable_token

if TYPE_CHECKING:
    from kubernetes.client import CoreV1Api

# The refresh claim: an annotation on the Secret (see SecretTokenStore.refresh_lock).
CLAIM_ANNOTATION = "claude-matrix-bot/refreshing"

# Secret names are DNS-1123 subdomains, namespaces DNS-1123 labels; checking
# them keeps a typo from becoming a request for some other path.
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def api_from_environment() -> tuple[CoreV1Api, str | None]:
    """A client with in-cluster credentials, else the kubeconfig's (and its context's namespace)."""
    from kubernetes import client, config  # the heavy client only when this store is used

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        pass  # not in a pod: fall back to the kubeconfig, as kubectl does
    else:
        return client.CoreV1Api(client.ApiClient(configuration)), None
    # The library reads KUBECONFIG once, at import; read it now so the
    # environment of this run counts.
    config_file = os.environ.get("KUBECONFIG") or None
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=config_file, client_configuration=configuration, persist_config=False
        )
        _, active = config.list_kube_config_contexts(config_file=config_file)  # type: ignore[no-untyped-call]
    except Exception as exc:  # ConfigException, OSError, YAML errors: none of them carries a token
        raise ConfigError(
            "no Kubernetes credentials: not running in a cluster (no in-cluster ServiceAccount) and "
            f"the kubeconfig ({config_file or '~/.kube/config'}) is unusable: {first_line(exc)}"
        ) from None
    context_namespace = (active or {}).get("context", {}).get("namespace")
    return client.CoreV1Api(client.ApiClient(configuration)), context_namespace or None


def read_namespace_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"K8S_NAMESPACE: not set, and {path} is unreadable ({exc.strerror})") from None


def check_name(name: str) -> None:
    if not name or len(name) > 253 or not _SUBDOMAIN.match(name):
        raise ConfigError(f"K8S_OAUTH_SECRET_NAME: {name!r} is not a valid Secret name (DNS-1123 subdomain)")


def check_namespace(namespace: str) -> None:
    if len(namespace) > 63 or not _LABEL.match(namespace):
        raise ConfigError(f"K8S_NAMESPACE: {namespace!r} is not a valid namespace (DNS-1123 label)")


def read_claim(secret: Any, annotation: str = CLAIM_ANNOTATION) -> tuple[str, datetime] | None:
    """The (holder, until) of a refresh claim on `secret`; an unreadable claim counts as expired."""
    annotations = getattr(getattr(secret, "metadata", None), "annotations", None) or {}
    value = annotations.get(annotation)
    if not value:
        return None
    holder, _, until = str(value).rpartition(" ")
    try:
        return holder, datetime.strptime(until, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


# Between the resourceVersion and the own-keys fingerprint in an account's version.
OWN_KEYS_SEPARATOR = "#"


def fingerprint_of(encoded: Mapping[str, str]) -> str:
    """A short digest of an account's three base64 values (never the values themselves)."""
    digest = hashlib.sha256()
    for key in sorted(encoded):
        value = encoded[key].encode("ascii", "replace")
        digest.update(len(key).to_bytes(4, "big") + key.encode() + len(value).to_bytes(8, "big") + value)
    return digest.hexdigest()[:16]


def resource_version(secret: Any) -> str | None:
    metadata = getattr(secret, "metadata", None)
    version = getattr(metadata, "resource_version", None)
    return str(version) if version else None


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def to_millisecond(moment: datetime) -> datetime:
    # The Secret keeps milliseconds; return what a later load() will read back.
    return from_unix_ms(to_unix_ms(moment))


def network_reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)  # urllib3's MaxRetryError wraps the socket error
    return first_line(reason if isinstance(reason, Exception) else exc)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


class ApiUnavailable(StorageError):
    """The API server did not answer the request (a network error, a timeout) or answered
    5xx / 429: worth another try, and after a write, a read (it may have landed)."""


def raise_for_status(
    exc: Any, verb: str, where: str, name: str, namespace: str, keys: tuple[str, ...], expect_version: str | None
) -> NoReturn:
    # Only the status code and the Status reason: exc.body is the response
    # (a Secret's data on success-shaped errors) and str(exc) prints it.
    status = int(getattr(exc, "status", 0) or 0)
    if status == 409:
        raise StorageConflict(
            f"{where} changed since resourceVersion {expect_version}: another writer won (409 Conflict)"
        ) from None
    if status == 404:
        raise StorageError(
            f"{where} not found (404): create it in namespace {namespace!r} with the keys {', '.join(keys)}"
        ) from None
    if status == 403:
        raise StorageError(
            f"forbidden (403) to {verb} {where}: the ServiceAccount's Role must allow get and patch "
            f"on exactly this Secret (RBAC rule: resources [secrets], resourceNames [{name}], verbs [get, patch])"
        ) from None
    if status == 401:
        raise StorageError(
            f"the Kubernetes API rejected our credentials (401) to {verb} {where}: "
            "check the ServiceAccount token or the kubeconfig user"
        ) from None
    if status == 0:
        raise StorageError(f"cannot talk to the Kubernetes API to {verb} {where} (TLS or request error)") from None
    failure = ApiUnavailable if status >= 500 or status == 429 else StorageError
    raise failure(f"the Kubernetes API answered {status} to {verb} {where}") from None


def parse_secret(data: Mapping[str, str | bytes], where: str, keys: tuple[str, str, str]) -> OAuthTokens:
    """The tokens of a Secret's data, under `keys` (access, refresh, expiry); StorageError naming
    `where` and the key for anything unusable."""
    missing = [k for k in keys if not data.get(k)]
    if missing:
        raise StorageError(f"{where} lacks the key(s) {', '.join(missing)}")
    access_key, refresh_key, expires_key = keys
    values = {key: _decode(data, key, where, token=key != expires_key) for key in keys}
    try:
        millis = int(values[expires_key])
        expires_at = from_unix_ms(millis)
    except (ValueError, OverflowError):
        raise StorageError(f"{where}: key {expires_key} is not a Unix time in milliseconds") from None
    return OAuthTokens(access_token=values[access_key], refresh_token=values[refresh_key], expires_at=expires_at)


def _decode(data: Mapping[str, str | bytes], key: str, where: str, *, token: bool) -> str:
    try:
        text = base64.b64decode(data[key], validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise StorageError(f"{where}: key {key} is not base64-encoded UTF-8 text") from None
    # Secrets made with `kubectl create secret --from-file` often keep the file's newline
    # (and a file saved by a Windows editor its BOM).
    text = clean_value(text)
    if not text:
        raise StorageError(f"{where}: key {key} is empty")
    problem = unusable_token(text) if token else None
    if problem:
        raise StorageError(f"{where}: key {key} {problem}")
    return text
