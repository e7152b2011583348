"""Carry matrix-nio's key store between a bucket and a local directory.

nio needs a real directory (SQLite). On S3/GCS a cycle downloads the store's
files under a prefix into a private temporary directory, lets nio work there,
and uploads what changed. Losing those files would make the next run mint a
new Olm identity ("unable to decrypt" for everyone), so uploads are
compare-and-swap against the versions downloaded: a concurrent writer is
reported (StorageConflict), never silently overwritten.

`download_tree` makes the directory mirror the prefix: local files the bucket
does not have are removed, so pass a directory dedicated to this tree.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path, PurePosixPath

from ..atomic import replace_file
from ..errors import StorageError
from .base import ABSENT, BlobStore, Expect

log = logging.getLogger(__name__)

_TMP_PREFIX = ".sync-"


class TreeVersions(dict[str, str]):
    """relative file name -> remote version, plus the sha256 of what that version held.

    A plain dict works as well; the digests only spare a re-read of every
    remote file when deciding what changed.
    """

    def __init__(self, versions: dict[str, str] | None = None, digests: dict[str, str] | None = None) -> None:
        super().__init__(versions or {})
        self.digests: dict[str, str] = dict(digests or {})


def _root(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def _safe_relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
        raise StorageError(f"refusing unsafe file name {name!r} in the key store")
    return path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_private(path: Path, data: bytes) -> None:
    """Atomically write `data` to `path`, readable by us only (key material)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    replace_file(path, data, prefix=_TMP_PREFIX, durable=False)


def _local_files(local_dir: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    if not local_dir.is_dir():
        return files
    for path in local_dir.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.name.startswith(_TMP_PREFIX):
            continue
        files[path.relative_to(local_dir).as_posix()] = path
    return files


def download_tree(store: BlobStore, prefix: str, local_dir: Path) -> TreeVersions:
    """Copy every blob under `prefix` into `local_dir`; return name -> version."""
    root = _root(prefix)
    local_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    versions = TreeVersions()
    for key in store.list(root):
        name = key[len(root) :]
        relative = _safe_relative(name)
        try:
            data, version = store.read(key)
        except FileNotFoundError:
            continue  # deleted between list and read: it is not part of the tree
        try:
            _write_private(local_dir.joinpath(*relative.parts), data)
        except OSError as exc:
            raise StorageError(f"cannot write the key store file {name}: {exc.strerror}") from exc
        versions[name] = version
        versions.digests[name] = _sha256(data)
    for name, path in _local_files(local_dir).items():
        if name not in versions:
            log.debug("removing %s, which the store does not have", name)
            path.unlink()
    return versions


def upload_tree(store: BlobStore, prefix: str, local_dir: Path, versions: dict[str, str]) -> TreeVersions:
    """Upload files that changed since `download_tree`, delete those removed locally.

    Every write expects what was downloaded (ABSENT for a new file), so a
    concurrent writer raises StorageConflict. Returns the new name -> version map,
    ready for another `upload_tree` of the same directory.
    """
    root = _root(prefix)
    digests = versions.digests if isinstance(versions, TreeVersions) else {}
    result = TreeVersions(versions, digests)
    uploaded = 0
    for name, path in sorted(_local_files(local_dir).items()):
        _safe_relative(name)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read the key store file {name}: {exc.strerror}") from exc
        digest = _sha256(data)
        if name in versions and _unchanged(store, root + name, versions[name], digests.get(name), digest):
            continue
        expect: Expect = versions.get(name, ABSENT)
        result[name] = store.write(root + name, data, expect=expect)
        result.digests[name] = digest
        uploaded += 1
    local = _local_files(local_dir)
    for name in sorted(set(versions) - set(local)):
        store.delete(root + name, expect=versions[name])
        del result[name]
        result.digests.pop(name, None)
        uploaded += 1
    if uploaded:
        log.info("key store: %d file(s) written back", uploaded)
    return result


def _unchanged(store: BlobStore, key: str, version: str, known: str | None, digest: str) -> bool:
    if known is not None:
        return known == digest
    # No digest from download_tree: compare with the remote copy of that version.
    try:
        data, current = store.read(key)
    except FileNotFoundError:
        return False  # gone remotely: the write below expects `version` and will conflict
    return current == version and _sha256(data) == digest
