"""A loopback fake of the Anthropic usage and OAuth token endpoints.

Real HTTP on 127.0.0.1 (a free port), so the bot's real httpx clients talk to
it. It behaves like the real service as far as docs/design.md §2 knows it:

- `GET /api/oauth/usage` needs `anthropic-beta: oauth-2025-04-20` (else 401
  "OAuth authentication is currently not supported", as the real API says), a
  `User-Agent` starting `claude-cli/` or `claude-code/` (else a persistent 429, as the real
  one); the banked-reset block `cedar_ember` of an answer is served only to
  `?cedar_ember=1` from Claude Code's `claude-cli/<version> (external, cli)`
  (`banked_resets_view`),
  and a bearer token it issued that is neither expired nor revoked (else 401);
  a token issued without the `user:profile` scope gets 403. It answers the
  current usage payload, optionally with the sub-second jitter of `resets_at`
  that the real endpoint shows (in legacy buckets and `limits[]` entries alike).
  Samples of the answers as they are today: `SAMPLE_LIMITS_ONLY` (legacy keys
  null, numbers only in `limits[]`), `SAMPLE_MIXED`, `SAMPLE_OVERAGE` (paid
  overage being spent) and `SAMPLE_EMPTY` (`{}`); `limits_only_answer()` and
  `spend_answer()` build more.
- `POST /v1/oauth/token` (a JSON body: a form is refused with 400; an agent that is not
  Claude Code's gets the CDN's 403 page) with `grant_type=refresh_token`,
  the Claude Code `client_id` and a refresh token: each refresh token works
  exactly once (reuse -> 400 `{"error": "invalid_grant"}`); it answers a new
  access token and a new refresh token with `expires_in`.

In-process use (a context manager)::

    with FakeAnthropic() as fake:
        issued = fake.write_tokens_dir(tmp_path / "tokens")
        fake.set_usage({...}, jitter=True)
        fake.fail_next("usage", 503, times=2)
        ... UsageClient(fake.base_url, "claude-code/2.0.55") ...
        fake.usage_calls, fake.refresh_calls, fake.requests

As a process (subprocess tests, the demo)::

    python -m devstack.fakes.anthropic --port 0 [--state-file S.json] [--tokens-dir DIR] [--expires-in 3600]

Several accounts (docs/design.md §6): tokens can be minted for a named account
(`issue_tokens(account="work")`); the label follows the refresh chain, and the
usage answer, faults and revocations can be set per account
(`set_usage(..., account="work")`, `fail_next(..., account="priv")`), so one
fake serves a work and a private login with different usage. Unlabelled
tokens get the default answer, as before.

prints `READY <base_url>` on stdout once it listens. With `--state-file` the
tokens, usage payload and counters are loaded from that file at start (if it
exists) and written back after every change, so a restarted fake keeps the
refresh-token chain. With `--tokens-dir` it mints a pair at start and writes it
in the `OAUTH_TOKENS_DIR` layout. The token URL is `<base_url>/v1/oauth/token`.

Control API (same server, JSON bodies, answers JSON):

- `POST /_control/usage`   `{"payload": {...}, "jitter": false, "account": null}` sets the usage
                           answer (of one account's tokens when `account` is given);
                           `{"sample": "limits_only"|"mixed"|"overage"|"empty"|"legacy"|
                           "team_seat"|"credit"|"banked"}`
                           serves one of the samples below instead of `payload`.
- `POST /_control/fail`    `{"kind": "usage"|"token"|"any", "status": 500, "body": "...",
                            "headers": {...}, "times": 1, "delay": 0.0, "drop": false,
                            "account": null}`
                           injects a fault for the next matching requests (`drop`
                           closes the connection without an answer; `delay`
                           sleeps before answering, for client timeouts, or until
                           `release_delayed()` in process).
- `POST /_control/tokens`  `{"scopes": [...], "expires_in": 3600, "tokens_dir": "/dir", "account": null}`
                           mints a valid pair; answers `{"access_token",
                           "refresh_token", "expires_at_ms"}` and, with
                           `tokens_dir`, writes the three files there.
- `POST /_control/revoke`  `{"access_token": "..."}`, `{"account": "work"}` or `{"all": true}` makes access
                           tokens invalid (the next usage call gets 401).
- `POST /_control/reset`   clears faults, counters and the request log.
- `GET  /_control/stats`   `{"usage_calls", "refresh_calls", "invalid_grants",
                           "requests": [{"method", "path", "user_agent", "beta"}, ...]}`.

All tokens here are random strings minted by the fake; none is a real secret.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
BETA = "oauth-2025-04-20"
USAGE_PATH = "/api/oauth/usage"
TOKEN_PATH = "/v1/oauth/token"
FULL_SCOPES = ("user:inference", "user:profile")
INFERENCE_ONLY = ("user:inference",)

CDN_REFUSAL = "<!DOCTYPE html><html><head><title>403 Forbidden</title></head><body>Access denied</body></html>"
HTML_BODY = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"
TRUNCATED_JSON = '{"five_hour": {"utilization": 24.0, "resets_at": "2026-01-02T19:5'
WRONG_SHAPE_JSON = '[{"five_hour": 24.0}]'

# The real sample of docs/design.md §2.
SAMPLE_USAGE: dict[str, Any] = {
    "five_hour": {"utilization": 24.0, "resets_at": "2026-01-02T19:59:59.600956+00:00"},
    "seven_day": {"utilization": 36.0, "resets_at": "2026-01-08T06:59:59.600974+00:00"},
    "seven_day_sonnet": {"utilization": 1.0, "resets_at": "2026-01-08T06:59:59.600981+00:00"},
    "seven_day_opus": None,
    "seven_day_oauth_apps": None,
    "extra_usage": {"is_enabled": False, "monthly_limit": None, "used_credits": None, "utilization": None},
}

# --- answers as they are today (docs/design.md §2), written from the contract's July 2026 sample
# and the shapes public clients recorded (see claude_matrix_bot/usage.py's docstring).

_LEGACY_NULLS: dict[str, Any] = {
    "five_hour": None,
    "seven_day": None,
    "seven_day_sonnet": None,
    "seven_day_opus": None,
    "seven_day_oauth_apps": None,
    # Code-named keys seen as null: known and ignored.
    "iguana_necktie": None,
    "tangelo": None,
    "amber_gauge": None,
}


def limit_entry(
    kind: str,
    percent: float | None,
    resets_at: str | None,
    *,
    model: str | None = None,
    surface: str | None = None,
    is_active: bool = False,
    severity: str | None = "normal",
) -> dict[str, Any]:
    """One `limits[]` entry. `model`/`surface` make a `weekly_scoped` entry's scope."""
    scope = None
    if model is not None or surface is not None:
        scope = {
            "model": None if model is None else {"id": None, "display_name": model},
            "surface": None if surface is None else {"display_name": surface},
        }
    group = "session" if kind == "session" else "weekly"
    entry: dict[str, Any] = {"kind": kind, "group": group, "percent": percent, "resets_at": resets_at}
    if severity is not None:
        entry["severity"] = severity
    entry.update(scope=scope, is_active=is_active)
    return entry


