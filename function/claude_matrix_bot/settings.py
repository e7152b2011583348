"""Settings: every environment variable of DESIGN §3, parsed once, validated at once.

`load_settings(env)` reads only the mapping it is given (no network), collects
every problem, and raises one `ConfigError` naming each offending variable, so an
operator fixes the whole environment in one go. With `check_files=True` (the
entry points that run a cycle) it also looks at the local files the settings
name (`MATRIX_CREDS_DIR`), so a missing one stops the run before the lease, the
state or the API is touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar
from urllib.parse import urlparse

from . import defaults as shared_defaults
from .errors import ConfigError
from .quiet_hours import QuietHours, parse_quiet_hours
from .settings_matrix import TrustedDevice, credential_problems, mention_users, room_id, trusted_devices
from .settings_values import instant, namespace, secret_name, timezone_name, user_agent

if TYPE_CHECKING:
    from .core.config import DecideConfig

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

AlertSinkName = Literal["matrix", "stdout"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LOG_LEVELS: tuple[LogLevel, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")

# Shorter trigger tokens are guessable, and the log redactor cannot mask them
# without masking ordinary words (logs.Redactor ignores short values).
MIN_TRIGGER_TOKEN_CHARS = 16
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# DESIGN §6: an account name is a short slug; it names a directory, a state prefix and Secret keys.
_ACCOUNT_NAME = re.compile(r"^[a-z0-9-]{1,32}$")
# Names that would land an account's `<name>/state.json` inside the store's own prefixes.
_RESERVED_ACCOUNTS = frozenset({"nio"})

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated configuration of one run. Secrets are excluded from repr."""

    matrix_room_id: str | None = None
    matrix_creds_dir: Path = Path("/var/run/secrets/matrix-bot")
    oauth_tokens_dir: Path = Path("/var/run/secrets/oauth-tokens")
    local_mode: bool = False
    k8s_oauth_secret_name: str | None = None
    k8s_namespace: str | None = None
    oauth_refresh_leeway_sec: int = 600
    weekly_thresholds: tuple[int, ...] = shared_defaults.WEEKLY_THRESHOLDS
    state_url: str = "file:///state"
    forecast_enabled: bool = shared_defaults.FORECAST_ENABLED
    forecast_window_sec: int = shared_defaults.FORECAST_WINDOW_SEC
    forecast_min_samples: int = shared_defaults.FORECAST_MIN_SAMPLES
    forecast_min_span_sec: int = shared_defaults.FORECAST_MIN_SPAN_SEC
    alert_sink: AlertSinkName = "matrix"
    anthropic_base_url: str = DEFAULT_BASE_URL
    anthropic_token_url: str = DEFAULT_TOKEN_URL
    now_override: datetime | None = None
    reset_shift_tolerance_sec: int = shared_defaults.RESET_SHIFT_TOLERANCE_SEC
    health_failures: int = shared_defaults.HEALTH_FAILURES
    anthropic_user_agent: str = DEFAULT_USER_AGENT
    trigger_token: str | None = field(default=None, repr=False)
    min_interval_sec: int = 60
    matrix_trusted_devices: tuple[TrustedDevice, ...] = ()
    matrix_store_passphrase: str | None = field(default=None, repr=False)
    # `ACCOUNTS` (DESIGN §6); empty: the single-account layout of every earlier release.
    accounts: tuple[str, ...] = ()
    extra_usage_thresholds: tuple[int, ...] = shared_defaults.EXTRA_USAGE_THRESHOLDS
    charts_enabled: bool = shared_defaults.CHARTS_ENABLED  # DESIGN §7: the forecast alert carries a chart
    digest_enabled: bool = shared_defaults.DIGEST_ENABLED  # DESIGN §7: a weekly digest at each natural weekly rollover
    log_format: LogFormat = "text"
    matrix_exclude_insecure_devices: bool = False
    matrix_password_file: Path | None = None  # matrix-login only
    log_level: LogLevel = "INFO"
    # docs/design.md §8, §9: the session, credit and banked-reset families and the reader's day.
    session_alerts: bool = shared_defaults.SESSION_ALERTS
    session_thresholds: tuple[int, ...] = shared_defaults.SESSION_THRESHOLDS
    credit_thresholds: tuple[int, ...] = shared_defaults.CREDIT_THRESHOLDS
    banked_resets_enabled: bool = shared_defaults.BANKED_RESETS_ENABLED
    timezone: tzinfo = shared_defaults.TIMEZONE
    quiet_hours: QuietHours | None = None
    matrix_mention: tuple[str, ...] = ()

    def now(self) -> datetime:
        """The instant this run treats as "now" (`NOW_OVERRIDE` for simulations)."""
        return self.now_override if self.now_override is not None else datetime.now(UTC)

    def decide_config(self) -> DecideConfig:
        """What the pure core needs of these settings."""
        from .core.config import DecideConfig  # the core only when a cycle runs (cold start)

        return DecideConfig(
            thresholds=self.weekly_thresholds,
            shift_tolerance_sec=self.reset_shift_tolerance_sec,
            forecast_enabled=self.forecast_enabled,
            forecast_window_sec=self.forecast_window_sec,
            forecast_min_samples=self.forecast_min_samples,
            forecast_min_span_sec=self.forecast_min_span_sec,
            health_failures=self.health_failures,
            extra_usage_thresholds=self.extra_usage_thresholds,
            charts_enabled=self.charts_enabled,
            digest_enabled=self.digest_enabled,
            session_alerts=self.session_alerts,
            session_thresholds=self.session_thresholds,
            credit_thresholds=self.credit_thresholds,
            banked_resets_enabled=self.banked_resets_enabled,
            timezone=self.timezone,
            quiet_hours=self.quiet_hours,
        )


