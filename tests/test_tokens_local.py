"""LOCAL_MODE token store: the OAUTH_TOKENS_DIR files, compare-and-swap, crash order."""

from __future__ import annotations

import multiprocessing
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from claude_matrix_bot.errors import StorageConflict, StorageError
from claude_matrix_bot.tokens.base import OAuthTokens
from claude_matrix_bot.tokens.local import WRITE_ORDER, DirectoryTokenStore, from_unix_ms, to_unix_ms

EXPIRES = datetime(2026, 1, 2, 20, 0, 0, 123000, tzinfo=UTC)
OLD = OAuthTokens("at-old-S3CR3T", "rt-old-S3CR3T", EXPIRES)
NEW = OAuthTokens("at-new-S3CR3T", "rt-new-S3CR3T", EXPIRES + timedelta(hours=8))


def _write(directory: Path, access: str = "at-old-S3CR3T", refresh: str = "rt-old-S3CR3T", expires: str = "") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "accessToken").write_text(access)
    (directory / "refreshToken").write_text(refresh)
    (directory / "expiresAt").write_text(expires or str(to_unix_ms(EXPIRES)))


def test_load_reads_the_three_files(tmp_path: Path) -> None:
    _write(tmp_path, "at-old-S3CR3T\n", "  rt-old-S3CR3T\n", f"{to_unix_ms(EXPIRES)}\n")
    stored = DirectoryTokenStore(tmp_path).load()
    assert stored.tokens == OLD
    assert stored.tokens.expires_at == EXPIRES
    assert len(stored.version) == 16


def test_unix_ms_round_trip() -> None:
    assert from_unix_ms(to_unix_ms(EXPIRES)) == EXPIRES
    assert to_unix_ms(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)) == 1000


@pytest.mark.parametrize("missing", ["accessToken", "refreshToken", "expiresAt"])
def test_missing_file_is_named(tmp_path: Path, missing: str) -> None:
    _write(tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(StorageError, match=f"file {missing} is missing"):
        DirectoryTokenStore(tmp_path).load()


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="accessToken is missing"):
        DirectoryTokenStore(tmp_path / "nope").load()


@pytest.mark.parametrize(
    ("access", "refresh", "expires", "needle"),
    [
        ("", "rt-old-S3CR3T", "1767384000000", "accessToken is empty"),
        ("at-old-S3CR3T", " \n", "1767384000000", "refreshToken is empty"),
        ("at-old-S3CR3T", "rt-old-S3CR3T", "tomorrow", "expiresAt is not a Unix time in milliseconds"),
        ("at-old-S3CR3T", "rt-old-S3CR3T", "1e12", "expiresAt is not a Unix time"),
        ("at-old-S3CR3T", "rt-old-S3CR3T", "9" * 40, "expiresAt is not a Unix time"),
        ("at-old-S3CR3T rt-old-S3CR3T", "rt-old-S3CR3T", "1767384000000", "accessToken holds more than one token"),
    ],
)
def test_invalid_content_is_named_but_never_shown(
    tmp_path: Path, access: str, refresh: str, expires: str, needle: str
) -> None:
    _write(tmp_path, access, refresh, expires)
    with pytest.raises(StorageError) as info:
        DirectoryTokenStore(tmp_path).load()
    assert needle in str(info.value)
    assert "S3CR3T" not in str(info.value)
    assert "tomorrow" not in str(info.value)


def test_non_utf8_file(tmp_path: Path) -> None:
    _write(tmp_path)
    (tmp_path / "refreshToken").write_bytes(b"\xff\xfe")
    with pytest.raises(StorageError, match="refreshToken is not UTF-8"):
        DirectoryTokenStore(tmp_path).load()


