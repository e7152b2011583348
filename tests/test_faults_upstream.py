"""Fault catalogue, upstream rows (issue 7): the usage endpoint and the token endpoint
misbehave in every way we know of, and the real CLI (`python -m claude_matrix_bot run`,
a subprocess) answers each with a clean, named failure that the health counter sees.

Every row checks the same promises: exit 1 (never a traceback), nothing on stdout (no
alert made of a garbled reading), the failure recorded in state.json, no secret in any
output, and the next healthy run works (nothing stuck, no refresh token lost).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack.fakes.anthropic import (
    HTML_BODY,
    INFERENCE_ONLY,
    TRUNCATED_JSON,
    WRONG_SHAPE_JSON,
    FakeAnthropic,
    write_tokens_dir,
)
from tests.helpers import REPO, CliResult, assert_no_secrets, bot_env, issued_secrets, payload, run_cli

# usage.DEFAULT_TIMEOUT is 10 s: a delay beyond it is a real client timeout.
BEYOND_CLIENT_TIMEOUT = 12.0


def _now() -> datetime:
    # Real time: the fake's fresh tokens (valid one hour) are not due for a refresh.
    return datetime.now(UTC).replace(microsecond=0)


def _usage(now: datetime) -> dict[str, Any]:
    return payload(five_hour=(20.0, now + timedelta(hours=3)), weekly={"seven_day": (40.0, now + timedelta(days=3))})


def _state(tmp_path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((tmp_path / "state" / "state.json").read_text())
    return doc


def _assert_clean_failure(result: CliResult, fake: FakeAnthropic, tmp_path: Path, says: str) -> None:
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == "", "no alert from a failed reading"
    assert says in result.stderr, result.stderr
    health = _state(tmp_path)["health"]
    assert health["consecutive_failures"] >= 1
    assert says in health["last_error"]
    assert_no_secrets(issued_secrets(fake), result.stdout, result.stderr, json.dumps(_state(tmp_path)))


def _assert_recovers(env: dict[str, str], fake: FakeAnthropic, tmp_path: Path, now: datetime) -> None:
    fake.set_usage(_usage(now))
    result = run_cli(env, "run", now=now + timedelta(minutes=5))
    assert result.code == 0, result.stderr
    assert result.kinds() == ["armed"], "the first good reading arms the bot"
    assert _state(tmp_path)["health"]["consecutive_failures"] == 0
    assert fake.invalid_grants == 0


# --- the usage endpoint ------------------------------------------------------------------

USAGE_FAULTS: list[tuple[str, dict[str, Any], str]] = [
    ("429-with-retry-after", {"status": 429, "headers": {"Retry-After": "120"}}, "retry after 120s"),
    ("429-without-retry-after", {"status": 429}, "rate-limited the call (429)"),
    ("500", {"status": 500}, "failed (500)"),
    ("502-html", {"status": 502, "body": HTML_BODY}, "failed (502)"),
    ("503", {"status": 503}, "failed (503)"),
    ("connection-dropped", {"drop": True}, "unreachable"),
    ("200-html", {"status": 200, "body": HTML_BODY}, "not JSON (text/html"),
    ("200-truncated-json", {"status": 200, "body": TRUNCATED_JSON}, "not JSON"),
    ("200-json-list", {"status": 200, "body": WRONG_SHAPE_JSON}, "JSON list, not an object"),
    ("200-object-without-buckets", {"status": 200, "body": {"error": "maintenance"}}, "no usage limit in the answer"),
    (
        "200-utilization-above-range",
        {"status": 200, "body": {"seven_day": {"utilization": 4200.0, "resets_at": None}}},
        "is not a percentage",
    ),
    (
        "200-utilization-negative",
        {"status": 200, "body": {"seven_day": {"utilization": -12.5, "resets_at": None}}},
        "is not a percentage",
    ),
    (
        "200-utilization-a-string",
        {"status": 200, "body": {"seven_day": {"utilization": "36%", "resets_at": None}}},
        "not a number",
    ),
    (
        "200-resets-at-garbage",
        {"status": 200, "body": {"five_hour": {"utilization": 3.0, "resets_at": "soon"}}},
        "not an ISO-8601 instant",
    ),
    (
        "200-resets-at-out-of-range",
        {"status": 200, "body": {"five_hour": {"utilization": 3.0, "resets_at": "0001-01-01T00:00:00+01:00"}}},
        "resets_at",
    ),
]


@pytest.mark.parametrize(("fault", "says"), [(f, s) for _, f, s in USAGE_FAULTS], ids=[i for i, _, _ in USAGE_FAULTS])
def test_usage_fault_fails_cleanly_and_the_next_run_recovers(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, fault: dict[str, Any], says: str
) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, HEALTH_FAILURES="5")
    now = _now()
    anthropic.set_usage(_usage(now))
    anthropic.fail_next("usage", **fault)
    result = run_cli(env, "run", now=now)
    _assert_clean_failure(result, anthropic, tmp_path, says)
    assert anthropic.refresh_calls == 0, "only a 401 may spend a refresh token"
    _assert_recovers(env, anthropic, tmp_path, now)


def test_429_summary_carries_retry_after_and_the_bot_never_sleeps_on_it(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    anthropic.fail_next("usage", 429, headers={"Retry-After": "3600"})
    result = run_cli(env, "run", now=_now())
    assert result.code == 1
    summary = json.loads(result.stderr.split("cycle failed: ", 1)[1].splitlines()[0])
    assert summary == {**summary, "status": "failed", "failure": "upstream", "retry_after": 3600.0}
    assert anthropic.usage_calls == 1, "no retry inside the run: the next tick is the retry"


def test_a_user_agent_that_is_not_claude_code_is_named_on_429(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, ANTHROPIC_USER_AGENT="python-httpx/0.28")
    result = run_cli(env, "run", now=_now())
    _assert_clean_failure(result, anthropic, tmp_path, "ANTHROPIC_USER_AGENT")


def test_403_names_the_missing_scope(tmp_path: Path, anthropic: FakeAnthropic) -> None:
    anthropic.write_tokens_dir(tmp_path / "tokens", scopes=INFERENCE_ONLY)
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, HEALTH_FAILURES="1")
    result = run_cli(env, "run", now=_now())
    assert result.code == 1
    assert "user:profile" in result.stderr and "403" in result.stderr
    assert anthropic.refresh_calls == 0, "a 403 is not cured by a refresh"
    # HEALTH_FAILURES=1: the degraded alert says what to do.
    [degraded] = result.alerts
    assert degraded["kind"] == "degraded"
    assert "user:profile" in degraded["plain"] and "What to do:" in degraded["plain"]


def test_401_refreshes_once_and_retries_once(tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    now = _now()
    anthropic.set_usage(_usage(now))
    anthropic.revoke()  # the stored access token is rejected though not expired
    result = run_cli(env, "run", now=now)
    assert result.code == 0, result.stderr
    assert result.kinds() == ["armed"]
    assert (anthropic.usage_calls, anthropic.refresh_calls) == (2, 1)
    assert anthropic.is_unused_refresh((tokens_dir / "refreshToken").read_text().strip())


def test_401_after_the_refresh_is_not_refreshed_again(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    anthropic.fail_next("usage", 401, times=5)
    result = run_cli(env, "run", now=_now())
    _assert_clean_failure(result, anthropic, tmp_path, "401")
    assert (anthropic.usage_calls, anthropic.refresh_calls) == (2, 1), "one refresh, one retry, never more"
    stored = (tokens_dir / "refreshToken").read_text().strip()
    assert anthropic.is_unused_refresh(stored), "the refreshed pair was written back"


def test_connection_refused(tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    now = _now()
    with anthropic.refusing_connections():
        result = run_cli(env, "run", now=now)
    _assert_clean_failure(result, anthropic, tmp_path, "unreachable")
    _assert_recovers(env, anthropic, tmp_path, now)


@pytest.mark.slow
def test_usage_timeout_costs_the_client_timeout_and_fails_cleanly(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    anthropic.fail_next("usage", 200, delay=BEYOND_CLIENT_TIMEOUT)
    result = run_cli(env, "run", now=_now())
    _assert_clean_failure(result, anthropic, tmp_path, "timed out")
    assert anthropic.usage_calls == 1


def test_every_bucket_null_fails_on_every_cycle_and_degrades(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    # docs/design.md §1 "never silent": an answer with no bucket carrying a number is a failed
    # cycle (a free plan, or the endpoint changed), before arming and after it.
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, HEALTH_FAILURES="2")
    now = _now()
    all_null = payload(weekly={"seven_day": None, "seven_day_sonnet": None})
    anthropic.set_usage(all_null)
    result = run_cli(env, "run", now=now)
    _assert_clean_failure(result, anthropic, tmp_path, "no usage limit in the answer: a free plan, or the endpoint")

    # Some buckets null, one with a number: arms, the null ones "not in use".
    anthropic.set_usage(payload(five_hour=(20.0, now + timedelta(hours=3)), weekly={"seven_day": None}))
    armed = run_cli(env, "run", now=now + timedelta(minutes=5))
    assert armed.code == 0, armed.stderr
    assert armed.kinds() == ["armed"] and "Weekly (all models): not in use" in str(armed.alerts[0]["plain"])
    # Buckets coming back from null are not reset shifts and not a second baseline.
    anthropic.set_usage(_usage(now))
    again = run_cli(env, "run", now=now + timedelta(minutes=10))
    assert again.code == 0 and again.alerts == []

    # All null again after arming: counted by the health rules like any failure.
    anthropic.set_usage(all_null)
    first = run_cli(env, "run", now=now + timedelta(minutes=15))
    _assert_clean_failure(first, anthropic, tmp_path, "no usage limit in the answer")
    second = run_cli(env, "run", now=now + timedelta(minutes=20))
    assert second.code == 1
    [degraded] = second.alerts
    assert degraded["kind"] == "degraded"
    assert "no usage limit in the answer" in str(degraded["plain"]) and "Pro/Max" in str(degraded["plain"])
    anthropic.set_usage(_usage(now))
    back = run_cli(env, "run", now=now + timedelta(minutes=25))
    assert back.code == 0 and back.kinds() == ["recovered"]


def test_utilization_just_over_100_is_clamped_not_refused(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    now = _now()
    anthropic.set_usage(payload(weekly={"seven_day": (100.4, now + timedelta(days=2))}))
    result = run_cli(env, "run", now=now)
    assert result.code == 0, result.stderr
    assert _state(tmp_path)["buckets"]["seven_day"]["utilization"] == 100.0


# --- the token endpoint ----------------------------------------------------------------


def _expired_tokens(fake: FakeAnthropic, directory: Path) -> str:
    """Tokens that are due for a refresh (expiresAt in the past); returns the refresh token."""
    issued = fake.issue_tokens()
    write_tokens_dir(directory, issued.access_token, issued.refresh_token, int(time.time() * 1000) - 60_000)
    return issued.refresh_token


def test_invalid_grant_says_rebootstrap_and_degrades(tmp_path: Path, anthropic: FakeAnthropic) -> None:
    spent = _expired_tokens(anthropic, tmp_path / "tokens")
    # Somebody else (a second copy of the bot, a laptop) already spent this refresh token.
    import httpx

    body = {"grant_type": "refresh_token", "refresh_token": spent, "client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e"}
    laptop = {"User-Agent": "claude-cli/2.1.281 (external, cli)"}  # Claude Code on a laptop
    assert httpx.post(anthropic.token_url, json=body, headers=laptop).status_code == 200
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, HEALTH_FAILURES="2")
    now = _now()
    first = run_cli(env, "run", now=now)
    _assert_clean_failure(first, anthropic, tmp_path, "invalid_grant")
    second = run_cli(env, "run", now=now + timedelta(minutes=5))
    assert second.code == 1
    [degraded] = second.alerts
    assert degraded["kind"] == "degraded"
    assert "invalid_grant" in degraded["plain"] and "re-bootstrap" in degraded["plain"]
    assert (tmp_path / "tokens" / "refreshToken").read_text().strip() == spent, "nothing invented, nothing erased"
    assert anthropic.usage_calls == 0, "no usage call with a token known to be stale"


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ({"status": 503}, "failed (503, OAuth error fault)"),
        ({"status": 500, "body": HTML_BODY}, "failed (500, no OAuth error code in the answer)"),
        ({"drop": True}, "unreachable"),
    ],
    ids=["503", "500-html", "connection-dropped"],
)
def test_token_endpoint_failure_keeps_the_refresh_token(
    tmp_path: Path, anthropic: FakeAnthropic, fault: dict[str, Any], says: str
) -> None:
    refresh = _expired_tokens(anthropic, tmp_path / "tokens")
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    now = _now()
    anthropic.set_usage(_usage(now))
    anthropic.fail_next("token", **fault)
    result = run_cli(env, "run", now=now)
    _assert_clean_failure(result, anthropic, tmp_path, says)
    assert (tmp_path / "tokens" / "refreshToken").read_text().strip() == refresh
    assert anthropic.is_unused_refresh(refresh)
    _assert_recovers(env, anthropic, tmp_path, now)
    assert anthropic.refresh_calls == 2


@pytest.mark.slow
def test_token_endpoint_timeout_keeps_the_refresh_token(tmp_path: Path, anthropic: FakeAnthropic) -> None:
    refresh = _expired_tokens(anthropic, tmp_path / "tokens")
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    now = _now()
    anthropic.fail_next("token", 200, delay=BEYOND_CLIENT_TIMEOUT)
    result = run_cli(env, "run", now=now)
    _assert_clean_failure(result, anthropic, tmp_path, "timed out")
    assert (tmp_path / "tokens" / "refreshToken").read_text().strip() == refresh
    _assert_recovers(env, anthropic, tmp_path, now)


def test_sigkill_right_after_a_refresh_leaves_the_new_tokens_stored(tmp_path: Path, anthropic: FakeAnthropic) -> None:
    """The process dies inside the usage call that follows a refresh: the rotated refresh
    token must already be on disk (written back before use), so nothing is locked out."""
    tokens = tmp_path / "tokens"
    old_refresh = _expired_tokens(anthropic, tokens)
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    now = _now()
    anthropic.set_usage(_usage(now))
    anthropic.fail_next("usage", 200, delay=30)  # parks the process inside the usage call
    full = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO / "function"),
        **env,
        "NOW_OVERRIDE": now.isoformat(),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_matrix_bot", "run"],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while anthropic.usage_calls == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert anthropic.usage_calls == 1 and anthropic.refresh_calls == 1, "killed inside the usage call"
    finally:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    stored = (tokens / "refreshToken").read_text().strip()
    assert stored != old_refresh and not anthropic.is_unused_refresh(old_refresh)
    assert anthropic.is_unused_refresh(stored), "the new, unspent refresh token was saved before use"
    assert anthropic.is_valid_access((tokens / "accessToken").read_text().strip())
    # The next run (after the killed run's lease expired) uses the stored tokens, no refresh.
    later = now + timedelta(minutes=5)
    anthropic.set_usage(_usage(later))
    result = run_cli(env, "run", now=later)
    assert result.code == 0, result.stderr
    assert result.kinds() == ["armed"]
    assert anthropic.refresh_calls == 1 and anthropic.invalid_grants == 0
    assert_no_secrets(issued_secrets(anthropic), out.decode(), err.decode(), result.stderr)
