"""`file:///dir`: a directory, e.g. a PersistentVolumeClaim.

Writes go to a temporary file in the same directory and are renamed over the
target (atomic on POSIX), so a reader never sees half a file. The fsyncs that make
a write survive a crash are what the writer's `durability` asks for (store/base.py). The
compare-and-swap check and the rename happen under an `flock` on a lock file,
which serialises writers on the same node (a ReadWriteOnce PVC is mounted by
one node at a time). Exclusive create uses `O_EXCL` semantics via `os.link`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..atomic import replace_file
from ..errors import StorageConflict, StorageError
from .base import ANY, Absent, Anything, Durability, Expect, check_key

LOCK_NAME = ".store.lock"


def _version(st: os.stat_result) -> str:
    # A rename always brings a new inode, so inode+mtime+size changes on every write.
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


class DirectoryStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()

    @classmethod
    def from_url(cls, url: str) -> DirectoryStore:
        return cls(Path(unquote(urlparse(url).path)))

    def local_dir(self) -> str | None:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.root / LOCK_NAME
        try:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
            except FileNotFoundError:  # the first write ever: create the directory (once, not per call)
                self.root.mkdir(parents=True, exist_ok=True)
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(f"state directory {self.root} is not usable: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def read(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                return fh.read(), _version(st)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc

    def _current_version(self, path: Path) -> str | None:
        try:
            return _version(path.stat())
        except FileNotFoundError:
            return None

    def _check(self, path: Path, key: str, expect: Expect) -> None:
        if isinstance(expect, Anything):
            return
        current = self._current_version(path)
        if isinstance(expect, Absent):
            if current is not None:
                raise StorageConflict(f"{key} already exists")
        elif current != expect:
            raise StorageConflict(f"{key} changed since it was read")

    def write(self, key: str, data: bytes, *, expect: Expect, durability: Durability = "durable") -> str:
        path = self._path(key)
        with self._locked():
            self._check(path, key, expect)
            try:
                if path.parent != self.root:  # `nio/…`, `<account>/state.json`
                    path.parent.mkdir(parents=True, exist_ok=True)
                # fsyncs: "durable" the file and the directory, "consistent" the file
                # (so a crash can never leave the rename pointing at unwritten data),
                # "volatile" none.
                replace_file(path, data, durable=durability != "volatile", sync_dir=durability == "durable")
                return _version(path.stat())
            except OSError as exc:
                reason = "disk full" if exc.errno == errno.ENOSPC else exc.strerror
                raise StorageError(f"cannot write {path}: {reason}") from exc

    def delete(self, key: str, *, expect: Expect = ANY) -> None:
        path = self._path(key)
        with self._locked():
            self._check(path, key, expect)
            try:
                path.unlink()
            except FileNotFoundError:
                return
            except OSError as exc:
                raise StorageError(f"cannot delete {path}: {exc.strerror}") from exc

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = []
        for path in self.root.rglob("*"):
            if path.is_file():
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix) and not path.name.startswith("."):
                    keys.append(key)
        return sorted(keys)
