"""One contract, every blob-store backend (after fsspec/tests/abstract).

Backends: memory (this process only), a directory, S3 (moto's server), GCS through gcp-storage-emulator
(everything but compare-and-swap, which that emulator ignores) and GCS through
our generation-enforcing JSON-API server (everything). All cloud calls go
through the real boto3 / google-cloud-storage clients over loopback HTTP.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from claude_matrix_bot.errors import ConfigError, StorageConflict, StorageError
from claude_matrix_bot.store import ABSENT, ANY, SCHEMES, gcs, memory, open_store
from claude_matrix_bot.store.gcs import GCSStore
from claude_matrix_bot.store.s3 import S3Store
from tests.fakes.storage_servers import BACKENDS

if TYPE_CHECKING:
    from tests.fakes.storage_servers import Backend, GCSServer, GenerationServer, S3Server


RACERS = 8


def test_every_scheme_of_the_store_table_is_under_this_contract() -> None:
    # A backend added to the scheme table joins the suite through BACKENDS (tests/fakes).
    assert {can.scheme for can in BACKENDS.values()} == set(SCHEMES)


def test_memory_stores_of_one_name_share_their_blobs_and_other_names_do_not() -> None:
    first, again = open_store("memory://contract-share/p"), open_store("memory://contract-share/p")
    other = open_store("memory://contract-other/p")
    version = first.write("state.json", b"x", expect=ABSENT)
    assert again.read("state.json") == (b"x", version)
    assert other.list() == []
    memory.forget("contract-share")
    with pytest.raises(FileNotFoundError):
        again.read("state.json")


# --- every backend ------------------------------------------------------------------


def test_read_missing_key_is_file_not_found(backend: Backend) -> None:
    with pytest.raises(FileNotFoundError):
        backend.open().read("state.json")


def test_write_then_read_returns_data_and_the_written_version(backend: Backend) -> None:
    store = backend.open()
    version = store.write("state.json", b'{"schema": 2}', expect=ABSENT)
    assert store.read("state.json") == (b'{"schema": 2}', version)


def test_binary_data_round_trips(backend: Backend) -> None:
    store = backend.open()
    data = bytes(range(256)) * 64 + b"\r\n--boundary\r\n\x00"
    store.write("nio/blob.db", data, expect=ANY)
    assert store.read("nio/blob.db")[0] == data


def test_empty_blob_round_trips(backend: Backend) -> None:
    store = backend.open()
    store.write("empty", b"", expect=ANY)
    assert store.read("empty")[0] == b""


def test_keys_with_slashes(backend: Backend) -> None:
    store = backend.open()
    store.write("nio/@bot:example.org_DEVICE.db", b"a", expect=ABSENT)
    store.write("nio/deep/er/key.json", b"b", expect=ABSENT)
    assert store.read("nio/@bot:example.org_DEVICE.db")[0] == b"a"
    assert store.read("nio/deep/er/key.json")[0] == b"b"
    assert store.list("nio/") == ["nio/@bot:example.org_DEVICE.db", "nio/deep/er/key.json"]


def test_list_with_prefix_is_sorted_and_relative(backend: Backend) -> None:
    store = backend.open()
    for key in ("state.json", "lease.json", "nio/b.db", "nio/a.db", "nio/c.json"):
        store.write(key, key.encode(), expect=ANY)
    assert store.list() == ["lease.json", "nio/a.db", "nio/b.db", "nio/c.json", "state.json"]
    assert store.list("nio/") == ["nio/a.db", "nio/b.db", "nio/c.json"]
    assert store.list("nope/") == []


def test_list_is_scoped_to_the_store_root(backend: Backend) -> None:
    store = backend.open()
    store.write("state.json", b"x", expect=ANY)
    # A store rooted one level deeper (another bot, another prefix) sees nothing of ours.
    sibling = dataclasses.replace(backend, url=backend.url + "-other").open()
    assert sibling.list() == []
    with pytest.raises(FileNotFoundError):
        sibling.read("state.json")


def test_unconditional_overwrite(backend: Backend) -> None:
    store = backend.open()
    store.write("state.json", b"one", expect=ANY)
    store.write("state.json", b"two", expect=ANY)
    assert store.read("state.json")[0] == b"two"


def test_delete_any_removes_and_tolerates_absent(backend: Backend) -> None:
    store = backend.open()
    store.write("state.json", b"x", expect=ANY)
    store.delete("state.json")
    with pytest.raises(FileNotFoundError):
        store.read("state.json")
    store.delete("state.json")  # absent with ANY: not an error
    assert store.list() == []


@pytest.mark.parametrize("key", ["", "/abs", "../escape", "a/../../b", "a//b"])
def test_invalid_keys_are_refused(backend: Backend, key: str) -> None:
    with pytest.raises(StorageError):
        backend.open().write(key, b"x", expect=ANY)


# --- compare-and-swap: only where the server enforces it -----------------------------


def test_second_exclusive_create_conflicts(cas_backend: Backend) -> None:
    store = cas_backend.open()
    store.write("lease.json", b"first", expect=ABSENT)
    with pytest.raises(StorageConflict):
        store.write("lease.json", b"second", expect=ABSENT)
    assert store.read("lease.json")[0] == b"first"


def test_write_with_stale_version_conflicts_and_leaves_data(cas_backend: Backend) -> None:
    store = cas_backend.open()
    stale = store.write("state.json", b"v1", expect=ABSENT)
    current = store.write("state.json", b"v2", expect=stale)
    with pytest.raises(StorageConflict):
        store.write("state.json", b"lost update", expect=stale)
    assert store.read("state.json") == (b"v2", current)


def test_write_with_current_version_gives_a_new_version(cas_backend: Backend) -> None:
    store = cas_backend.open()
    first = store.write("state.json", b"v1", expect=ABSENT)
    second = store.write("state.json", b"v2", expect=first)
    assert second != first
    assert store.read("state.json") == (b"v2", second)


def test_same_content_rewritten_still_gets_a_usable_version(cas_backend: Backend) -> None:
    store = cas_backend.open()
    first = store.write("state.json", b"same", expect=ABSENT)
    second = store.write("state.json", b"same", expect=first)
    # S3 ETags are content hashes, so the version may repeat; it must still be current.
    third = store.write("state.json", b"next", expect=second)
    assert store.read("state.json") == (b"next", third)


def test_write_expecting_a_version_of_a_deleted_key_conflicts(cas_backend: Backend) -> None:
    store = cas_backend.open()
    version = store.write("state.json", b"v1", expect=ABSENT)
    store.delete("state.json", expect=version)
    with pytest.raises(StorageConflict):
        store.write("state.json", b"v2", expect=version)
    with pytest.raises(FileNotFoundError):
        store.read("state.json")


def test_delete_with_stale_version_conflicts_and_keeps_the_key(cas_backend: Backend) -> None:
    store = cas_backend.open()
    stale = store.write("lease.json", b"mine", expect=ABSENT)
    current = store.write("lease.json", b"theirs", expect=stale)
    with pytest.raises(StorageConflict):
        store.delete("lease.json", expect=stale)
    assert store.read("lease.json") == (b"theirs", current)
    store.delete("lease.json", expect=current)
    with pytest.raises(FileNotFoundError):
        store.read("lease.json")


def test_delete_expecting_absent(cas_backend: Backend) -> None:
    store = cas_backend.open()
    store.delete("lease.json", expect=ABSENT)  # absent: fine
    store.write("lease.json", b"x", expect=ABSENT)
    with pytest.raises(StorageConflict):
        store.delete("lease.json", expect=ABSENT)
    assert store.read("lease.json")[0] == b"x"


def test_racing_exclusive_creates_have_exactly_one_winner(cas_backend: Backend) -> None:
    stores = [cas_backend.open() for _ in range(RACERS)]
    start = threading.Barrier(RACERS)

    def create(index: int) -> str:
        start.wait()
        try:
            stores[index].write("lease.json", f"racer {index}".encode(), expect=ABSENT)
        except StorageConflict:
            return "lost"
        return "won"

    with ThreadPoolExecutor(RACERS) as pool:
        outcomes = list(pool.map(create, range(RACERS)))
    assert outcomes.count("won") == 1
    winner = outcomes.index("won")
    assert stores[0].read("lease.json")[0] == f"racer {winner}".encode()


def test_racing_replacements_of_one_version_have_exactly_one_winner(cas_backend: Backend) -> None:
    stores = [cas_backend.open() for _ in range(RACERS)]
    base = stores[0].write("state.json", b"base", expect=ABSENT)
    start = threading.Barrier(RACERS)

    def replace(index: int) -> str:
        start.wait()
        try:
            stores[index].write("state.json", f"racer {index}".encode(), expect=base)
        except StorageConflict:
            return "lost"
        return "won"

    with ThreadPoolExecutor(RACERS) as pool:
        outcomes = list(pool.map(replace, range(RACERS)))
    assert outcomes.count("won") == 1
    assert stores[0].read("state.json")[0] == f"racer {outcomes.index('won')}".encode()


# --- the servers themselves ----------------------------------------------------------


def test_gcp_storage_emulator_ignores_generation_preconditions(
    gcs_emulator: GCSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why GCS CAS is proven on our own server: the emulator accepts a stale write.

    If a future emulator release starts enforcing preconditions this fails, and
    the CAS tests can move onto the emulator.
    """
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.endpoint)
    store = GCSStore(gcs_emulator.bucket, "t-emulator-cas")
    stale = store.write("state.json", b"v1", expect=ABSENT)
    store.write("state.json", b"v2", expect=stale)
    store.write("state.json", b"v3", expect=stale)  # a real GCS answers 412 here
    assert store.read("state.json")[0] == b"v3"


