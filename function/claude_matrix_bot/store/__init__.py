"""Blob stores picked from `STATE_URL` (DESIGN §3): a directory, S3 or GCS.

One scheme -> factory table; each cloud SDK is imported inside its factory, so a
cold start pays only for the backend it uses, and a missing extra says how to
install it.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlparse

from ..errors import ConfigError, MissingExtra
from .base import ABSENT, ANY, Absent, Anything, BlobStore, Durability, Expect, check_key

__all__ = [
    "ABSENT",
    "ANY",
    "FACTORIES",
    "Absent",
    "Anything",
    "BlobStore",
    "Durability",
    "Expect",
    "check_key",
    "open_store",
]

StoreFactory = Callable[[str], BlobStore]


def _file_factory(url: str) -> BlobStore:
    from .file import DirectoryStore

    return DirectoryStore.from_url(url)


def _s3_factory(url: str) -> BlobStore:
    try:
        from .s3 import S3Store
    except ImportError as exc:
        raise MissingExtra("STATE_URL: s3:// needs boto3", extra="s3") from exc
    return S3Store.from_url(url)


def _gcs_factory(url: str) -> BlobStore:
    try:
        from .gcs import GCSStore
    except ImportError as exc:
        raise MissingExtra("STATE_URL: gs:// needs google-cloud-storage", extra="gcs") from exc
    return GCSStore.from_url(url)


FACTORIES: dict[str, StoreFactory] = {"file": _file_factory, "s3": _s3_factory, "gs": _gcs_factory}


def open_store(url: str) -> BlobStore:
    scheme = urlparse(url).scheme
    factory = FACTORIES.get(scheme)
    if factory is None:
        raise ConfigError(f"STATE_URL: unsupported scheme {scheme!r}")
    return factory(url)
