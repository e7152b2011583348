"""nio key-store sync between a blob store and a local directory.

Round trips run on every backend; conflict detection on the CAS backends.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from claude_matrix_bot.errors import StorageConflict, StorageError
from claude_matrix_bot.store.base import ABSENT, ANY, BlobStore, Durability, Expect
from claude_matrix_bot.store.sync import download_tree, upload_tree

if TYPE_CHECKING:
    from tests.fakes.storage_servers import Backend


PREFIX = "nio/"
DB = "@bot:example.org_BOTDEVICE.db"


@dataclass
class CountingStore:
    """The real store, counting the writes and deletes that reach it."""

    inner: BlobStore
    writes: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = self.inner.url

    def read(self, key: str) -> tuple[bytes, str]:
        return self.inner.read(key)

    def write(self, key: str, data: bytes, *, expect: Expect, durability: Durability = "durable") -> str:
        self.writes.append(key)
        return self.inner.write(key, data, expect=expect, durability=durability)

    def delete(self, key: str, *, expect: Expect = ANY) -> None:
        self.deletes.append(key)
        self.inner.delete(key, expect=expect)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def local_dir(self) -> str | None:
        return self.inner.local_dir()


def _seed(store: BlobStore) -> None:
    store.write(PREFIX + DB, b"SQLite format 3\x00" + bytes(range(256)), expect=ABSENT)
    store.write(PREFIX + "trust/known_devices", b"@alice:example.org DEV ed25519 abc\n", expect=ABSENT)
    store.write("state.json", b"{}", expect=ABSENT)  # outside the prefix: not part of the tree


def test_round_trip(backend: Backend, tmp_path: Path) -> None:
    store = backend.open()
    _seed(store)
    work = tmp_path / "nio"
    versions = download_tree(store, PREFIX, work)
    assert sorted(versions) == [DB, "trust/known_devices"]
    assert (work / DB).read_bytes() == store.read(PREFIX + DB)[0]
    assert (work / "trust" / "known_devices").read_bytes().startswith(b"@alice")
    for path in (work / DB, work / "trust" / "known_devices"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # nio changes its database, adds a file and drops another.
    (work / DB).write_bytes(b"SQLite format 3\x00 after a session")
    (work / "new.json").write_bytes(b'{"new": true}')
    (work / "trust" / "known_devices").unlink()
    after = upload_tree(store, PREFIX, work, versions)

    assert store.list(PREFIX) == [PREFIX + DB, PREFIX + "new.json"]
    assert store.read(PREFIX + DB) == (b"SQLite format 3\x00 after a session", after[DB])
    assert store.read(PREFIX + "new.json")[1] == after["new.json"]
    assert store.read("state.json")[0] == b"{}"

    fresh = tmp_path / "fresh"
    again = download_tree(store, PREFIX, fresh)
    assert dict(again) == dict(after)
    assert (fresh / DB).read_bytes() == b"SQLite format 3\x00 after a session"


def test_unchanged_tree_uploads_nothing(backend: Backend, tmp_path: Path) -> None:
    store = CountingStore(backend.open())
    _seed(store.inner)
    versions = download_tree(store, PREFIX, tmp_path / "nio")
    assert upload_tree(store, PREFIX, tmp_path / "nio", versions) == versions
    assert store.writes == []
    assert store.deletes == []


def test_only_changed_files_are_uploaded(backend: Backend, tmp_path: Path) -> None:
    store = CountingStore(backend.open())
    _seed(store.inner)
    work = tmp_path / "nio"
    versions = download_tree(store, PREFIX, work)
    (work / DB).write_bytes(b"changed")
    after = upload_tree(store, PREFIX, work, versions)
    assert store.writes == [PREFIX + DB]
    # A second upload of the same directory (same process) is again a no-op.
    upload_tree(store, PREFIX, work, after)
    assert store.writes == [PREFIX + DB]


def test_plain_version_dict_compares_with_the_remote_copy(backend: Backend, tmp_path: Path) -> None:
    store = CountingStore(backend.open())
    _seed(store.inner)
    work = tmp_path / "nio"
    versions = dict(download_tree(store, PREFIX, work))  # digests lost, e.g. versions persisted as JSON
    (work / DB).write_bytes(b"changed")
    upload_tree(store, PREFIX, work, versions)
    assert store.writes == [PREFIX + DB]


def test_concurrent_modification_conflicts(cas_backend: Backend, tmp_path: Path) -> None:
    store = cas_backend.open()
    _seed(store)
    work = tmp_path / "nio"
    versions = download_tree(store, PREFIX, work)
    # Another run wrote the database meanwhile.
    theirs = store.write(PREFIX + DB, b"their session", expect=versions[DB])
    (work / DB).write_bytes(b"our session")
    with pytest.raises(StorageConflict):
        upload_tree(store, PREFIX, work, versions)
    assert store.read(PREFIX + DB) == (b"their session", theirs)


def test_concurrent_creation_conflicts(cas_backend: Backend, tmp_path: Path) -> None:
    store = cas_backend.open()
    work = tmp_path / "nio"
    versions = download_tree(store, PREFIX, work)  # empty: first run ever
    store.write(PREFIX + DB, b"the other run's identity", expect=ABSENT)
    (work / DB).write_bytes(b"our identity")
    with pytest.raises(StorageConflict):
        upload_tree(store, PREFIX, work, versions)
    assert store.read(PREFIX + DB)[0] == b"the other run's identity"


def test_local_delete_of_a_remotely_changed_file_conflicts(cas_backend: Backend, tmp_path: Path) -> None:
    store = cas_backend.open()
    _seed(store)
    work = tmp_path / "nio"
    versions = download_tree(store, PREFIX, work)
    store.write(PREFIX + DB, b"rewritten elsewhere", expect=versions[DB])
    (work / DB).unlink()
    with pytest.raises(StorageConflict):
        upload_tree(store, PREFIX, work, versions)
    assert store.read(PREFIX + DB)[0] == b"rewritten elsewhere"


def test_download_mirrors_the_remote_tree(backend: Backend, tmp_path: Path) -> None:
    store = backend.open()
    _seed(store)
    work = tmp_path / "nio"
    work.mkdir()
    (work / "stale.db").write_bytes(b"left over from an earlier run")
    download_tree(store, PREFIX, work)
    assert not (work / "stale.db").exists()


@pytest.mark.parametrize("hostile", ["nio/../x", "nio/a/../../x", "nio//x", "nio/..\\x", "nio/"])
def test_unsafe_remote_names_are_refused(tmp_path: Path, hostile: str) -> None:
    store = CountingStore(_FixedListing(["nio/ok", hostile]))
    with pytest.raises(StorageError, match="unsafe"):
        download_tree(store, PREFIX, tmp_path / "nio")
    assert not (tmp_path / "x").exists()


@dataclass
class _FixedListing:
    """A store whose listing a hostile bucket controls (no backend accepts `..` keys)."""

    keys: list[str]
    url: str = "test://hostile"

    def read(self, key: str) -> tuple[bytes, str]:
        return b"x", "1"

    def write(self, key: str, data: bytes, *, expect: Expect, durability: Durability = "durable") -> str:
        raise AssertionError("no writes expected")

    def delete(self, key: str, *, expect: Expect = ANY) -> None:
        raise AssertionError("no deletes expected")

    def list(self, prefix: str = "") -> list[str]:
        return self.keys

    def local_dir(self) -> str | None:
        return None
