"""The seed's live smoke test: one real request to the usage endpoint.

Skipped unless LIVE_TOKENS_DIR names a directory with `accessToken` (and `expiresAt`),
as written by scripts/bootstrap-local.sh into local/oauth-tokens. It never refreshes:
a refresh would rotate the refresh token that the bot (or the laptop) still holds.
Run: LIVE_TOKENS_DIR=local/oauth-tokens pytest -m live tests/test_live.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from claude_matrix_bot.settings import DEFAULT_BASE_URL, DEFAULT_USER_AGENT
from claude_matrix_bot.usage import UsageClient
from devstack.fakes.anthropic import FakeAnthropic

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def live_access_token() -> str:
    directory = os.environ.get("LIVE_TOKENS_DIR")
    if not directory:
        pytest.skip("LIVE_TOKENS_DIR is not set: the live test needs a real Claude login")
    tokens = Path(directory)
    token = (tokens / "accessToken").read_text().strip()
    assert token, f"{tokens}/accessToken is empty"
    expires_file = tokens / "expiresAt"
    if expires_file.exists():
        expires_at = datetime.fromtimestamp(int(expires_file.read_text().strip()) / 1000, UTC)
        if expires_at <= datetime.now(UTC):
            pytest.fail(
                f"the access token in {tokens} expired at {expires_at:%Y-%m-%d %H:%M}Z; "
                "log in again and re-run scripts/bootstrap-local.sh (this test never refreshes)"
            )
    return token


@pytest.mark.live
def test_live_usage_reading_parses(live_access_token: str) -> None:
    now = datetime.now(UTC)
    base_url = os.environ.get("ANTHROPIC_BASE_URL", DEFAULT_BASE_URL)
    user_agent = os.environ.get("ANTHROPIC_USER_AGENT", DEFAULT_USER_AGENT)
    with UsageClient(base_url=base_url, user_agent=user_agent) as client:
        reading = client.fetch(live_access_token, now)
    assert reading.buckets, "the endpoint answered no usage bucket at all"
    assert "five_hour" in reading.buckets or "seven_day" in reading.buckets
    for name, bucket in reading.buckets.items():
        assert 0.0 <= bucket.utilization <= 100.0, f"{name}: utilization {bucket.utilization} is not a percentage"
        if bucket.resets_at is not None:
            # A little slack before now: resets_at jitters by sub-seconds and clocks differ.
            assert now - timedelta(minutes=5) <= bucket.resets_at <= now + timedelta(days=8), (
                f"{name}: resets_at {bucket.resets_at.isoformat()} is not within the next 8 days"
            )


# --- the live test itself, pointed at the loopback fake: it must pass on a sane answer
# and fail on a broken one (so a green live run means something).


def _run_live_test(fake: FakeAnthropic, tokens: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LIVE_TOKENS_DIR": str(tokens), "ANTHROPIC_BASE_URL": fake.base_url}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "live", str(Path(__file__))],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _usage(now: datetime, utilization: float, resets_in: timedelta) -> dict[str, Any]:
    window = {"utilization": utilization, "resets_at": (now + resets_in).isoformat()}
    return {"five_hour": window, "seven_day": window, "seven_day_opus": None}


@pytest.mark.parametrize(
    ("utilization", "resets_in", "passes"),
    [
        (36.0, timedelta(days=3), True),
        (36.0, -timedelta(days=1), False),  # a window that already ended
        (36.0, timedelta(days=30), False),  # not a weekly window
    ],
)
def test_live_test_checks_what_it_claims(
    tmp_path: Path, utilization: float, resets_in: timedelta, passes: bool
) -> None:
    with FakeAnthropic() as fake:
        fake.write_tokens_dir(tmp_path / "tokens")
        fake.set_usage(_usage(datetime.now(UTC), utilization, resets_in))
        result = _run_live_test(fake, tmp_path / "tokens")
        assert fake.usage_calls == 1
    assert (result.returncode == 0) is passes, result.stdout
    assert "1 passed" in result.stdout if passes else "1 failed" in result.stdout
