"""Fault catalogue, storage rows (issue 7), through the real CLI (a subprocess) on every
backend that enforces compare-and-swap: a directory, S3 (moto's server) and GCS (the
generation-enforcing loopback server).

A compare-and-swap conflict is provoked honestly: the cycle is parked inside a slow
usage call (after it read state.json), and another writer changes state.json meanwhile.
Read-only and full directories are real: a read-only bind mount and a 64 KiB tmpfs
(this needs root or CAP_SYS_ADMIN, which the CI container has).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from claude_matrix_bot.state import State, dump_state
from claude_matrix_bot.store.base import ANY
from claude_matrix_bot.store.lease import LEASE_KEY, acquire_lease
from devstack.fakes.anthropic import FakeAnthropic, write_tokens_dir
from tests.helpers import REPO, CliResult, assert_no_secrets, bot_env, issued_secrets, payload, run_cli

if TYPE_CHECKING:
    from tests.fakes.storage_servers import Backend


STORE_ENV = ("AWS_", "STORAGE_EMULATOR_HOST")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _usage(now: datetime, weekly: float = 40.0) -> dict[str, Any]:
    return payload(five_hour=(5.0, now + timedelta(hours=2)), weekly={"seven_day": (weekly, now + timedelta(days=3))})


def _env(tmp_path: Path, fake: FakeAnthropic, state_url: str, **extra: str) -> dict[str, str]:
    """The bot's environment, plus what the backend fixture set for the object stores."""
    env = bot_env(tmp_path, fake.base_url, fake.token_url, STATE_URL=state_url, **extra)
    env.update({k: v for k, v in os.environ.items() if k.startswith(STORE_ENV)})
    return env


def _clean_failure(result: CliResult, fake: FakeAnthropic, says: str) -> None:
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == "", "no alert escapes a cycle that could not record it"
    assert says in result.stderr, result.stderr
    assert_no_secrets(issued_secrets(fake), result.stderr)


# --- compare-and-swap and the lease on every backend ----------------------------------------


def test_cas_conflict_is_a_clean_failure(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, shared_cas_backend: Backend
) -> None:
    now = _now()
    env = _env(tmp_path, anthropic, shared_cas_backend.url)
    usage = _usage(now)
    anthropic.fail_next("usage", 200, body=usage, delay=1.5)  # the cycle waits here, state.json read
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO / "function"), **env}
    full["NOW_OVERRIDE"] = now.isoformat()
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_matrix_bot", "run"],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while anthropic.usage_calls == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    # Another writer that ignores the lease (a run that stalled past its lease, an old release).
    theirs = dump_state(State(note="written by another writer"))
    shared_cas_backend.open().write("state.json", theirs, expect=ANY)
    out, err = proc.communicate(timeout=30)
    _clean_failure(CliResult(proc.returncode, out, err), anthropic, "state store failed")
    store = shared_cas_backend.open()
    assert store.read("state.json")[0] == theirs, "the other writer's state is not overwritten"
    with pytest.raises(FileNotFoundError):
        store.read(LEASE_KEY)  # released on the way out
    again = run_cli(env, "run", now=now + timedelta(minutes=5))
    assert again.code == 0, again.stderr
    assert again.kinds() == ["armed"], "the alert that could not be recorded is decided again"


def test_live_lease_means_nothing_to_do(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, shared_cas_backend: Backend
) -> None:
    now = _now()
    acquire_lease(shared_cas_backend.open(), holder="a-live-run", now=now, ttl_sec=240)
    result = run_cli(_env(tmp_path, anthropic, shared_cas_backend.url), "run", now=now + timedelta(seconds=30))
    assert result.code == 0, result.stderr
    assert result.stdout == ""
    assert "another cycle is running" in result.stderr
    assert anthropic.usage_calls == 0


@pytest.mark.parametrize("left_behind", ["expired", "unreadable"])
def test_lease_left_by_a_crashed_run_is_taken_over(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, shared_cas_backend: Backend, left_behind: str
) -> None:
    now = _now()
    store = shared_cas_backend.open()
    if left_behind == "expired":
        acquire_lease(store, holder="a-dead-run", now=now - timedelta(minutes=5), ttl_sec=240)
    else:
        store.write(LEASE_KEY, b'{"holder": "a-dead-run", "expires_at": ', expect=ANY)
    anthropic.set_usage(_usage(now))
    result = run_cli(_env(tmp_path, anthropic, shared_cas_backend.url), "run", now=now)
    assert result.code == 0, result.stderr
    assert result.kinds() == ["armed"]


