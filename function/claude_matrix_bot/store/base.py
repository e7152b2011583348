"""The blob-store contract every backend meets.

Keys are short relative names such as `state.json`, `lease.json` or
`nio/<file>`; the backend maps them under its root (a directory, a bucket
prefix). Every write is compare-and-swap: the caller says what it expects to
replace, and a lost race raises `StorageConflict`, never a silent overwrite.

"Not there" is the built-in `FileNotFoundError` in every backend. This module
knows no backend: the scheme table lives in `store/__init__.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from ..errors import StorageError


@dataclass(frozen=True, slots=True)
class Anything:
    """Write whatever is there (used only where no race can matter)."""


@dataclass(frozen=True, slots=True)
class Absent:
    """Write only if the key does not exist yet (exclusive create)."""


ANY = Anything()
ABSENT = Absent()

# What a writer expects to find: ANY, ABSENT, or the opaque version string it read.
Expect = Anything | Absent | str

# What a write must survive. Buckets (S3, GCS) make every acknowledged write durable
# and ignore this; a directory pays for it in fsyncs, so the writer says what it needs:
# - "durable": once `write` returns, a crash (power loss, kernel panic) keeps the new bytes;
# - "consistent": after a crash the key holds the new bytes or the ones before, whole,
#   never a torn mix; the last writes may be forgotten (one fsync: the data, not the rename);
# - "volatile": after a crash the key may hold anything, unreadable bytes included, or be
#   gone: only for records whose meaning dies with the process that wrote them (the lease).
Durability = Literal["durable", "consistent", "volatile"]


def check_key(key: str) -> str:
    """Refuse keys that would alias another one (`a//b`, `./a`) or escape the root; return the key."""
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise StorageError(f"invalid store key {key!r}")
    return key


@runtime_checkable
class BlobStore(Protocol):
    """A flat namespace of small blobs with versioned, conditional writes."""

    url: str

    def read(self, key: str) -> tuple[bytes, str]:
        """Return (data, version). Raise FileNotFoundError when the key is absent."""
        ...

    def write(self, key: str, data: bytes, *, expect: Expect, durability: Durability = "durable") -> str:
        """Store `data` if the precondition holds; return the new version.

        Raise StorageConflict if the key's current state does not match `expect`.
        Readers never see a half-written blob, whatever `durability` says; it only
        says what a crash of the machine may undo.
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