def spend_answer(
    used_minor: int | None,
    limit_minor: int | None,
    *,
    currency: str = "USD",
    exponent: int = 2,
    enabled: bool = True,
    disabled_reason: str | None = None,
) -> dict[str, Any]:
    """Both overage blocks as a current answer carries them: `spend` and the older `extra_usage`."""

    def money(minor: int | None) -> dict[str, Any] | None:
        return None if minor is None else {"amount_minor": minor, "currency": currency, "exponent": exponent}

    percent = None if not (used_minor is not None and limit_minor) else round(used_minor * 100 / limit_minor)
    return {
        "spend": {
            "used": money(used_minor),
            "limit": money(limit_minor),
            "cap": None,
            "balance": None,
            "percent": percent,
            "enabled": enabled,
            "disabled_reason": disabled_reason,
            "disclaimer": "Usage credits cover you when you hit your plan limits.",
        },
        "extra_usage": {
            "is_enabled": enabled,
            "monthly_limit": limit_minor,
            "used_credits": used_minor,
            "utilization": percent,
            "currency": currency,
            "decimal_places": exponent,
            "disabled_reason": disabled_reason,
            "daily": None,
            "weekly": None,
        },
    }


def limits_only_answer(
    *,
    session: tuple[float | None, str | None] | None = None,
    weekly_all: tuple[float | None, str | None] | None = None,
    scoped: Mapping[str, tuple[float | None, str | None]] | None = None,
    active: str | None = None,
    severities: Mapping[str, str] | None = None,
    overage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An answer whose legacy keys are all null and whose numbers live only in `limits[]`
    (docs/design.md §2, "on current accounts"). `scoped` maps a model's display name to
    (percent, resets_at); `active` names the entry that binds now ("session",
    "weekly_all" or a model's display name)."""
    sev = dict(severities or {})
    limits: list[dict[str, Any]] = []
    if session is not None:
        limits.append(
            limit_entry("session", *session, is_active=active == "session", severity=sev.get("session", "normal"))
        )
    if weekly_all is not None:
        limits.append(
            limit_entry(
                "weekly_all", *weekly_all, is_active=active == "weekly_all", severity=sev.get("weekly_all", "normal")
            )
        )
    for model, (percent, resets_at) in (scoped or {}).items():
        limits.append(
            limit_entry(
                "weekly_scoped",
                percent,
                resets_at,
                model=model,
                is_active=active == model,
                severity=sev.get(model, "normal"),
            )
        )
    answer: dict[str, Any] = {
        **_LEGACY_NULLS,
        "seven_day_breakdown": {"rows": [{"model": "Fable", "share": 0.6}]},
        "member_dashboard_available": False,
        "limits": limits,
    }
    answer.update(overage or spend_answer(None, None, enabled=False))
    return answer


# The contract's July 2026 sample: legacy keys null, numbers only in limits[], Fable binding.
SAMPLE_LIMITS_ONLY: dict[str, Any] = {
    **_LEGACY_NULLS,
    "extra_usage": {"is_enabled": False, "monthly_limit": None, "used_credits": None, "utilization": None},
    "limits": [
        limit_entry("session", 7, "2026-07-03T03:19:59Z"),
        {
            "kind": "weekly_all",
            "group": "weekly",
            "percent": 28,
            "resets_at": "2026-07-03T07:00:00Z",
            "scope": None,
            "is_active": False,
        },
        limit_entry("weekly_scoped", 35, "2026-07-03T06:59:59Z", model="Fable", is_active=True, severity="warn"),
    ],
}

# Legacy floats and limits[] side by side: the legacy float wins, limits[] fills a null
# resets_at and adds the model-scoped bucket; timestamps in every form seen.
SAMPLE_MIXED: dict[str, Any] = {
    **_LEGACY_NULLS,
    "five_hour": {"utilization": 24.4, "resets_at": "2026-07-02T19:59:59.600956+00:00"},
    "seven_day": {"utilization": 36.0, "resets_at": None, "limit_dollars": None},
    "seven_day_breakdown": {"rows": []},
    "extra_usage": {"is_enabled": False, "monthly_limit": None, "used_credits": None, "utilization": None},
    "limits": [
        limit_entry("session", 24, "2026-07-02T19:59:59.601Z"),
        limit_entry("weekly_all", 36, "2026-07-08T06:59:59Z", severity="normal"),
        limit_entry(
            "weekly_scoped", 64, "2026-07-08T06:59:59.600974Z", model="Fable", is_active=True, severity="warning"
        ),
        limit_entry("weekly_scoped", 3, "2026-07-08T06:59:59+00:00", surface="Claude Code"),
        {"kind": "monthly_org", "group": "org", "percent": None, "scope": None},
    ],
}

# Paid overage being spent: the plan's limits are exhausted, $92.21 of a $110.00 cap.
SAMPLE_OVERAGE: dict[str, Any] = limits_only_answer(
    session=(100, "2026-07-02T19:59:59Z"),
    weekly_all=(71, "2026-07-08T07:00:00Z"),
    scoped={"Fable": (100, "2026-07-08T06:59:59Z")},
    active="Fable",
    severities={"session": "warning", "Fable": "warning"},
    overage=spend_answer(9221, 11000),
)

# A free plan (or a changed endpoint): nothing with a number anywhere.
SAMPLE_EMPTY: dict[str, Any] = {}

# --- the families of autumn 2026 (docs/design.md §2, "Since autumn 2026"), shaped like the
# public captures kept in tests/data/usage/ (see SOURCES.md there).

_NO_DOLLARS: dict[str, Any] = {
    "limit_dollars": None,
    "used_dollars": None,
    "remaining_dollars": None,
    "locked_reason": None,
}


def window(utilization: float | None, resets_at: str | None, *, locked_reason: str | None = None) -> dict[str, Any]:
    """A legacy window as current answers carry it: with null dollar fields and `locked_reason`."""
    return {"utilization": utilization, "resets_at": resets_at, **_NO_DOLLARS, "locked_reason": locked_reason}


def credit_entry(limit: float, used: float, expires_at: str | None) -> dict[str, Any]:
    """A credit budget (`iguana_necktie`, `cinder_cove`): a window's shape plus dollar fields."""
    return {
        "utilization": round(used * 100 / limit, 1) if limit else 0.0,
        "resets_at": expires_at,
        "limit_dollars": limit,
        "used_dollars": used,
        "remaining_dollars": round(limit - used, 2),
        "locked_reason": None,
    }


def grant_entry(
    grant_id: str,
    ends_at: str,
    *,
    label: str = "Claude Opus 5.5 launch: one usage-limit reset for Pro and Max",
    resets_left: int = 1,
    resets_total: int = 1,
    starts_at: str | None = "2026-09-22T16:00:00+00:00",
    clears: tuple[str, ...] = ("five_hour", "seven_day"),
    usable_now: bool = False,
) -> dict[str, Any]:
    """One `cedar_ember.grants[]` entry, as the launch grant of September 2026 looked."""
    return {
        "id": grant_id,
        "label": label,
        "resets_total": resets_total,
        "resets_left": resets_left,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "clears": list(clears),
        "paused": False,
        "usable_now": usable_now,
        "use_requires_limit": True,
        "blocking": [],
    }


def banked_block(grants: list[dict[str, Any]], *, at_limit: bool = False) -> dict[str, Any]:
    """The `cedar_ember` block a `?cedar_ember=1` call from Claude Code gets."""
    return {
        "eligible": bool(grants),
        "ineligible_reason": None if grants else "no_grant",
        "at_limit": at_limit,
        "exhausted": [],
        "grants": grants,
        "next_grant_id": grants[0]["id"] if grants else None,
        "weekly_resets_at": None,
        "cooldown_until": None,
    }


# A Team seat (docs/design.md §2): no window, spend $2,119.26 of a $5,000.00 cap.
SAMPLE_TEAM_SEAT: dict[str, Any] = {
    **_LEGACY_NULLS,
    "seven_day_cowork": None,
    "cinder_cove": None,
    "cedar_ember": None,
    "member_dashboard_available": True,
    "limits": [],
    **spend_answer(211926, 500000),
}

# A $250 usage credit with $247.53 left, and the windows beside it.
SAMPLE_CREDIT: dict[str, Any] = {
    **_LEGACY_NULLS,
    "five_hour": window(12.0, "2026-09-24T12:50:00.257626+00:00"),
    "seven_day": window(31.0, "2026-09-29T06:00:00+00:00"),
    "iguana_necktie": credit_entry(250, 2.47, "2026-11-05T07:59:00+00:00"),
    "nimbus_quill": {"utilization": 0.0, "resets_at": None, **_NO_DOLLARS},
    "cinder_cove": None,
    "cedar_ember": None,
    "seven_day_breakdown": {
        "as_of": "2026-09-24T08:00:00+00:00",
        "window_started_at": "2026-09-22T06:00:00+00:00",
        "rows": [
            {"key": "claude_code", "display_name": "Claude Code", "percent": 83},
            {"key": "chat", "display_name": "Chats", "percent": 17},
            {"key": "cowork", "display_name": "Cowork", "percent": 0},
        ],
    },
    **spend_answer(None, None, enabled=False),
}

# The launch grant of September 2026, beside the credit sample's windows.
SAMPLE_BANKED: dict[str, Any] = {
    **SAMPLE_CREDIT,
    "cedar_ember": banked_block([grant_entry("opus55-launch-promax-20260921", "2026-10-22T16:00:00+00:00")]),
}

SAMPLES: dict[str, dict[str, Any]] = {
    "team_seat": SAMPLE_TEAM_SEAT,
    "credit": SAMPLE_CREDIT,
    "banked": SAMPLE_BANKED,
    "legacy": SAMPLE_USAGE,
    "limits_only": SAMPLE_LIMITS_ONLY,
    "mixed": SAMPLE_MIXED,
    "overage": SAMPLE_OVERAGE,
    "empty": SAMPLE_EMPTY,
}

FaultKind = Literal["usage", "token", "any"]

# Agents the usage endpoint answers (others get persistent 429s, docs/design.md §2).
CLAUDE_CODE_AGENTS = ("claude-cli/", "claude-code/")
# Claude Code's own form: the only agent the banked-reset block is served to.
_CLI_AGENT = re.compile(r"^claude-cli/[0-9][0-9A-Za-z.+-]* \(external, cli\)$")
_SURFACE_REFUSAL: dict[str, Any] = {
    "eligible": False,
    "ineligible_reason": "surface",
    "at_limit": False,
    "exhausted": [],
    "grants": [],
    "next_grant_id": None,
}


def banked_resets_view(answer: Any, *, asked: bool, agent: str) -> Any:
    """What the real endpoint does with `cedar_ember` (docs/design.md §2): a plain call gets
    `cedar_ember: null`; `?cedar_ember=1` from any agent but Claude Code's `claude-cli/…
    (external, cli)` gets `eligible: false, ineligible_reason: "surface"`; Claude Code's
    gets the block. Answers set without the key are served as set."""
    if not isinstance(answer, dict) or "cedar_ember" not in answer:
        return answer
    if not asked:
        return {**answer, "cedar_ember": None}
    if not _CLI_AGENT.match(agent):
        return {**answer, "cedar_ember": dict(_SURFACE_REFUSAL)}
    return answer


@dataclass
class Fault:
    """One injected misbehaviour, used for the next `times` matching requests."""

    kind: FaultKind
    status: int = 500
    body: str | bytes = ""
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    delay: float = 0.0
    drop: bool = False
    account: str | None = None  # None: any request; else only requests with that account's tokens


@dataclass(frozen=True)
class RecordedRequest:
    """What the fake received. Headers are kept whole (fake tokens only) so tests can assert them."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: str = ""  # the URL's query (`cedar_ember=1`)

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_at_ms: int

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.expires_at_ms / 1000, tz=UTC)


@dataclass
class _Access:
    expires_at: float  # wall clock seconds
    scopes: tuple[str, ...]
    revoked: bool = False
    account: str | None = None


@dataclass
class _Refresh:
    scopes: tuple[str, ...]
    access_token: str  # the access token issued together with it
    used: bool = False
    account: str | None = None


def write_tokens_dir(directory: Path, access_token: str, refresh_token: str, expires_at_ms: int) -> None:
    """Write the `OAUTH_TOKENS_DIR` layout (three text files, 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in (
        ("accessToken", access_token),
        ("refreshToken", refresh_token),
        ("expiresAt", str(expires_at_ms)),
    ):
        path = directory / name
        path.write_text(value + "\n", encoding="utf-8")
        path.chmod(0o600)


class FakeAnthropic:
    """The fake service. Thread-safe; start/stop may be repeated (same port on restart)."""

    def __init__(
        self,
        *,
        port: int = 0,
        expires_in: int = 3600,
        invalidate_old_access: bool = False,
        rotate_refresh_tokens: bool = True,
        state_file: Path | None = None,
        usage_latency: float = 0.0,
    ) -> None:
        self.port = port
        # Seconds each usage answer takes, as a round trip to the real API does (the bench).
        self.usage_latency = usage_latency
        self.expires_in = expires_in
        self.invalidate_old_access = invalidate_old_access
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.state_file = state_file
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._wake = threading.Event()  # ends every `delay` wait: stop() or release_delayed()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._access: dict[str, _Access] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._usage: Any = json.loads(json.dumps(SAMPLE_USAGE))
        self._jitter = False
        # Per-account answers (docs/design.md §6); an account without one gets `_usage`.
        self._account_usage: dict[str, tuple[Any, bool]] = {}
        self.usage_calls_by_account: dict[str | None, int] = {}
        self._faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self.usage_calls = 0
        self.refresh_calls = 0
        self.invalid_grants = 0
        if state_file is not None and state_file.exists():
            self._load_state(state_file)

    # --- lifecycle -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return self.base_url + TOKEN_PATH

    def start(self) -> FakeAnthropic:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._wake.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        # A short poll interval keeps stop() (and so every test teardown) quick.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-anthropic", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket: connections to the port are refused until `start()`."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        self._wake.set()  # wakes handlers sleeping on a `delay` fault
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextlib.contextmanager
    def refusing_connections(self) -> Iterator[None]:
        """Within the block the port refuses connections (the server is stopped)."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    # --- configuration ---------------------------------------------------------------

    def set_usage(self, payload: Any, *, jitter: bool = False, account: str | None = None) -> None:
        """The usage answer: for every token, or (with `account`) for that account's tokens."""
        with self._lock:
            copied = json.loads(json.dumps(payload))
            if account is None:
                self._usage = copied
                self._jitter = jitter
            else:
                self._account_usage[account] = (copied, jitter)
            self._persist()

    def fail_next(
        self,
        kind: FaultKind,
        status: int = 500,
        *,
        body: str | bytes | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        times: int = 1,
        delay: float = 0.0,
        drop: bool = False,
        account: str | None = None,
    ) -> None:
        """Answer the next `times` requests of `kind` with `status` and `body` (str, bytes or JSON);
        with `account`, only requests carrying that account's tokens."""
        if body is None:
            text: str | bytes = json.dumps(
                {"type": "error", "error": {"type": "fault", "message": f"injected {status}"}}
            )
        elif isinstance(body, Mapping):
            text = json.dumps(dict(body))
        else:
            text = body
        with self._lock:
            if delay > 0:
                self._wake.clear()
            self._faults.append(Fault(kind, status, text, dict(headers or {}), times, delay, drop, account))

    def release_delayed(self) -> None:
        """Answer the requests a `delay` fault holds now, and any later ones at once (until the
        next `fail_next` with a delay): a test holds a request until it has seen what it waits for."""
        self._wake.set()

    def issue_tokens(
        self, *, scopes: tuple[str, ...] = FULL_SCOPES, expires_in: int | None = None, account: str | None = None
    ) -> IssuedTokens:
        """Mint a valid (access, refresh) pair as if a user had just logged in (to `account`)."""
        with self._lock:
            issued = self._mint(scopes, self.expires_in if expires_in is None else expires_in, account)
            self._persist()
            return issued

    def write_tokens_dir(
        self,
        directory: Path,
        *,
        scopes: tuple[str, ...] = FULL_SCOPES,
        expires_in: int | None = None,
        account: str | None = None,
    ) -> IssuedTokens:
        """Mint a pair and write it into `directory` in the `OAUTH_TOKENS_DIR` layout."""
        issued = self.issue_tokens(scopes=scopes, expires_in=expires_in, account=account)
        write_tokens_dir(directory, issued.access_token, issued.refresh_token, issued.expires_at_ms)
        return issued

    def revoke(self, access_token: str | None = None, *, account: str | None = None) -> None:
        """Invalidate one access token, every one of `account`, or all of them (the next usage call gets 401)."""
        with self._lock:
            for token, access in self._access.items():
                if account is not None:
                    if access.account == account:
                        access.revoked = True
                elif access_token is None or token == access_token:
                    access.revoked = True
            self._persist()

    def revoke_refresh(self, *, account: str) -> None:
        """Spend every refresh token of `account` (the next refresh gets invalid_grant): a lost login."""
        with self._lock:
            for entry in self._refresh.values():
                if entry.account == account:
                    entry.used = True
            self._persist()

    def account_of(self, token: str) -> str | None:
        """The account an access or refresh token was minted for (None: unlabelled or unknown)."""
        with self._lock:
            access = self._access.get(token)
            if access is not None:
                return access.account
            entry = self._refresh.get(token)
            return entry.account if entry is not None else None

    def is_valid_access(self, access_token: str) -> bool:
        with self._lock:
            access = self._access.get(access_token)
            return access is not None and not access.revoked and access.expires_at > time.time()

    def is_unused_refresh(self, refresh_token: str) -> bool:
        with self._lock:
            entry = self._refresh.get(refresh_token)
            return entry is not None and not entry.used

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.requests.clear()
            self.usage_calls = self.refresh_calls = self.invalid_grants = 0
            self.usage_calls_by_account.clear()
            self._persist()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "usage_calls": self.usage_calls,
                # Successful usage answers per account ("" for unlabelled tokens).
                "usage_calls_by_account": {k or "": v for k, v in self.usage_calls_by_account.items()},
                "refresh_calls": self.refresh_calls,
                "invalid_grants": self.invalid_grants,
                "requests": [
                    {
                        "method": r.method,
                        "path": r.path,
                        "user_agent": r.header("user-agent"),
                        "beta": r.header("anthropic-beta"),
                    }
                    for r in self.requests
                ],
            }

    # --- internals ---------------------------------------------------------------------

    def _mint(self, scopes: tuple[str, ...], expires_in: int, account: str | None = None) -> IssuedTokens:
        access = "fake-at-" + secrets.token_urlsafe(24)
        refresh = "fake-rt-" + secrets.token_urlsafe(24)
        expires_at = time.time() + expires_in
        self._access[access] = _Access(expires_at, scopes, account=account)
        self._refresh[refresh] = _Refresh(scopes, access, account=account)
        return IssuedTokens(access, refresh, int(expires_at * 1000))

    def _request_account(self, kind: FaultKind, headers: Mapping[str, str], body: bytes) -> str | None:
        """The account whose token a usage or token request carries (for per-account faults)."""
        if kind == "usage":
            auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
            return self.account_of(auth[len("Bearer ") :]) if auth.startswith("Bearer ") else None
        try:
            form = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        token = form.get("refresh_token") if isinstance(form, dict) else None
        return self.account_of(token) if isinstance(token, str) else None

    def _take_fault(self, kind: FaultKind, account: str | None = None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind in (kind, "any") and fault.account in (None, account):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _usage_answer(self, account: str | None = None) -> Any:
        usage, jitter = self._account_usage.get(account or "", (self._usage, self._jitter))
        payload = json.loads(json.dumps(usage))
        if jitter and isinstance(payload, dict):
            limits = payload.get("limits")
            entries: list[Any] = limits if isinstance(limits, list) else []
            for bucket in [*payload.values(), *entries]:
                if isinstance(bucket, dict) and isinstance(bucket.get("resets_at"), str):
                    with contextlib.suppress(ValueError):
                        moment = datetime.fromisoformat(bucket["resets_at"])
                        # The real endpoint moves resets_at by sub-seconds between calls.
                        bucket["resets_at"] = moment.replace(microsecond=random.randrange(1_000_000)).isoformat()
        return payload

    def handle_usage(self, headers: Mapping[str, str], query: str = "") -> tuple[int, dict[str, str], Any]:
        lowered = {k.lower(): v for k, v in headers.items()}
        agent = lowered.get("user-agent", "")
        if not agent.startswith(CLAUDE_CODE_AGENTS):
            return 429, {}, _api_error("rate_limit_error", "Rate limited. Please try again later.")
        if BETA not in [b.strip() for b in lowered.get("anthropic-beta", "").split(",")]:
            return 401, {}, _api_error("authentication_error", "OAuth authentication is currently not supported.")
        auth = lowered.get("authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        with self._lock:
            access = self._access.get(token)
            if access is None or access.revoked or access.expires_at <= time.time():
                return 401, {}, _api_error("authentication_error", "Invalid bearer token")
            if "user:profile" not in access.scopes:
                return (
                    403,
                    {},
                    _api_error("permission_error", "OAuth token does not meet scope requirement user:profile"),
                )
            self.usage_calls_by_account[access.account] = self.usage_calls_by_account.get(access.account, 0) + 1
            answer = self._usage_answer(access.account)
        return 200, {}, banked_resets_view(answer, asked=parse_qs(query).get("cedar_ember") == ["1"], agent=agent)

    def handle_token(self, content_type: str, body: bytes, agent: str | None = None) -> tuple[int, dict[str, str], Any]:
        if agent is not None and not agent.startswith(CLAUDE_CODE_AGENTS):
            return 403, {"Content-Type": "text/html"}, CDN_REFUSAL  # the CDN in front of it
        if not content_type.startswith("application/json"):
            return 400, {}, {"error": "invalid_request", "error_description": "a JSON body is required"}
        try:
            form = json.loads(body)
            if not isinstance(form, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            return 400, {}, {"error": "invalid_request", "error_description": "malformed body"}
        if form.get("grant_type") != "refresh_token":
            return 400, {}, {"error": "unsupported_grant_type"}
        if form.get("client_id") != CLIENT_ID:
            return 401, {}, {"error": "invalid_client"}
        with self._lock:
            entry = self._refresh.get(str(form.get("refresh_token")))
            if entry is None or entry.used:
                self.invalid_grants += 1
                self._persist()
                return 400, {}, {"error": "invalid_grant", "error_description": "Refresh token not found or invalid"}
            answer: dict[str, Any] = {"token_type": "Bearer", "expires_in": self.expires_in}
            old_access = entry.access_token
            if self.rotate_refresh_tokens:
                entry.used = True
                issued = self._mint(entry.scopes, self.expires_in, entry.account)
                answer["refresh_token"] = issued.refresh_token
            else:
                issued = self._mint(entry.scopes, self.expires_in, entry.account)
                self._refresh.pop(issued.refresh_token)
                entry.access_token = issued.access_token
            answer["access_token"] = issued.access_token
            answer["scope"] = " ".join(entry.scopes)
            if self.invalidate_old_access and old_access in self._access:
                self._access[old_access].revoked = True
            self._persist()
            return 200, {}, answer

    def handle_control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return 400, {"error": "body is not JSON"}
        if method == "GET" and path == "/_control/stats":
            return 200, self.stats()
        if method != "POST" or not isinstance(data, dict):
            return 404, {"error": "unknown control call"}
        if path == "/_control/usage":
            sample = data.get("sample")
            if sample is not None and sample not in SAMPLES:
                return 400, {"error": f"unknown sample; one of {sorted(SAMPLES)}"}
            answer = SAMPLES[sample] if sample is not None else data.get("payload")
            self.set_usage(answer, jitter=bool(data.get("jitter", False)), account=data.get("account"))
            return 200, {"ok": True}
        if path == "/_control/fail":
            self.fail_next(
                data.get("kind", "usage"),
                int(data.get("status", 500)),
                body=data.get("body"),
                headers=data.get("headers"),
                times=int(data.get("times", 1)),
                delay=float(data.get("delay", 0.0)),
                drop=bool(data.get("drop", False)),
                account=data.get("account"),
            )
            return 200, {"ok": True}
        if path == "/_control/tokens":
            scopes = tuple(data.get("scopes") or FULL_SCOPES)
            expires_in = data.get("expires_in")
            issued = self.issue_tokens(
                scopes=scopes, expires_in=None if expires_in is None else int(expires_in), account=data.get("account")
            )
            if data.get("tokens_dir"):
                write_tokens_dir(
                    Path(data["tokens_dir"]), issued.access_token, issued.refresh_token, issued.expires_at_ms
                )
            return 200, {
                "access_token": issued.access_token,
                "refresh_token": issued.refresh_token,
                "expires_at_ms": issued.expires_at_ms,
            }
        if path == "/_control/revoke":
            if data.get("account") and not data.get("all"):
                self.revoke(account=str(data["account"]))
            else:
                self.revoke(None if data.get("all") else data.get("access_token"))
            return 200, {"ok": True}
        if path == "/_control/reset":
            self.reset()
            return 200, {"ok": True}
        return 404, {"error": "unknown control call"}

    # --- state file ----------------------------------------------------------------------

    def _persist(self) -> None:
        if self.state_file is None:
            return
        state = {
            "usage": self._usage,
            "jitter": self._jitter,
            "access": {k: [v.expires_at, list(v.scopes), v.revoked, v.account] for k, v in self._access.items()},
            "refresh": {k: [list(v.scopes), v.access_token, v.used, v.account] for k, v in self._refresh.items()},
            "account_usage": {k: [v[0], v[1]] for k, v in self._account_usage.items()},
            "usage_calls": self.usage_calls,
            "refresh_calls": self.refresh_calls,
            "invalid_grants": self.invalid_grants,
        }
        fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=".fake-anthropic.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh)
        os.replace(tmp, self.state_file)

    def _load_state(self, path: Path) -> None:
        state = json.loads(path.read_text())
        self._usage = state.get("usage", self._usage)
        self._jitter = bool(state.get("jitter", False))
        # Files of the single-account fake have no account column (the 4th); they load as unlabelled.
        self._access = {
            k: _Access(v[0], tuple(v[1]), v[2], v[3] if len(v) > 3 else None)
            for k, v in state.get("access", {}).items()
        }
        self._refresh = {
            k: _Refresh(tuple(v[0]), v[1], v[2], v[3] if len(v) > 3 else None)
            for k, v in state.get("refresh", {}).items()
        }
        self._account_usage = {k: (v[0], bool(v[1])) for k, v in state.get("account_usage", {}).items()}
        self.usage_calls = int(state.get("usage_calls", 0))
        self.refresh_calls = int(state.get("refresh_calls", 0))
        self.invalid_grants = int(state.get("invalid_grants", 0))


def _api_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _make_handler(fake: FakeAnthropic) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The headers and the body go out in two writes; with Nagle on, the body waits for
        # the client's delayed ACK of the headers (40 ms on Linux loopback) on every
        # keep-alive request. Real servers (nginx, Envoy, Go) set TCP_NODELAY too.
        disable_nagle_algorithm = True
        server_version = "fake-anthropic"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read stderr
            pass

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length > 0 else b""

        def _send(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
            data = payload if isinstance(payload, bytes) else payload.encode() if isinstance(payload, str) else None
            content_type = "text/plain"
            if data is None:
                data = json.dumps(payload).encode()
                content_type = "application/json"
            elif data.lstrip().startswith(b"<"):
                content_type = "text/html"
            elif data.lstrip()[:1] in (b"{", b"["):
                content_type = "application/json"
            self.send_response(status)
            extra = dict(headers or {})
            if not any(k.lower() == "content-type" for k in extra):
                self.send_header("Content-Type", content_type)
            for key, value in extra.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _serve(self, method: str) -> None:
            path = urlsplit(self.path).path
            body = self._body()
            if path.startswith("/_control/"):
                status, answer = fake.handle_control(method, path, body)
                self._send(status, answer)
                return
            with fake._lock:
                fake.requests.append(
                    RecordedRequest(method, path, dict(self.headers.items()), body, urlsplit(self.path).query)
                )
            kind: FaultKind
            if method == "GET" and path == USAGE_PATH:
                kind = "usage"
                with fake._lock:
                    fake.usage_calls += 1
            elif method == "POST" and path == TOKEN_PATH:
                kind = "token"
                with fake._lock:
                    fake.refresh_calls += 1
            else:
                self._send(404, _api_error("not_found_error", "Not Found"))
                return
            # The bot's code after the answer then runs as in a cluster, after an idle wait
            # on the network (a colder CPU than an instant loopback answer leaves): the bench.
            if kind == "usage" and fake.usage_latency > 0 and fake._stopping.wait(fake.usage_latency):
                self.close_connection = True
                return
            fault = fake._take_fault(kind, fake._request_account(kind, dict(self.headers.items()), body))
            if fault is not None:
                if fault.delay > 0 and fake._wake.wait(fault.delay) and fake._stopping.is_set():
                    self.close_connection = True
                    return
                if fault.drop:
                    self.close_connection = True
                    return
                self._send(fault.status, fault.body, fault.headers)
                return
            if kind == "usage":
                status, headers, answer = fake.handle_usage(dict(self.headers.items()), urlsplit(self.path).query)
            else:
                status, headers, answer = fake.handle_token(
                    self.headers.get("Content-Type", ""), body, self.headers.get("User-Agent", "")
                )
            self._send(status, answer, headers)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Loopback fake of the Anthropic usage and token endpoints")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-file", type=Path, default=None)
    parser.add_argument("--tokens-dir", type=Path, default=None, help="mint a pair at start and write it here")
    parser.add_argument("--expires-in", type=int, default=3600)
    parser.add_argument("--invalidate-old-access", action="store_true")
    parser.add_argument("--usage-latency", type=float, default=0.0, help="seconds each usage answer takes")
    args = parser.parse_args(argv)
    fake = FakeAnthropic(
        port=args.port,
        expires_in=args.expires_in,
        invalidate_old_access=args.invalidate_old_access,
        state_file=args.state_file,
        usage_latency=args.usage_latency,
    )
    if args.tokens_dir is not None:
        fake.write_tokens_dir(args.tokens_dir)
    fake.start()
    print(f"READY {fake.base_url}", flush=True)
    stop = threading.Event()
    try:
        import signal

        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