class _Collector:
    """Parses variables one by one and remembers every problem."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def parse(self, name: str, default: T, parser: Callable[[str], T]) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parser(value)
        except ValueError as exc:
            self.problems.append(f"{name}: {exc}")
            return default

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        def parse_int(text: str) -> int:
            try:
                number = int(text)
            except ValueError:
                raise ValueError(f"expected a whole number, got {text!r}") from None
            if number < minimum:
                raise ValueError(f"must be at least {minimum}, got {number}")
            return number

        return self.parse(name, default, parse_int)

    def boolean(self, name: str, default: bool) -> bool:
        def parse_bool(text: str) -> bool:
            lowered = text.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(f"expected one of 1/0, true/false, yes/no, on/off, got {text!r}")

        return self.parse(name, default, parse_bool)


def _http_url(text: str) -> str:
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"expected an http(s) URL, got {text!r}")
    return text.rstrip("/")


def _state_url(text: str) -> str:
    parsed = urlparse(text)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise ValueError(f"expected file:///absolute/dir, got {text!r}")
    elif parsed.scheme in ("s3", "gs"):
        if not parsed.netloc:
            raise ValueError(f"expected {parsed.scheme}://bucket[/prefix], got {text!r}")
    else:
        raise ValueError(f"expected file:///dir, s3://bucket/prefix or gs://bucket/prefix, got {text!r}")
    return text


def _thresholds(text: str) -> tuple[int, ...]:
    values: set[int] = set()
    for raw in text.split(","):
        part = raw.strip().rstrip("%")
        if not part:
            continue
        try:
            number = int(part)
        except ValueError:
            raise ValueError(f"expected comma-separated whole percents like 50,80, got {text!r}") from None
        if not 0 < number <= 100:
            raise ValueError(f"thresholds must be between 1 and 100, got {number}")
        values.add(number)
    if not values:
        raise ValueError("expected at least one threshold, e.g. 50,80")
    return tuple(sorted(values))


def _optional_thresholds(c: _Collector, name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """Thresholds a family may go without (`EXTRA_USAGE_THRESHOLDS`, `SESSION_THRESHOLDS`,
    `CREDIT_THRESHOLDS`): set but empty turns them off."""
    if name in c.env and c.raw(name) is None:
        return ()
    return c.parse(name, default, _thresholds)


def _log_level(text: str) -> LogLevel:
    for level in LOG_LEVELS:
        if text.upper() == level:
            return level
    raise ValueError(f"expected one of {', '.join(LOG_LEVELS)} (any case), got {text!r}")


def _sink(text: str) -> AlertSinkName:
    if text == "matrix":
        return "matrix"
    if text == "stdout":
        return "stdout"
    raise ValueError(f"expected 'matrix' or 'stdout', got {text!r}")


def _trigger_token(text: str) -> str:
    # The value is a secret: the reason never quotes it.
    if len(text) < MIN_TRIGGER_TOKEN_CHARS:
        raise ValueError(
            f"must be at least {MIN_TRIGGER_TOKEN_CHARS} characters (got {len(text)}): a short token is "
            "guessable and too short to be masked in logs; e.g. `openssl rand -hex 24`"
        )
    if any(ch in text for ch in "\r\n\x00"):
        raise ValueError("contains a line break or NUL (value not shown)")
    return text


def _log_format(text: str) -> LogFormat:
    lowered = text.lower()
    if lowered == "text":
        return "text"
    if lowered == "json":
        return "json"
    raise ValueError(f"expected 'text' or 'json', got {text!r}")


def _accounts(text: str) -> tuple[str, ...]:
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if not _ACCOUNT_NAME.match(name):
            raise ValueError(
                f"expected comma-separated account names of 1-32 characters a-z, 0-9 or '-' "
                f"(e.g. work,priv), got {name!r} in {text!r}"
            )
        if name in _RESERVED_ACCOUNTS:
            raise ValueError(f"{name!r} is reserved (the Matrix key store lives under {name}/); choose another name")
        if name in names:
            raise ValueError(f"{name!r} is listed twice")
        names.append(name)
    return tuple(names)


def load_settings(env: Mapping[str, str], *, check_files: bool = False) -> Settings:
    """Parse `env` into `Settings`, or raise one `ConfigError` naming every bad variable.

    `check_files` adds what can only be seen on the local disk (the Matrix
    credential files): entry points that run a cycle pass it, `status` does not."""
    c = _Collector(env)
    defaults = Settings()
    # Keyword arguments are evaluated in order: the problems are listed in this order.
    settings = Settings(
        alert_sink=c.parse("ALERT_SINK", defaults.alert_sink, _sink),
        local_mode=c.boolean("LOCAL_MODE", False),
        matrix_room_id=c.parse("MATRIX_ROOM_ID", None, room_id),
        k8s_oauth_secret_name=c.parse("K8S_OAUTH_SECRET_NAME", None, secret_name),
        matrix_creds_dir=Path(c.raw("MATRIX_CREDS_DIR") or defaults.matrix_creds_dir),
        oauth_tokens_dir=Path(c.raw("OAUTH_TOKENS_DIR") or defaults.oauth_tokens_dir),
        k8s_namespace=c.parse("K8S_NAMESPACE", None, namespace),
        oauth_refresh_leeway_sec=c.integer("OAUTH_REFRESH_LEEWAY_SEC", defaults.oauth_refresh_leeway_sec),
        weekly_thresholds=c.parse("WEEKLY_THRESHOLDS", defaults.weekly_thresholds, _thresholds),
        state_url=c.parse("STATE_URL", defaults.state_url, _state_url),
        forecast_enabled=c.boolean("FORECAST_ENABLED", defaults.forecast_enabled),
        forecast_window_sec=c.integer("FORECAST_WINDOW_SEC", defaults.forecast_window_sec, minimum=60),
        forecast_min_samples=c.integer("FORECAST_MIN_SAMPLES", defaults.forecast_min_samples, minimum=2),
        forecast_min_span_sec=c.integer("FORECAST_MIN_SPAN_SEC", defaults.forecast_min_span_sec, minimum=1),
        anthropic_base_url=c.parse("ANTHROPIC_BASE_URL", defaults.anthropic_base_url, _http_url),
        anthropic_token_url=c.parse("ANTHROPIC_TOKEN_URL", defaults.anthropic_token_url, _http_url),
        now_override=c.parse("NOW_OVERRIDE", None, instant),
        reset_shift_tolerance_sec=c.integer("RESET_SHIFT_TOLERANCE_SEC", defaults.reset_shift_tolerance_sec),
        health_failures=c.integer("HEALTH_FAILURES", defaults.health_failures, minimum=1),
        anthropic_user_agent=c.parse("ANTHROPIC_USER_AGENT", defaults.anthropic_user_agent, user_agent),
        trigger_token=c.parse("TRIGGER_TOKEN", None, _trigger_token),
        min_interval_sec=c.integer("MIN_INTERVAL_SEC", defaults.min_interval_sec),
        matrix_trusted_devices=c.parse("MATRIX_TRUSTED_DEVICES", (), trusted_devices),
        matrix_store_passphrase=c.raw("MATRIX_STORE_PASSPHRASE"),
        accounts=c.parse("ACCOUNTS", (), _accounts),
        extra_usage_thresholds=_optional_thresholds(c, "EXTRA_USAGE_THRESHOLDS", defaults.extra_usage_thresholds),
        charts_enabled=c.boolean("CHARTS_ENABLED", defaults.charts_enabled),
        digest_enabled=c.boolean("DIGEST_ENABLED", defaults.digest_enabled),
        log_format=c.parse("LOG_FORMAT", defaults.log_format, _log_format),
        matrix_exclude_insecure_devices=c.boolean("MATRIX_EXCLUDE_INSECURE_DEVICES", False),
        matrix_password_file=Path(password_file) if (password_file := c.raw("MATRIX_PASSWORD_FILE")) else None,
        log_level=c.parse("LOG_LEVEL", defaults.log_level, _log_level),
        session_alerts=c.boolean("SESSION_ALERTS", defaults.session_alerts),
        session_thresholds=_optional_thresholds(c, "SESSION_THRESHOLDS", defaults.session_thresholds),
        credit_thresholds=_optional_thresholds(c, "CREDIT_THRESHOLDS", defaults.credit_thresholds),
        banked_resets_enabled=c.boolean("BANKED_RESETS_ENABLED", defaults.banked_resets_enabled),
        timezone=c.parse("TIMEZONE", defaults.timezone, timezone_name),
        quiet_hours=c.parse("QUIET_HOURS", None, parse_quiet_hours),
        matrix_mention=c.parse("MATRIX_MENTION", (), mention_users),
    )
    c.problems.extend(_combination_problems(settings, c.problems, check_files=check_files))
    if c.problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(c.problems))
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
    return found


def _named(problems: list[str]) -> set[str]:
    return {p.split(":", 1)[0] for p in problems}