def test_save_then_load_round_trips_with_private_files(tmp_path: Path) -> None:
    _write(tmp_path)
    store = DirectoryTokenStore(tmp_path)
    saved = store.save(NEW, expect_version=store.load().version)
    loaded = store.load()
    assert loaded == saved
    assert loaded.tokens == NEW
    for name in ("accessToken", "refreshToken", "expiresAt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert (tmp_path / "expiresAt").read_text() == str(to_unix_ms(NEW.expires_at))
    # no temp files left behind
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_stale_version_is_a_conflict_and_writes_nothing(tmp_path: Path) -> None:
    _write(tmp_path)
    store = DirectoryTokenStore(tmp_path)
    stale = store.load().version
    store.save(NEW, expect_version=stale)
    with pytest.raises(StorageConflict):
        store.save(OLD, expect_version=stale)
    assert store.load().tokens == NEW


def test_a_write_by_another_program_is_detected(tmp_path: Path) -> None:
    _write(tmp_path)
    store = DirectoryTokenStore(tmp_path)
    version = store.load().version
    (tmp_path / "refreshToken").write_text("rt-pasted-by-an-operator")
    with pytest.raises(StorageConflict, match="changed since they were read"):
        store.save(NEW, expect_version=version)
    assert store.load().tokens.refresh_token == "rt-pasted-by-an-operator"


def test_saving_over_missing_files_is_a_conflict(tmp_path: Path) -> None:
    _write(tmp_path)
    store = DirectoryTokenStore(tmp_path)
    version = store.load().version
    (tmp_path / "accessToken").unlink()
    with pytest.raises(StorageConflict):
        store.save(NEW, expect_version=version)


def test_version_tells_files_apart(tmp_path: Path) -> None:
    _write(tmp_path / "a", "ab", "c")
    _write(tmp_path / "b", "a", "bc")
    assert DirectoryTokenStore(tmp_path / "a").load().version != DirectoryTokenStore(tmp_path / "b").load().version


def test_refresh_token_is_renamed_first() -> None:
    assert WRITE_ORDER == ("refreshToken", "accessToken", "expiresAt")


def test_crash_after_the_first_rename_keeps_the_new_refresh_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path)
    store = DirectoryTokenStore(tmp_path)
    version = store.load().version
    real_replace = os.replace
    renamed: list[str] = []

    def replace_then_die(src: str, dst: Path) -> None:
        if renamed:
            raise OSError(5, "Input/output error")  # the "crash" after the first rename
        real_replace(src, dst)
        renamed.append(Path(dst).name)

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(StorageError, match="cannot write the tokens"):
        store.save(NEW, expect_version=version)
    monkeypatch.undo()
    after = store.load().tokens
    assert renamed == ["refreshToken"]
    # The unspent new refresh token is there; the old access token just looks
    # expiring-soon, so the next run refreshes with the new refresh token.
    assert after.refresh_token == NEW.refresh_token
    assert after.access_token == OLD.access_token
    assert after.expires_at == OLD.expires_at
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_repr_shows_no_secret(tmp_path: Path) -> None:
    _write(tmp_path)
    store = DirectoryTokenStore(tmp_path)
    stored = store.load()
    assert "S3CR3T" not in repr(store) + repr(stored) + str(stored)


def _save_from_another_process(directory: str, version: str, index: int, results: multiprocessing.Queue[str]) -> None:
    store = DirectoryTokenStore(Path(directory))
    tokens = OAuthTokens(f"at-{index}", f"rt-{index}", EXPIRES)
    try:
        store.save(tokens, expect_version=version)
        results.put(f"won {index}")
    except StorageConflict:
        results.put("conflict")


def test_concurrent_processes_exactly_one_wins(tmp_path: Path) -> None:
    _write(tmp_path)
    version = DirectoryTokenStore(tmp_path).load().version
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[str] = context.Queue()
    processes = [
        context.Process(target=_save_from_another_process, args=(str(tmp_path), version, i, results)) for i in range(4)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1
    assert outcomes.count("conflict") == 3
    index = winners[0].split()[1]
    loaded = DirectoryTokenStore(tmp_path).load().tokens
    assert (loaded.access_token, loaded.refresh_token) == (f"at-{index}", f"rt-{index}")
