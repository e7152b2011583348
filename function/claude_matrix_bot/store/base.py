"""The blob-store contract every backend meets.

Keys are short relative names such as `state.json`, `lease.json` or
`nio/<file>`; the backend maps them under its root (a directory, a bucket
prefix). Every write is compare-and-swap: the caller says what it expects to
replace, and a lost race raises `StorageConflict`, never a silent overwrite.

"Not there" is the built-in `FileNotFoundError` in every backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urlparse

from ..errors import ConfigError


@dataclass(frozen=True, slots=True)
class _Any:
    """Write whatever is there (used only where no race can matter)."""


@dataclass(frozen=True, slots=True)
class _Absent:
    """Write only if the key does not exist yet (exclusive create)."""


ANY = _Any()
ABSENT = _Absent()

# What a writer expects to find: ANY, ABSENT, or the opaque version string it read.
Expect = _Any | _Absent | str


@runtime_checkable
class BlobStore(Protocol):
    """A flat namespace of small blobs with versioned, conditional writes."""

    url: str

    def read(self, key: str) -> tuple[bytes, str]:
        """Return (data, version). Raise FileNotFoundError when the key is absent."""
        ...

    def write(self, key: str, data: bytes, *, expect: Expect) -> str:
        """Store `data` if the precondition holds; return the new version.

        Raise StorageConflict if the key's current state does not match `expect`.
        """
        ...

    def delete(self, key: str, *, expect: Expect = ANY) -> None:
        """Remove the key if the precondition holds; absent keys are not an error
        when `expect` is ANY. Raise StorageConflict on a version mismatch."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Keys under `prefix` (relative to the store root), sorted."""
        ...

    def local_dir(self) -> str | None:
        """A real directory holding the blobs, if the backend has one (file://)."""
        ...


StoreFactory = Callable[[str], BlobStore]


def _file_factory(url: str) -> BlobStore:
    from .file import DirectoryStore

    return DirectoryStore.from_url(url)


def _s3_factory(url: str) -> BlobStore:
    try:
        from .s3 import S3Store
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(f"STATE_URL: s3:// needs boto3 (pip install 'claude-matrix-bot[s3]'): {exc}") from exc
    return S3Store.from_url(url)


def _gcs_factory(url: str) -> BlobStore:
    try:
        from .gcs import GCSStore
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            f"STATE_URL: gs:// needs google-cloud-storage (pip install 'claude-matrix-bot[gcs]'): {exc}"
        ) from exc
    return GCSStore.from_url(url)


# scheme -> factory; each cloud SDK is imported inside its factory so a cold
# start pays only for the backend it uses.
FACTORIES: dict[str, StoreFactory] = {"file": _file_factory, "s3": _s3_factory, "gs": _gcs_factory}


def open_store(url: str) -> BlobStore:
    scheme = urlparse(url).scheme
    factory = FACTORIES.get(scheme)
    if factory is None:
        raise ConfigError(f"STATE_URL: unsupported scheme {scheme!r}")
    return factory(url)
