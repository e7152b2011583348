"""The bot as the development stack runs it: its environment, and its CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


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


def run_cli(
    env: Mapping[str, str], *args: str, now: datetime | None = None, timeout: float = 60, cwd: Path | None = None
) -> CliResult:
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
        cwd=cwd,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@dataclass(frozen=True, slots=True)
class CycleRun:
    """One `claude-matrix-bot run`: its exit code and the cycle's result object (the
    summary the CLI reports, `CycleResult.to_json()`; empty when no cycle ran, e.g. exit 2)."""

    code: int
    result: dict[str, Any]
    cli: CliResult


def run_cycle(
    env: Mapping[str, str], *, now: datetime | None = None, timeout: float = 60, cwd: Path | None = None
) -> CycleRun:
    """`run` with LOG_FORMAT=json, so the result is read as JSON records, not scraped from text."""
    cli = run_cli({**env, "LOG_FORMAT": "json"}, "run", now=now, timeout=timeout, cwd=cwd)
    return CycleRun(cli.code, cycle_result(cli.stderr), cli)


def cycle_result(stderr: str) -> dict[str, Any]:
    """The result object of the CLI's JSON log: its last record from the `claude_matrix_bot`
    logger is `cycle <status>: <the result as JSON>`."""
    for line in reversed(stderr.splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("logger") != "claude_matrix_bot":
            continue
        head, _, body = str(record.get("message", "")).partition(": ")
        if head.startswith("cycle ") and body.startswith("{"):
            result: dict[str, Any] = json.loads(body)
            return result
    return {}


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
