"""`memory://name/prefix`: blobs in this process's memory, for fast in-process cycle tests and
simulations. Every store opened on the same name shares one namespace (so two cycles in two
threads see each other's writes and race for the lease as on a bucket); nothing survives the
process, and no other process can reach it.

It meets the whole blob-store contract, compare-and-swap included: each write and delete
checks the precondition and applies under one lock, and every write gets a new version.
"""

from __future__ import annotations

import itertools
import threading
from urllib.parse import urlparse

from ..errors import StorageConflict
from .base import ANY, Absent, Anything, Durability, Expect, check_key

_LOCK = threading.Lock()
# name -> full key -> (data, version); one process-wide table, as a bucket is one per account.
_SPACES: dict[str, dict[str, tuple[bytes, str]]] = {}
_VERSIONS = itertools.count(1)


class MemoryStore:
    def __init__(self, name: str, prefix: str = "") -> None:
        self.name = name
        self.prefix = prefix.strip("/")
        self.url = f"memory://{name}/{self.prefix}" if self.prefix else f"memory://{name}"

    @property
    def _blobs(self) -> dict[str, tuple[bytes, str]]:
        # Looked up on each use (under _LOCK), so a forgotten namespace is gone for every store.
        return _SPACES.setdefault(self.name, {})

    @classmethod
    def from_url(cls, url: str) -> MemoryStore:
        parsed = urlparse(url)
        return cls(parsed.netloc, parsed.path)

    def __repr__(self) -> str:
        return f"MemoryStore({self.url!r})"

    def local_dir(self) -> str | None:
        return None

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _check(self, full: str, key: str, expect: Expect) -> None:
        current = self._blobs.get(full)
        if isinstance(expect, Anything):
            return
        if isinstance(expect, Absent):
            if current is not None:
                raise StorageConflict(f"{self.url}/{key} already exists")
        elif current is None or current[1] != expect:
            raise StorageConflict(f"{self.url}/{key} changed since it was read")

    def read(self, key: str) -> tuple[bytes, str]:
        full = self._key(key)
        with _LOCK:
            found = self._blobs.get(full)
        if found is None:
            raise FileNotFoundError(f"{self.url}/{key}")
        return found

    def write(self, key: str, data: bytes, *, expect: Expect, durability: Durability = "durable") -> str:
        # Memory survives nothing: `durability` has nothing to ask of it.
        full = self._key(key)
        with _LOCK:
            self._check(full, key, expect)
            version = str(next(_VERSIONS))
            self._blobs[full] = (bytes(data), version)
        return version

    def delete(self, key: str, *, expect: Expect = ANY) -> None:
        full = self._key(key)
        with _LOCK:
            self._check(full, key, expect)
            self._blobs.pop(full, None)

    def list(self, prefix: str = "") -> list[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        with _LOCK:
            keys = [full[len(root) :] for full in self._blobs if full.startswith(root + prefix)]
        return sorted(keys)


def forget(name: str) -> None:
    """Drop a namespace (a test's cleanup): its blobs are gone for every store opened on it."""
    with _LOCK:
        _SPACES.pop(name, None)