def test_enforcing_server_answers_412(gcs_generation_server: GenerationServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GCS conflicts above came from HTTP 412s of the server, not from the client."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_generation_server.endpoint)
    store = GCSStore(gcs_generation_server.bucket, "t-412")
    store.write("k", b"x", expect=ABSENT)
    before = gcs_generation_server.store.precondition_failures
    with pytest.raises(StorageConflict):
        store.write("k", b"y", expect=ABSENT)
    assert gcs_generation_server.store.precondition_failures == before + 1


# --- failures that are not conflicts -----------------------------------------------------

SECRET_KEY = "s3cr3t-access-key-never-printed"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_s3_unreachable_endpoint_is_a_storage_error_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTNEVERPRINTED")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{_closed_port()}")
    store = S3Store.from_url("s3://cmb-down/prefix")
    with pytest.raises(StorageError) as caught:
        store.read("state.json")
    assert not isinstance(caught.value, StorageConflict)
    message = str(caught.value)
    assert "s3://cmb-down/prefix/state.json" in message
    assert SECRET_KEY not in message
    assert "AKIATESTNEVERPRINTED" not in message
    assert SECRET_KEY not in repr(store)


def test_s3_missing_bucket_is_a_storage_error_naming_the_code(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint)
    store = S3Store.from_url("s3://no-such-bucket/p")
    with pytest.raises(StorageError, match="NoSuchBucket") as caught:
        store.write("state.json", b"x", expect=ABSENT)
    assert not isinstance(caught.value, StorageConflict)
    assert SECRET_KEY not in str(caught.value)
    # Not "no state yet": a missing bucket must never look like a first run.
    with pytest.raises(StorageError, match="NoSuchBucket"):
        store.read("state.json")
    with pytest.raises(StorageError, match="NoSuchBucket"):
        store.write("state.json", b"x", expect='"0123"')


def test_gcs_unreachable_endpoint_is_a_storage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{_closed_port()}")
    # Production bounds the retry loop at 30 s; a test need not wait for it.
    monkeypatch.setattr(gcs, "RETRY", gcs.RETRY.with_timeout(0.5))
    store = GCSStore.from_url("gs://cmb-down/prefix")
    with pytest.raises(StorageError) as caught:
        store.read("state.json")
    assert not isinstance(caught.value, StorageConflict)
    assert "gs://cmb-down/prefix/state.json" in str(caught.value)


def test_gcs_missing_bucket_is_a_storage_error(
    gcs_generation_server: GenerationServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_generation_server.endpoint)
    store = GCSStore.from_url("gs://no-such-bucket/p")
    with pytest.raises(StorageError, match="HTTP 404") as caught:
        store.write("state.json", b"x", expect=ABSENT)
    assert not isinstance(caught.value, StorageConflict)
    with pytest.raises(StorageError, match="does not exist"):
        store.list()


@pytest.mark.parametrize("url", ["s3:///prefix", "gs:///prefix"])
def test_bucket_name_is_required(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(ConfigError, match="bucket"):
        open_store(url)
