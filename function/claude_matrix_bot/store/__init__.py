"""Blob stores picked from `STATE_URL` (docs/design.md §3): a directory, S3, GCS, or memory.

One scheme table: each scheme says what a URL of it must hold and how to open a store on it.
The settings ask this table whether a `STATE_URL` is valid (`check_url`), so a new backend is
one entry here. Each cloud SDK is imported inside its factory, so a cold start pays only for
the backend it uses, and a missing extra says how to install it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import ParseResult, urlparse

from ..errors import ConfigError, MissingExtra
from .base import ABSENT, ANY, Absent, Anything, BlobStore, Durability, Expect, check_key

__all__ = [
    "ABSENT",
    "ANY",
    "SCHEMES",
    "Absent",
    "Anything",
    "BlobStore",
    "Durability",
    "Expect",
    "Scheme",
    "check_key",
    "check_url",
    "open_store",
]


def _open_file(url: str) -> BlobStore:
    from .file import DirectoryStore

    return DirectoryStore.from_url(url)


def _open_s3(url: str) -> BlobStore:
    try:
        from .s3 import S3Store
    except ImportError as exc:
        raise MissingExtra("STATE_URL: s3:// needs boto3", extra="s3") from exc
    return S3Store.from_url(url)


def _open_gcs(url: str) -> BlobStore:
    try:
        from .gcs import GCSStore
    except ImportError as exc:
        raise MissingExtra("STATE_URL: gs:// needs google-cloud-storage", extra="gcs") from exc
    return GCSStore.from_url(url)


def _open_memory(url: str) -> BlobStore:
    from .memory import MemoryStore

    return MemoryStore.from_url(url)


def _absolute_dir(parsed: ParseResult) -> bool:
    return parsed.netloc in ("", "localhost") and parsed.path.startswith("/")


def _named_root(parsed: ParseResult) -> bool:
    return bool(parsed.netloc)


@dataclass(frozen=True, slots=True)
class Scheme:
    """One kind of store: the form its URLs take, the check they must pass, how to open one."""

    form: str
    valid: Callable[[ParseResult], bool]
    open: Callable[[str], BlobStore]


SCHEMES: dict[str, Scheme] = {
    "file": Scheme("file:///absolute/dir", _absolute_dir, _open_file),
    "s3": Scheme("s3://bucket[/prefix]", _named_root, _open_s3),
    "gs": Scheme("gs://bucket[/prefix]", _named_root, _open_gcs),
    # Tests and simulations only: the state lives in this process and is gone when it ends.
    "memory": Scheme("memory://name[/prefix]", _named_root, _open_memory),
}


def check_url(url: str) -> str:
    """`url` if a store can be opened on it, else ValueError saying which forms are expected
    (the settings name the variable)."""
    parsed = urlparse(url)
    scheme = SCHEMES.get(parsed.scheme)
    if scheme is None:
        forms = ", ".join(s.form for s in SCHEMES.values())
        raise ValueError(f"expected one of {forms}; got {url!r}")
    if not scheme.valid(parsed):
        raise ValueError(f"expected {scheme.form}, got {url!r}")
    return url


def open_store(url: str) -> BlobStore:
    try:
        check_url(url)
    except ValueError as exc:
        raise ConfigError(f"STATE_URL: {exc}") from None
    return SCHEMES[urlparse(url).scheme].open(url)