def test_corrupt_state_is_moved_aside_on_every_backend(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, shared_cas_backend: Backend
) -> None:
    now = _now()
    store = shared_cas_backend.open()
    store.write("state.json", b"\x00\xffgarbage", expect=ANY)
    anthropic.set_usage(_usage(now))
    result = run_cli(_env(tmp_path, anthropic, shared_cas_backend.url), "run", now=now)
    assert result.code == 0, result.stderr
    [armed] = result.alerts
    assert armed["kind"] == "armed" and "moved aside" in armed["plain"]
    aside = [k for k in store.list("") if k.startswith("state.json.corrupt-")]
    assert len(aside) == 1 and store.read(aside[0])[0] == b"\x00\xffgarbage", "kept, never deleted"


def test_future_schema_is_refused_every_time_and_left_untouched(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, shared_cas_backend: Backend
) -> None:
    now = _now()
    store = shared_cas_backend.open()
    future = b'{"schema": 3, "buckets": {}, "something_new": true}'
    store.write("state.json", future, expect=ANY)
    env = _env(tmp_path, anthropic, shared_cas_backend.url)
    for minutes in (0, 5):
        result = run_cli(env, "run", now=now + timedelta(minutes=minutes))
        _clean_failure(result, anthropic, "schema 3")
        assert "upgrade the bot" in result.stderr
    assert store.read("state.json")[0] == future
    assert [k for k in store.list("") if "corrupt" in k] == [], "not mistaken for a corrupt file"
    assert anthropic.usage_calls == 0


# --- a read-only or full directory (real mounts) ------------------------------------------------


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"needs root or CAP_SYS_ADMIN to mount ({done.stderr.strip()})")


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], check=True)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` as a read-only bind mount of itself (root ignores mode bits, not mount flags)."""
    _mount("--bind", str(path), str(path))
    try:
        _mount("-o", "remount,bind,ro", str(path))
        yield
    finally:
        _umount(path)


@contextlib.contextmanager
def small_tmpfs(path: Path) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(path))
    try:
        yield
    finally:
        _umount(path)


def test_read_only_state_directory(tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path) -> None:
    now = _now()
    state = tmp_path / "state"
    env = _env(tmp_path, anthropic, state.as_uri())
    anthropic.set_usage(_usage(now))
    assert run_cli(env, "run", now=now).code == 0
    before = (state / "state.json").read_bytes()
    anthropic.set_usage(_usage(now, weekly=55.0))
    with read_only(state):
        result = run_cli(env, "run", now=now + timedelta(minutes=5))
    _clean_failure(result, anthropic, "Read-only file system")
    assert (state / "state.json").read_bytes() == before
    assert anthropic.usage_calls == 1, "nothing fetched for a state that cannot be written"
    after = run_cli(env, "run", now=now + timedelta(minutes=10))
    assert [(a["kind"], a.get("threshold")) for a in after.alerts] == [("threshold", 50)]


def test_read_only_tokens_directory_never_spends_the_refresh_token(tmp_path: Path, anthropic: FakeAnthropic) -> None:
    tokens = tmp_path / "tokens"
    issued = anthropic.issue_tokens()
    write_tokens_dir(tokens, issued.access_token, issued.refresh_token, int(time.time() * 1000) - 60_000)
    env = _env(tmp_path, anthropic, (tmp_path / "state").as_uri())
    with read_only(tokens):
        result = run_cli(env, "run", now=_now())
    _clean_failure(result, anthropic, "not writable")
    assert anthropic.refresh_calls == 0, "a refresh whose result cannot be saved is not attempted"
    assert anthropic.is_unused_refresh(issued.refresh_token)


def test_full_state_directory(tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path) -> None:
    now = _now()
    state = tmp_path / "state"
    env = _env(tmp_path, anthropic, state.as_uri())
    with small_tmpfs(state):
        anthropic.set_usage(_usage(now))
        assert run_cli(env, "run", now=now).code == 0
        before = (state / "state.json").read_bytes()
        # Fill the filesystem, then free one page: enough for the lease, not for the state.
        fillers = _fill(state / "filler")
        fillers.pop().unlink()
        anthropic.set_usage(_usage(now, weekly=55.0))
        result = run_cli(env, "run", now=now + timedelta(minutes=5))
        _clean_failure(result, anthropic, "disk full")
        assert (state / "state.json").read_bytes() == before, "the old state is whole"
        assert not [p for p in state.iterdir() if p.name.endswith(".tmp")], "no temp file left behind"
        for filler in fillers:
            filler.unlink()
        after = run_cli(env, "run", now=now + timedelta(minutes=10))
        assert after.code == 0, after.stderr
        assert [(a["kind"], a.get("threshold")) for a in after.alerts] == [("threshold", 50)]
        assert json.loads((state / "state.json").read_text())["outbox"] == []


def _fill(directory: Path) -> list[Path]:
    directory.mkdir()
    files: list[Path] = []
    for index in range(1000):
        path = directory / f"{index}"
        try:
            path.write_bytes(b"\0" * 4096)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            path.unlink(missing_ok=True)
            return files
        files.append(path)
    raise AssertionError("the tmpfs never filled up")
