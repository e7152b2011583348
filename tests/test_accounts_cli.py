"""Two accounts, work and private, over a simulated week through the real CLI (docs/design.md §6).

Each step is one `python -m claude_matrix_bot run` (stdout sink, LOCAL_MODE) against
the loopback fake, which serves the two accounts' tokens different usage. The test
reads the JSON lines each run prints and the files it leaves behind.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from claude_matrix_bot.http import handle
from devstack.fakes.anthropic import FakeAnthropic
from tests.helpers import assert_no_secrets, bot_env, issued_secrets, payload, run_cli

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
ACCOUNTS = ("work", "priv")


@pytest.fixture
def two_accounts(tmp_path: Path, anthropic: FakeAnthropic) -> dict[str, str]:
    for name in ACCOUNTS:
        anthropic.write_tokens_dir(tmp_path / "tokens" / name, account=name)
    return bot_env(tmp_path, anthropic.base_url, anthropic.token_url, ACCOUNTS="work,priv", HEALTH_FAILURES="3")


def _set(anthropic: FakeAnthropic, account: str, week: float, reset: datetime) -> None:
    usage = payload(weekly={"seven_day": (week, reset)})
    anthropic.set_usage(usage, jitter=True, account=account)


def _by_account(alerts: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    return [(str(a["account"]), str(a["kind"]), a.get("threshold")) for a in alerts]


def test_two_accounts_over_a_week(
    tmp_path: Path, anthropic: FakeAnthropic, two_accounts: dict[str, str], start: datetime
) -> None:
    env = two_accounts
    reset = start + 3 * 24 * HOUR
    outputs: list[str] = []

    def run(now: datetime, code: int = 0) -> list[dict[str, Any]]:
        result = run_cli(env, "run", now=now)
        outputs.extend([result.stdout, result.stderr])
        assert result.code == code, result.stderr
        return result.alerts

    # Armed: one baseline per account, each led by its name, with its own numbers.
    _set(anthropic, "work", 36.0, reset)
    _set(anthropic, "priv", 12.0, reset)
    alerts = run(start)
    assert _by_account(alerts) == [("work", "armed", None), ("priv", "armed", None)]
    work_armed, priv_armed = alerts
    assert str(work_armed["plain"]).startswith("work · 📊 Claude usage watch armed")
    assert "Weekly (all models): 36%" in str(work_armed["plain"])
    assert str(priv_armed["plain"]).startswith("priv · 📊")
    assert "Weekly (all models): 12%" in str(priv_armed["plain"])
    assert str(work_armed["html"]).startswith("<b>work · 📊")
    assert work_armed["id"] != priv_armed["id"]
    assert "work" in str(work_armed["id"]) and "priv" in str(priv_armed["id"])
    assert anthropic.refresh_calls == 2, "each account refreshed its own expired tokens"
    for name in ACCOUNTS:
        assert json.loads((tmp_path / "state" / name / "state.json").read_text())["schema"] >= 2
    assert not (tmp_path / "state" / "state.json").exists(), "no single-account state beside the accounts"

    # A quiet cycle: one usage request per account, nothing printed.
    before = dict(anthropic.usage_calls_by_account)
    assert run(start + 5 * MINUTE) == []
    assert {k: anthropic.usage_calls_by_account[k] - before[k] for k in ACCOUNTS} == {"work": 1, "priv": 1}

    # Work passes 50%, priv stays: only work speaks.
    _set(anthropic, "work", 51.0, reset)
    alerts = run(start + 10 * MINUTE)
    assert _by_account(alerts) == [("work", "threshold", 50)]
    assert str(alerts[0]["plain"]).startswith("work · 🟠 Weekly (all models) usage passed 50%")
    assert alerts[0]["bucket"] == "seven_day"

    # Both pass a threshold in the same cycle: two alerts, two ids, each attributed.
    _set(anthropic, "work", 81.0, reset)
    _set(anthropic, "priv", 55.0, reset)
    alerts = run(start + 15 * MINUTE)
    assert _by_account(alerts) == [("work", "threshold", 80), ("priv", "threshold", 50)]
    assert str(alerts[1]["plain"]).startswith("priv · 🟠 Weekly (all models) usage passed 50%")
    assert len({a["id"] for a in alerts}) == 2

    # Priv's login is lost (access token revoked, refresh token spent): 401, one refresh,
    # invalid_grant. Only priv fails; work keeps alerting in the same runs.
    anthropic.revoke(account="priv")
    anthropic.revoke_refresh(account="priv")
    now = start + HOUR
    shifted = reset + 2 * HOUR
    _set(anthropic, "work", 82.0, shifted)  # an active window's reset moved: work alerts
    alerts = run(now, code=1)
    assert _by_account(alerts) == [("work", "reset_shift", None)]
    assert str(alerts[0]["plain"]).startswith("work · ⏱ Weekly (all models) reset moved")
    # Work's burn (36% to 82% in an hour) now rests on enough samples: its forecast, not priv's.
    assert _by_account(run(now + 5 * MINUTE, code=1)) == [("work", "forecast", None)]
    _set(anthropic, "work", 83.0, shifted)
    alerts = run(now + 10 * MINUTE, code=1)
    assert _by_account(alerts) == [("priv", "degraded", None)], "the third failure in a row: priv is degraded"
    assert str(alerts[0]["plain"]).startswith("priv · 🚨 Claude usage watch is failing")
    assert "invalid_grant" in str(alerts[0]["plain"])
    assert run(now + 15 * MINUTE, code=1) == [], "once per episode"
    work_state = json.loads((tmp_path / "state" / "work" / "state.json").read_text())
    priv_state = json.loads((tmp_path / "state" / "priv" / "state.json").read_text())
    assert work_state["health"]["consecutive_failures"] == 0
    assert priv_state["health"]["consecutive_failures"] == 4

    # While priv is down, the run's summary names it, and work's threshold still reaches the room.
    anthropic.set_usage(payload(weekly={"seven_day": (60.0, shifted)}), account="work")
    result = run_cli(env, "run", now=now + 20 * MINUTE)
    assert result.code == 1
    assert "priv:" in result.stderr and "invalid_grant" in result.stderr

    # Priv logs in again (new tokens in its directory): recovered, and its numbers are back.
    anthropic.write_tokens_dir(tmp_path / "tokens" / "priv", account="priv")
    _set(anthropic, "priv", 56.0, reset)
    alerts = run(now + 25 * MINUTE)
    assert _by_account(alerts) == [("priv", "recovered", None)]
    assert str(alerts[0]["plain"]).startswith("priv · ✅")

    # The refresh chains were never crossed: each account's newest refresh token is on disk, unspent.
    for name in ACCOUNTS:
        stored = (tmp_path / "tokens" / name / "refreshToken").read_text().strip()
        assert anthropic.account_of(stored) == name
        assert anthropic.is_unused_refresh(stored)
    assert not (tmp_path / "tokens" / "accessToken").exists()

    # status shows every account.
    status = run_cli(env, "status", now=now + 30 * MINUTE)
    assert status.code == 0, status.stderr
    assert "account work:" in status.stdout and "account priv:" in status.stdout
    assert status.stdout.count("Weekly (all models)") == 2
    report = json.loads(run_cli(env, "status", "--json", now=now + 30 * MINUTE).stdout)
    assert set(report["accounts"]) == {"work", "priv"}
    assert report["accounts"]["work"]["buckets"]["seven_day"]["utilization"] == 60.0
    assert report["accounts"]["priv"]["buckets"]["seven_day"]["utilization"] == 56.0
    assert report["accounts"]["priv"]["health"]["consecutive_failures"] == 0
    assert_no_secrets(issued_secrets(anthropic), *outputs, status.stdout, status.stderr)


def test_one_account_failing_fails_the_http_trigger_and_names_it(
    tmp_path: Path, anthropic: FakeAnthropic, two_accounts: dict[str, str], start: datetime
) -> None:
    reset = start + 48 * HOUR
    _set(anthropic, "work", 20.0, reset)
    _set(anthropic, "priv", 20.0, reset)
    anthropic.fail_next("usage", 503, account="work")
    env = {**two_accounts, "NOW_OVERRIDE": start.isoformat()}

    response = handle("POST", {}, b"", env)

    assert response.status == 502, response.body
    assert response.body["status"] == "failed"
    assert response.body["failure"] == "upstream"
    assert response.body["error"].startswith("work: ")
    assert response.body["accounts"]["work"]["status"] == "failed"
    assert response.body["accounts"]["priv"] == {"status": "ok", "new_alerts": 1, "delivered": 1, "pending": 0}
    assert json.loads((tmp_path / "state" / "priv" / "state.json").read_text())["armed_at"]


def test_the_single_account_layout_is_unchanged(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime
) -> None:
    # No ACCOUNTS: tokens in OAUTH_TOKENS_DIR itself, state.json at the root, messages and
    # ids exactly as before (no account name, no `account` field).
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    anthropic.set_usage(payload(weekly={"seven_day": (60.0, start + 48 * HOUR)}))

    result = run_cli(env, "run", now=start)

    assert result.code == 0, result.stderr
    (alert,) = result.alerts
    assert "account" not in alert
    assert str(alert["plain"]).startswith("📊 Claude usage watch armed")
    assert str(alert["html"]).startswith("<b>📊")
    assert str(alert["id"]).startswith("cmb-armed-")
    assert (tmp_path / "state" / "state.json").exists()
    assert sorted(p.name for p in (tmp_path / "state").iterdir() if p.is_dir()) == []
    assert anthropic.is_unused_refresh((tokens_dir / "refreshToken").read_text().strip())
    report = json.loads(run_cli(env, "status", "--json", now=start).stdout)
    assert "accounts" not in report
    assert report["buckets"]["seven_day"]["utilization"] == 60.0


def test_a_bad_accounts_value_stops_the_run_before_any_io(tmp_path: Path, anthropic: FakeAnthropic) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, ACCOUNTS="work,Priv Account")

    result = run_cli(env, "run")

    assert result.code == 2
    assert "ACCOUNTS" in result.stderr and "'Priv Account'" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "state").exists(), "nothing written before the configuration is valid"
    assert anthropic.usage_calls == 0


def test_a_missing_account_directory_degrades_only_that_account(
    tmp_path: Path, anthropic: FakeAnthropic, start: datetime
) -> None:
    anthropic.write_tokens_dir(tmp_path / "tokens" / "work", account="work")
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, ACCOUNTS="work,priv", HEALTH_FAILURES="1")
    _set(anthropic, "work", 20.0, start + 48 * HOUR)

    result = run_cli(env, "run", now=start)

    assert result.code == 1
    assert _by_account(result.alerts) == [("work", "armed", None), ("priv", "degraded", None)]
    assert "tokens/priv" in str(result.alerts[1]["plain"])


def test_one_accounts_unreadable_state_stops_only_that_account(
    tmp_path: Path, anthropic: FakeAnthropic, two_accounts: dict[str, str], start: datetime
) -> None:
    """docs/design.md §6: one account's failure never stops the others — a state file of a
    future schema (§4: refused, left untouched) included."""
    future = b'{"schema": 99, "something_new": true}'
    (tmp_path / "state" / "priv").mkdir(parents=True)
    (tmp_path / "state" / "priv" / "state.json").write_bytes(future)
    _set(anthropic, "work", 20.0, start + 48 * HOUR)
    _set(anthropic, "priv", 20.0, start + 48 * HOUR)

    result = run_cli(two_accounts, "run", now=start)

    assert result.code == 1, "the run fails: one account failed"
    assert _by_account(result.alerts) == [("work", "armed", None)]
    assert "priv: state.json has schema 99" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "state" / "priv" / "state.json").read_bytes() == future, "left untouched"
    assert anthropic.usage_calls_by_account.get("priv", 0) == 0, "no usage request for an account it cannot record"
    status = run_cli(two_accounts, "status", now=start)
    assert "account work:" in status.stdout and "schema 99" in status.stdout
    assert status.code == 1, "an unreadable account fails status, as one unreadable file does"
