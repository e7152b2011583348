"""Shared test helpers: usage payloads, running the real CLI, reading its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def iso(moment: datetime, *, jitter_us: int = 600956) -> str:
    """Format like the real endpoint: `…:59:59.600956+00:00`-style sub-seconds."""
    return moment.replace(microsecond=jitter_us % 1_000_000).isoformat()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def payload(
    *,
    five_hour: tuple[float, datetime | None] | None = None,
    weekly: Mapping[str, tuple[float, datetime | None] | None] | None = None,
    jitter_us: int = 600956,
) -> dict[str, Any]:
    """A usage answer shaped like the real one, unknown keys included."""
    out: dict[str, Any] = {
        "five_hour": None,
        "seven_day": None,
        "seven_day_opus": None,
        "seven_day_oauth_apps": None,
        "extra_usage": {"is_enabled": False, "monthly_limit": None},
        "limits": [],
    }
    if five_hour is not None:
        out["five_hour"] = _bucket(*five_hour, jitter_us)
    for name, value in (weekly or {}).items():
        out[name] = None if value is None else _bucket(*value, jitter_us)
    return out


def _bucket(utilization: float, resets_at: datetime | None, jitter_us: int) -> dict[str, Any]:
    return {"utilization": utilization, "resets_at": None if resets_at is None else iso(resets_at, jitter_us=jitter_us)}


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def kinds(self) -> list[str]:
        return [a["kind"] for a in self.alerts]


def run_cli(env: Mapping[str, str], *args: str, now: datetime | None = None, timeout: float = 60) -> CliResult:
    """Run `python -m claude_matrix_bot` in a subprocess with exactly `env` (plus PATH)."""
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO / "function"), **env}
    if now is not None:
        full["NOW_OVERRIDE"] = now.isoformat()
    proc = subprocess.run(
        [sys.executable, "-m", "claude_matrix_bot", *(args or ("run",))],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def bot_env(tmp: Path, base_url: str, token_url: str, **extra: str) -> dict[str, str]:
    """The environment of a LOCAL_MODE, stdout-sink bot whose files live under `tmp`."""
    env = {
        "LOCAL_MODE": "1",
        "ALERT_SINK": "stdout",
        "STATE_URL": (tmp / "state").as_uri(),
        "OAUTH_TOKENS_DIR": str(tmp / "tokens"),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_TOKEN_URL": token_url,
    }
    env.update(extra)
    return env


def step(start: datetime, minutes: int) -> datetime:
    return start + timedelta(minutes=minutes)


def issued_secrets(fake: Any) -> set[str]:
    """Every access and refresh token a FakeAnthropic has minted (to prove none leaks)."""
    with fake._lock:
        return set(fake._access) | set(fake._refresh)


def assert_no_secrets(secrets: set[str], *texts: str) -> None:
    assert secrets, "expected some secrets to look for"
    for text in texts:
        for secret in secrets:
            assert secret not in text, "a secret leaked into the output"
