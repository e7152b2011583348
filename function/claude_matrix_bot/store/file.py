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
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..atomic import replace_file
from ..errors import StorageConflict, StorageError
from .base import ANY, Absent, Anything, Durability, Expect, check_key

LOCK_NAME = ".store.lock"
# Far beyond any state.json (its size does not grow with uptime, docs/design.md §4).
MAX_READ_BYTES = 16 * 2**20
# The state directory and the ones under it hold tokens' neighbours and keys: private
# whatever the umask (issue 21: `umask 000` made them 0777).
DIR_MODE = 0o700
LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


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
                fd = os.open(lock, LOCK_FLAGS, 0o600)
            except FileNotFoundError:  # the first write ever: create the directory (once, not per call)
                self.root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
                fd = os.open(lock, LOCK_FLAGS, 0o600)
        except OSError as exc:
            raise StorageError(f"state directory {self.root} is not usable: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def read(self, key: str) -> tuple[bytes, str]:
        """The file's bytes and version. Only a regular file is read, never through a
        symlink (a planted one would have the bot copy its target into the state), never
        waiting on a FIFO, and never beyond MAX_READ_BYTES (`/dev/zero`) (issue 21)."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise
        except OSError as exc:
            reason = "a symlink, refused" if exc.errno == errno.ELOOP else exc.strerror
            raise StorageError(f"cannot read {path}: {reason}") from exc
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise StorageError(f"cannot read {path}: not a regular file, refused")
            try:
                data = fh.read(MAX_READ_BYTES + 1)
            except OSError as exc:
                raise StorageError(f"cannot read {path}: {exc.strerror}") from exc
        if len(data) > MAX_READ_BYTES:
            raise StorageError(f"cannot read {path}: larger than {MAX_READ_BYTES // 2**20} MiB, refused")
        return data, _version(st)

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
                    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
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
