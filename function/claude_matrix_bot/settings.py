"""Settings: every environment variable of docs/design.md §3, parsed once, validated at once.

Each variable is declared once, as a field made with `setting()` (its default, parser and
meaning; the variable is the field's name in upper case): the core's part in
`core.config.DecideConfig`, the shell's part here. `load_settings(env)` reads only the mapping
it is given (no network), collects every problem, and raises one `ConfigError` naming each
offending variable, so an operator fixes the whole environment in one go. With
`check_files=True` (the entry points that run a cycle) it also looks at the local files the
settings name (`MATRIX_CREDS_DIR`), so a missing one stops the run before the lease, the state
or the API is touched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .core.config import DecideConfig
from .errors import ConfigError
from .settings_matrix import TrustedDevice, credential_problems, mention_users, room_id, trusted_devices
from .settings_spec import parse_declared, setting
from .settings_values import (
    AlertSinkName,
    LogFormat,
    LogLevel,
    boolean,
    http_url,
    instant,
    log_format,
    log_level,
    namespace,
    plain,
    secret_name,
    sink,
    trigger_token,
    user_agent,
    whole,
)
from .store import check_url
from .url_policy import plain_http_problems

# TrustedDevice lives with the other Matrix settings; it is part of this module's interface.
__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TOKEN_URL",
    "DEFAULT_USER_AGENT",
    "OAUTH_CLIENT_ID",
    "Settings",
    "TrustedDevice",
    "load_settings",
]

# Claude Code's own form (docs/design.md §2): the banked-reset block is served to no other.
DEFAULT_USER_AGENT = "claude-cli/2.1.281 (external, cli)"
DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_TOKEN_URL = "https://platform.claude.com/v1/oauth/token"  # noqa: S105 (a URL)
OAUTH_CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"

# docs/design.md §6: an account name is a short slug; it names a directory, a state prefix and Secret keys.
# Starting and ending alphanumeric: `<name>.accessToken` must be a valid Secret key and
# the name a valid annotation key part on a real API server (`work-` is not; issue 21).
_ACCOUNT_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
# Names that would land an account's `<name>/state.json` inside the store's own prefixes.
_RESERVED_ACCOUNTS = frozenset({"nio"})


def _accounts(text: str) -> tuple[str, ...]:
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if not _ACCOUNT_NAME.match(name):
            raise ValueError(
                f"expected comma-separated account names of 1-32 characters a-z, 0-9 or '-', "
                "starting and ending with a letter or digit "
                f"(e.g. work,priv), got {name!r} in {text!r}"
            )
        if name in _RESERVED_ACCOUNTS:
            raise ValueError(f"{name!r} is reserved (the Matrix key store lives under {name}/); choose another name")
        if name in names:
            raise ValueError(f"{name!r} is listed twice")
        names.append(name)
    return tuple(names)


@dataclass(frozen=True, slots=True)
class Settings(DecideConfig):
    """The validated configuration of one run: the core's settings (`DecideConfig`) and what the
    shell needs. Secrets are excluded from repr."""

    matrix_room_id: str | None = setting(None, room_id, "the alert room (required for the Matrix sink)")
    matrix_creds_dir: Path = setting(Path("/var/run/secrets/matrix-bot"), Path, "the bot's Matrix credential files")
    oauth_tokens_dir: Path = setting(Path("/var/run/secrets/oauth-tokens"), Path, "the OAuth token files")
    local_mode: bool = setting(False, boolean, "refreshed tokens go back to OAUTH_TOKENS_DIR, not to a Secret")
    k8s_oauth_secret_name: str | None = setting(None, secret_name, "the Secret holding the tokens")
    k8s_namespace: str | None = setting(
        None, namespace, "namespace of that Secret", shown="the ServiceAccount's namespace"
    )
    oauth_refresh_leeway_sec: int = setting(600, whole(), "refresh when the access token expires within this")
    state_url: str = setting("file:///state", check_url, "where state and the Matrix key store live")
    alert_sink: AlertSinkName = setting("matrix", sink, "where alerts go: matrix, or stdout as JSON lines")
    anthropic_base_url: str = setting(DEFAULT_BASE_URL, http_url, "usage endpoint base")
    anthropic_token_url: str = setting(DEFAULT_TOKEN_URL, http_url, "OAuth token endpoint")
    anthropic_user_agent: str = setting(DEFAULT_USER_AGENT, user_agent, "sent on every Anthropic request")
    allow_plain_http: bool = setting(False, boolean, "accept plain http:// for a non-loopback Anthropic or Matrix URL")
    now_override: datetime | None = setting(None, instant, "an instant used as now (simulations and tests)")
    trigger_token: str | None = setting(None, trigger_token, "HTTP triggers must carry it", secret=True)
    min_interval_sec: int = setting(60, whole(), "an HTTP trigger sooner than this after the last poll gets 429")
    matrix_trusted_devices: tuple[TrustedDevice, ...] = setting((), trusted_devices, "strict trust pins")
    matrix_store_passphrase: str | None = setting(None, plain, "encrypts the Matrix key store", secret=True)
    matrix_exclude_insecure_devices: bool = setting(False, boolean, "room keys only to cross-signed devices")
    matrix_password_file: Path | None = setting(None, Path, "matrix-login only: the bot's password")
    matrix_mention: tuple[str, ...] = setting((), mention_users, "users that urgent alerts mention")
    # docs/design.md §6; empty: the single-account layout of every earlier release.
    accounts: tuple[str, ...] = setting((), _accounts, "several Claude accounts in one room")
    log_format: LogFormat = setting("text", log_format, "text, or json: one JSON object per log line")
    log_level: LogLevel = setting("INFO", log_level, "log verbosity")

    def now(self) -> datetime:
        """The instant this run treats as "now" (`NOW_OVERRIDE` for simulations)."""
        return self.now_override if self.now_override is not None else datetime.now(UTC)

    def decide_config(self) -> DecideConfig:
        """What the pure core needs of these settings: its own fields, by name."""
        return DecideConfig(**{f.name: getattr(self, f.name) for f in fields(DecideConfig)})


def load_settings(env: Mapping[str, str], *, check_files: bool = False) -> Settings:
    """Parse `env` into `Settings`, or raise one `ConfigError` naming every bad variable.

    `check_files` adds what can only be seen on the local disk (the Matrix
    credential files): entry points that run a cycle pass it, `status` does not."""
    problems: list[str] = []
    values: dict[str, Any] = parse_declared(Settings, env, problems)
    settings = Settings(**values)
    problems.extend(_combination_problems(settings, problems, check_files=check_files))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return settings


def _combination_problems(settings: Settings, problems: list[str], *, check_files: bool) -> list[str]:
    """What is wrong with the variables together (a variable already named in `problems`
    is not named twice), and with the files they point at."""
    found: list[str] = []
    named = _named(problems)
    if settings.alert_sink == "matrix" and settings.matrix_room_id is None and "MATRIX_ROOM_ID" not in named:
        found.append("MATRIX_ROOM_ID: required when ALERT_SINK is matrix (the default)")
    if not settings.local_mode and not settings.k8s_oauth_secret_name and "K8S_OAUTH_SECRET_NAME" not in named:
        found.append("K8S_OAUTH_SECRET_NAME: required unless LOCAL_MODE is on")
    if settings.forecast_min_span_sec > settings.forecast_window_sec:
        found.append(
            "FORECAST_MIN_SPAN_SEC: must not exceed FORECAST_WINDOW_SEC "
            f"({settings.forecast_min_span_sec} > {settings.forecast_window_sec}), or no forecast can ever fire"
        )
    if check_files and settings.alert_sink == "matrix":
        found.extend(credential_problems(settings.matrix_creds_dir))
    if not settings.allow_plain_http:
        creds = settings.matrix_creds_dir if check_files and settings.alert_sink == "matrix" else None
        found.extend(plain_http_problems(settings.anthropic_base_url, settings.anthropic_token_url, creds))
    return found


def _named(problems: list[str]) -> set[str]:
    return {p.split(":", 1)[0] for p in problems}
