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
