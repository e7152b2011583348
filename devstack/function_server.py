"""The HTTP function as production serves it (`python -m claude_matrix_bot.serve`: functions-framework's
app on gunicorn with request limits, the image's CMD) on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx

from .bot import REPO
from .synapse import free_port

PRODUCTION_SOURCE = REPO / "function" / "main.py"


class FunctionServer:
    """A server process serving `target` from `source` with exactly `env` (plus
    PATH and PYTHONPATH); stdout and stderr go to `log`. `start()` returns once `GET /` answers."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        log: Path,
        cwd: Path,
        source: Path = PRODUCTION_SOURCE,
        target: str = "watch",
        inherit_env: bool = False,
    ) -> None:
        self.env = {**(os.environ if inherit_env else {}), "PATH": os.environ.get("PATH", ""), **env}
        self.env.setdefault("PYTHONPATH", os.pathsep.join([str(REPO / "function"), str(REPO)]))
        self.log = log
        self.cwd = cwd
        self.source = source
        self.target = target
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> FunctionServer:
        # As the image serves it: functions-framework's app on gunicorn with request limits.
        argv = [sys.executable, "-m", "claude_matrix_bot.serve", "--source", str(self.source), "--target", self.target]
        argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("ab") as out:
            # Its own process group: gunicorn's worker goes down with it on stop().
            self._process = subprocess.Popen(
                argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=self.cwd, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        # With TRIGGER_TOKEN set, GET / needs it too (docs/design.md §5).
        token = (self.env.get("TRIGGER_TOKEN") or "").strip()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self.stop()
                raise RuntimeError(f"functions-framework exited; see {self.log}:\n{self._log_tail()}")
            try:
                if httpx.get(self.url + "/", headers=headers, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"functions-framework did not answer within {timeout:.0f} s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-4000:]
        return ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def __enter__(self) -> FunctionServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
