"""LOG_FORMAT=json (issue 12): one JSON object per stderr line, a cycle id shared by the
lines of one cycle, secrets masked as in the text format; text stays the default."""

from __future__ import annotations

import json
from pathlib import Path

from devstack.fakes.anthropic import FakeAnthropic
from tests.helpers import bot_env, issued_secrets, run_cli


def _lines(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


def test_json_lines_carry_time_level_logger_message_and_one_cycle_id(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, LOG_FORMAT="json")
    first, second = run_cli(env, "run"), run_cli(env, "run")
    assert first.code == 0 and second.code == 0, first.stderr
    ids = []
    for result in (first, second):
        lines = _lines(result.stderr)  # every line parses, or json.loads raises
        assert len(lines) >= (2 if result is first else 1), result.stderr  # the first run logs its armed alert too
        for line in lines:
            assert set(line) == {"time", "level", "logger", "message", "cycle"}
            assert str(line["time"]).endswith("Z") and line["level"] in ("INFO", "WARNING", "ERROR")
            assert str(line["logger"]).startswith("claude_matrix_bot")
        cycle_ids = {line["cycle"] for line in lines}
        assert len(cycle_ids) == 1 and None not in cycle_ids, cycle_ids
        ids.append(cycle_ids.pop())
    assert ids[0] != ids[1], "each cycle has its own id"


def test_json_lines_are_masked_like_text_lines(tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path) -> None:
    refresh_token = (tokens_dir / "refreshToken").read_text().strip()
    # An upstream that echoes the refresh token in its error body (the log line quotes it).
    anthropic.fail_next("usage", 502, body=f"upstream trouble, refresh_token={refresh_token}")
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, LOG_FORMAT="json", HEALTH_FAILURES="5")
    result = run_cli(env, "run")
    assert result.code == 1
    lines = _lines(result.stderr)
    assert any("[redacted]" in str(line["message"]) for line in lines), result.stderr
    for secret in issued_secrets(anthropic):
        assert secret not in result.stderr


def test_text_stays_the_default(tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path) -> None:
    result = run_cli(bot_env(tmp_path, anthropic.base_url, anthropic.token_url), "run")
    assert result.code == 0
    assert result.stderr.strip() and not result.stderr.lstrip().startswith("{")
    assert " INFO claude_matrix_bot" in result.stderr


def test_a_refused_configuration_is_one_json_line_too(tmp_path: Path, anthropic: FakeAnthropic) -> None:
    """With LOG_FORMAT=json a log shipper reads every stderr line as JSON, the message that
    stops the run before any I/O (docs/design.md §3) included."""
    env = bot_env(
        tmp_path, anthropic.base_url, anthropic.token_url, LOG_FORMAT="json", WEEKLY_THRESHOLDS="x", HEALTH_FAILURES="0"
    )
    for command in ("run", "status"):
        result = run_cli(env, command)
        assert result.code == 2 and result.stdout == ""
        [line] = _lines(result.stderr)
        assert line["level"] == "ERROR"
        assert "WEEKLY_THRESHOLDS" in str(line["message"]) and "HEALTH_FAILURES" in str(line["message"])
    assert anthropic.usage_calls == 0
