"""The Kubernetes trigger shim: turns one CronJob tick into one HTTP trigger of the function.

Standard library only, so the same image (or any Python 3.11 image) can run it
with nothing else installed. `python -m shim` and the console script
`claude-matrix-bot-trigger` both call `shim.__main__.main`.

Environment:
- `FUNCTION_URL` (required): the function's URL, e.g.
  `http://claude-matrix-bot.claude-matrix-bot.svc.cluster.local`.
- `TRIGGER_TOKEN` (optional): sent as `Authorization: Bearer <token>`; never printed.
- `SHIM_MAX_ATTEMPTS` (default 4), `SHIM_BACKOFF_SEC` (default 1: waits 1, 2, 4 s
  between attempts; 0 turns the waits off), `SHIM_TIMEOUT_SEC` (default 150 per request).

Exit codes: 0 the function ran a cycle, or had nothing to do (409 another cycle
holds the lease, 429 too soon after the last poll); 1 the trigger failed (5xx or
no connection after every attempt, or a 4xx that retrying cannot fix);
2 the shim's own configuration is missing or invalid.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "ShimConfig",
    "ShimConfigError",
    "TriggerOutcome",
    "environment",
    "load_config",
    "masked",
    "summary_line",
    "trigger",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

USER_AGENT = "claude-matrix-bot-trigger/0.1"
# 409: another cycle holds the lease; 429: the last poll was less than MIN_INTERVAL_SEC ago.
# Both mean "the work is being done or was just done": the tick succeeded.
NOTHING_TO_DO = frozenset({409, 429})
_BODY_PREVIEW = 500


class ShimConfigError(ValueError):
    """The shim's environment is missing or invalid; the message names every variable at fault."""


@dataclass(frozen=True, slots=True)
class ShimConfig:
    """What one trigger needs. The token stays out of repr so it never reaches a log."""

    function_url: str
    trigger_token: str | None = field(default=None, repr=False)
    max_attempts: int = 4
    backoff_sec: float = 1.0
    timeout_sec: float = 150.0


@dataclass(frozen=True, slots=True)
class TriggerOutcome:
    """How the trigger ended: the exit code for the Job, the last HTTP status (None: no answer)."""

    exit_code: int
    status: int | None
    body: str
    attempts: int


def _redacted(url: str) -> str:
    """The URL without any user:password part, for log lines."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


MASK = "[redacted]"


def masked(text: str, token: str | None) -> str:
    """`text` with the trigger token blanked: a function (or a proxy) that echoes the
    request must not make the shim print its token (issue 21)."""
    return text.replace(token, MASK) if token else text


def load_config(env: Mapping[str, str]) -> ShimConfig:
    """Read the shim's variables from `env`; raise one `ShimConfigError` naming every problem."""
    problems: list[str] = []

    url = env.get("FUNCTION_URL", "").strip()
    if not url:
        problems.append("FUNCTION_URL: required (the function's http(s) URL)")
    else:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"FUNCTION_URL: expected an http(s) URL, got {_redacted(url)!r}")

    token = env.get("TRIGGER_TOKEN", "").strip() or None
    if token is not None and any(ch in token for ch in "\r\n\0"):
        # A header value with a line break would let the token smuggle a second header.
        problems.append("TRIGGER_TOKEN: contains a line break or NUL (value not shown)")

    def number(name: str, default: float, *, minimum: float, whole: bool) -> float:
        text = env.get(name, "").strip()
        if not text:
            return default
        try:
            value = float(int(text)) if whole else float(text)
        except ValueError:
            problems.append(f"{name}: expected a {'whole ' if whole else ''}number, got {text!r}")
            return default
        if value < minimum:
            problems.append(f"{name}: must be at least {minimum:g}, got {text!r}")
            return default
        return value

    attempts = int(number("SHIM_MAX_ATTEMPTS", 4, minimum=1, whole=True))
    backoff = number("SHIM_BACKOFF_SEC", 1.0, minimum=0, whole=False)
    timeout = number("SHIM_TIMEOUT_SEC", 150.0, minimum=1, whole=False)

    if problems:
        raise ShimConfigError("invalid trigger configuration: " + "; ".join(problems))
    return ShimConfig(
        function_url=url, trigger_token=token, max_attempts=attempts, backoff_sec=backoff, timeout_sec=timeout
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would replay a redirected POST as a GET; a redirect here is a misconfigured URL."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _post(config: ShimConfig) -> tuple[int, str]:
    """One POST of an empty JSON object; returns (status, body). Raises OSError on no answer."""
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
    if config.trigger_token is not None:
        headers["Authorization"] = f"Bearer {config.trigger_token}"
    # The scheme was checked to be http(s) in load_config, so no file:// or custom opener is reachable.
    request = urllib.request.Request(config.function_url, data=b"{}", headers=headers, method="POST")  # noqa: S310
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(request, timeout=config.timeout_sec) as response:
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read().decode("utf-8", "replace")
    except urllib.error.URLError as exc:
        # Unwrap so callers see the socket-level reason (refused, unknown host, timeout).
        reason = exc.reason
        raise reason if isinstance(reason, OSError) else ConnectionError(str(reason)) from exc


def _log(stream: IO[str], message: str) -> None:
    print(f"claude-matrix-bot-trigger: {message}", file=stream, flush=True)


def trigger(
    config: ShimConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
    log: IO[str] | None = None,
) -> TriggerOutcome:
    """POST one trigger with bounded retries on connection errors and 5xx.

    Waits `backoff_sec * 2**(n-1)` seconds after the n-th failed attempt; `sleep`
    is the testing switch (tests pass a recorder instead of sleeping).
    """
    stream = log if log is not None else sys.stderr
    target = _redacted(config.function_url)
    status: int | None = None
    body = ""
    for attempt in range(1, config.max_attempts + 1):
        try:
            status, body = _post(config)
        except (OSError, http.client.HTTPException) as exc:
            status, body = None, ""
            problem = masked(f"no answer from {target} ({type(exc).__name__}: {exc})", config.trigger_token)
        else:
            if 200 <= status < 300:
                _log(stream, f"HTTP {status}: cycle done (attempt {attempt}/{config.max_attempts})")
                return TriggerOutcome(EXIT_OK, status, body, attempt)
            if status in NOTHING_TO_DO:
                reason = "another cycle holds the lease" if status == 409 else "too soon after the last poll"
                _log(stream, f"HTTP {status}: {reason}; nothing to do")
                return TriggerOutcome(EXIT_OK, status, body, attempt)
            preview = masked(body, config.trigger_token)[:_BODY_PREVIEW].strip()
            if status < 500:
                _log(stream, f"HTTP {status} from {target}: not retried: {preview}")
                return TriggerOutcome(EXIT_FAILED, status, body, attempt)
            problem = f"HTTP {status} from {target}: {preview}"
        if attempt == config.max_attempts:
            _log(stream, f"attempt {attempt}/{config.max_attempts}: {problem}; giving up")
            break
        delay = config.backoff_sec * 2 ** (attempt - 1)
        _log(stream, f"attempt {attempt}/{config.max_attempts}: {problem}; retrying in {delay:g}s")
        if delay > 0:
            sleep(delay)
    return TriggerOutcome(EXIT_FAILED, status, body, config.max_attempts)


def summary_line(body: str) -> str:
    """The function's JSON summary on one line (as sent, when it is not JSON)."""
    try:
        return json.dumps(json.loads(body), separators=(",", ":"), sort_keys=True)
    except ValueError:
        return body.strip()


def environment() -> Mapping[str, str]:
    """The process environment (a seam for tests that call `main` in-process)."""
    return os.environ
