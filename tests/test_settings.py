"""Settings (docs/design.md §3 "Environment"): every variable, its default, its parsing, and one
ConfigError that names every offending variable before any I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_matrix_bot import store
from claude_matrix_bot.core.config import DecideConfig
from claude_matrix_bot.errors import BotError, ConfigError
from claude_matrix_bot.quiet_hours import QuietHours
from claude_matrix_bot.settings import Settings, TrustedDevice, load_settings
from claude_matrix_bot.settings_spec import declared, shown_default

# The least a default (Matrix sink, Kubernetes Secret) deployment must say.
MINIMAL = {"MATRIX_ROOM_ID": "!alerts:example.org", "K8S_OAUTH_SECRET_NAME": "claude-oauth-tokens"}

REPO = Path(__file__).resolve().parent.parent
# Every variable, as declared once (name, parser, default, meaning) on the settings' fields.
DECLARED = declared(Settings)
VARIABLES = [item.env for item in DECLARED]


def config_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert isinstance(caught.value, BotError)
    return str(caught.value)


def named(message: str) -> set[str]:
    """The variables a ConfigError names: one problem per line, `NAME: why`."""
    return {line.strip().split(":", 1)[0] for line in message.splitlines()[1:]}


def test_defaults_are_the_documented_ones() -> None:
    s = load_settings(MINIMAL)
    assert s.matrix_room_id == "!alerts:example.org"
    assert s.matrix_creds_dir == Path("/var/run/secrets/matrix-bot")
    assert s.oauth_tokens_dir == Path("/var/run/secrets/oauth-tokens")
    assert s.local_mode is False
    assert s.k8s_oauth_secret_name == "claude-oauth-tokens"
    assert s.k8s_namespace is None  # the ServiceAccount's namespace file, read by the Secret store
    assert s.oauth_refresh_leeway_sec == 600
    assert s.weekly_thresholds == (50, 80)
    assert s.state_url == "file:///state"
    assert s.forecast_enabled is True
    assert (s.forecast_window_sec, s.forecast_min_samples, s.forecast_min_span_sec) == (21600, 6, 3600)
    assert s.alert_sink == "matrix"
    assert s.anthropic_base_url == "https://api.anthropic.com"
    assert s.anthropic_token_url == "https://platform.claude.com/v1/oauth/token"
    assert s.now_override is None
    assert s.reset_shift_tolerance_sec == 60
    assert s.health_failures == 3
    # Claude Code's current form (docs/design.md §2): the banked-reset block needs it.
    assert re.fullmatch(r"claude-cli/2\.1\.\d+ \(external, cli\)", s.anthropic_user_agent)
    assert s.credit_thresholds == (80, 100)
    assert s.banked_resets_enabled is True
    assert s.trigger_token is None
    assert s.min_interval_sec == 60
    assert s.matrix_trusted_devices == ()
    assert s.matrix_store_passphrase is None
    assert s.log_level == "INFO"
    assert (s.session_alerts, s.session_thresholds, s.credit_thresholds) == (True, (), (80, 100))
    assert s.banked_resets_enabled is True
    assert s.timezone.tzname(datetime(2026, 12, 7, tzinfo=UTC)) == "UTC"
    assert (s.quiet_hours, s.matrix_mention) == (None, ())


def test_every_variable_is_parsed() -> None:
    env = {
        "MATRIX_ROOM_ID": "!room:matrix.example.org",
        "MATRIX_CREDS_DIR": "/etc/matrix",
        "OAUTH_TOKENS_DIR": "/home/me/tokens",
        "LOCAL_MODE": "true",
        "K8S_OAUTH_SECRET_NAME": "tokens",
        "K8S_NAMESPACE": "claude",
        "OAUTH_REFRESH_LEEWAY_SEC": "900",
        "WEEKLY_THRESHOLDS": "90, 25%,75,25",
        "STATE_URL": "s3://bucket/claude-bot",
        "FORECAST_ENABLED": "off",
        "FORECAST_WINDOW_SEC": "7200",
        "FORECAST_MIN_SAMPLES": "4",
        "FORECAST_MIN_SPAN_SEC": "1800",
        "ALERT_SINK": "stdout",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:8080/",
        "ANTHROPIC_TOKEN_URL": "http://127.0.0.1:8080/v1/oauth/token",
        "NOW_OVERRIDE": "2026-01-02T13:00:00+01:00",
        "RESET_SHIFT_TOLERANCE_SEC": "120",
        "HEALTH_FAILURES": "5",
        "ANTHROPIC_USER_AGENT": "claude-code/9.9.9",
        "ALLOW_PLAIN_HTTP": "1",
        "TRIGGER_TOKEN": "trigger-secret-value",
        "MIN_INTERVAL_SEC": "0",
        "MATRIX_TRUSTED_DEVICES": "@me:example.org:PHONE:edKeyA",
        "MATRIX_STORE_PASSPHRASE": "store-secret-value",
        "LOG_LEVEL": "debug",
        "SESSION_ALERTS": "off",
        "SESSION_THRESHOLDS": "90,80",
        "CREDIT_THRESHOLDS": "50",
        "BANKED_RESETS_ENABLED": "no",
        "TIMEZONE": "Europe/Berlin",
        "QUIET_HOURS": "22:30-07:00",
        "MATRIX_MENTION": "@me:example.org, @partner:matrix.example.org:8448,@me:example.org",
        "ACCOUNTS": "work,priv",
        "EXTRA_USAGE_THRESHOLDS": "100",
        "CHARTS_ENABLED": "0",
        "DIGEST_ENABLED": "false",
        "LOG_FORMAT": "json",
        "MATRIX_EXCLUDE_INSECURE_DEVICES": "yes",
        "MATRIX_PASSWORD_FILE": "/run/secrets/bot-password",
    }
    assert sorted(env) == sorted(VARIABLES), "every declared variable is parsed here"
    s = load_settings(env)
    assert [item.env for item in DECLARED if getattr(s, item.name) == item.default] == []
    assert s == Settings(
        matrix_room_id="!room:matrix.example.org",
        matrix_creds_dir=Path("/etc/matrix"),
        oauth_tokens_dir=Path("/home/me/tokens"),
        local_mode=True,
        k8s_oauth_secret_name="tokens",
        k8s_namespace="claude",
        oauth_refresh_leeway_sec=900,
        weekly_thresholds=(25, 75, 90),
        state_url="s3://bucket/claude-bot",
        forecast_enabled=False,
        forecast_window_sec=7200,
        forecast_min_samples=4,
        forecast_min_span_sec=1800,
        alert_sink="stdout",
        anthropic_base_url="http://127.0.0.1:8080",
        anthropic_token_url="http://127.0.0.1:8080/v1/oauth/token",
        allow_plain_http=True,
        now_override=datetime(2026, 1, 2, 12, 0, tzinfo=UTC),
        reset_shift_tolerance_sec=120,
        health_failures=5,
        anthropic_user_agent="claude-code/9.9.9",
        trigger_token="trigger-secret-value",
        min_interval_sec=0,
        matrix_trusted_devices=(TrustedDevice("@me:example.org", "PHONE", "edKeyA"),),
        matrix_store_passphrase="store-secret-value",
        log_level="DEBUG",
        session_alerts=False,
        session_thresholds=(80, 90),
        credit_thresholds=(50,),
        banked_resets_enabled=False,
        timezone=ZoneInfo("Europe/Berlin"),
        quiet_hours=QuietHours(time(22, 30), time(7, 0)),
        matrix_mention=("@me:example.org", "@partner:matrix.example.org:8448"),
        accounts=("work", "priv"),
        extra_usage_thresholds=(100,),
        charts_enabled=False,
        digest_enabled=False,
        log_format="json",
        matrix_exclude_insecure_devices=True,
        matrix_password_file=Path("/run/secrets/bot-password"),
    )
    # NOW_OVERRIDE is the run's "now", in UTC.
    assert s.now() == datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert s.now().utcoffset() == timedelta(0)


def test_without_now_override_now_is_the_clock() -> None:
    before = datetime.now(UTC)
    now = load_settings(MINIMAL).now()
    assert before <= now <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", True),
        ("yes", True),
        ("ON", True),
        ("True", True),
        ("0", False),
        ("no", False),
        ("off", False),
        ("FALSE", False),
    ],
)
def test_booleans(text: str, value: bool) -> None:
    assert load_settings({**MINIMAL, "FORECAST_ENABLED": text}).forecast_enabled is value


@pytest.mark.parametrize(
    "url",
    [
        "file:///state",
        "file:///var/lib/claude-bot",
        "file://localhost/data",
        "s3://bucket",
        "s3://bucket/a/b",
        "gs://bucket/prefix",
        "memory://simulation/run-1",
    ],
)
def test_state_urls(url: str) -> None:
    assert load_settings({**MINIMAL, "STATE_URL": url}).state_url == url


def test_the_state_url_is_checked_by_the_store_s_own_scheme_table(monkeypatch: pytest.MonkeyPatch) -> None:
    # A backend added to the table is a valid STATE_URL, with no list of schemes in the settings.
    monkeypatch.setitem(
        store.SCHEMES, "vault", store.Scheme("vault://name", lambda p: bool(p.netloc), store.open_store)
    )
    assert load_settings({**MINIMAL, "STATE_URL": "vault://kept"}).state_url == "vault://kept"
    message = config_error({**MINIMAL, "STATE_URL": "vault:///no-name"})
    assert "STATE_URL: expected vault://name" in message
    message = config_error({**MINIMAL, "STATE_URL": "ftp://host/state"})
    assert all(form in message for form in ("file:///absolute/dir", "s3://bucket", "gs://bucket", "memory://name"))


def test_blank_values_count_as_unset() -> None:
    s = load_settings({**MINIMAL, "WEEKLY_THRESHOLDS": "  ", "HEALTH_FAILURES": "", "TRIGGER_TOKEN": " "})
    assert (s.weekly_thresholds, s.health_failures, s.trigger_token) == ((50, 80), 3, None)


# --- one error naming every offending variable --------------------------------------------


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("OAUTH_REFRESH_LEEWAY_SEC", "ten minutes"),
        ("OAUTH_REFRESH_LEEWAY_SEC", "-1"),
        ("WEEKLY_THRESHOLDS", "fifty"),
        ("WEEKLY_THRESHOLDS", "0,50"),
        ("WEEKLY_THRESHOLDS", "50,101"),
        ("WEEKLY_THRESHOLDS", ","),
        ("STATE_URL", "/state"),
        ("STATE_URL", "ftp://host/state"),
        ("STATE_URL", "file://relative/dir"),
        ("STATE_URL", "s3:///no-bucket"),
        ("STATE_URL", "memory:///no-name"),
        ("FORECAST_ENABLED", "maybe"),
        ("FORECAST_WINDOW_SEC", "59"),
        ("FORECAST_MIN_SAMPLES", "1"),
        ("FORECAST_MIN_SPAN_SEC", "0"),
        ("FORECAST_MIN_SPAN_SEC", "90000"),  # longer than the window: no forecast could ever fire
        ("ALERT_SINK", "email"),
        ("ANTHROPIC_BASE_URL", "api.anthropic.com"),
        ("ANTHROPIC_TOKEN_URL", "ftp://x/token"),
        ("NOW_OVERRIDE", "yesterday"),
        ("NOW_OVERRIDE", "2026-01-02T12:00:00"),  # no timezone: ambiguous
        ("RESET_SHIFT_TOLERANCE_SEC", "1.5"),
        ("HEALTH_FAILURES", "0"),
        ("ANTHROPIC_USER_AGENT", "claude-code/1\r\nX-Injected: 1"),
        ("MIN_INTERVAL_SEC", "soon"),
        ("MATRIX_TRUSTED_DEVICES", "@bot:example.org:DEVICE"),
        ("MATRIX_TRUSTED_DEVICES", "bot:example.org:DEVICE:key"),
        ("MATRIX_ROOM_ID", "#alerts:example.org"),  # an alias, not a room id
        ("LOCAL_MODE", "sometimes"),
        ("TRIGGER_TOKEN", "short-token"),  # under 16 characters: guessable, and too short to mask
        ("K8S_OAUTH_SECRET_NAME", "../../configmaps/x"),
        ("K8S_OAUTH_SECRET_NAME", "Tokens"),
        ("K8S_NAMESPACE", "claude_bot"),
        ("K8S_NAMESPACE", "x" * 64),
        ("LOG_FORMAT", "xml"),
        ("LOG_LEVEL", "verbose"),
        ("LOG_LEVEL", "warn"),
        ("ANTHROPIC_USER_AGENT", "claude-cli/2.1.0 (external, cli) ünïcode"),  # a header value: ASCII only
        ("ANTHROPIC_USER_AGENT", "claude-cli/2.1.0\t(external, cli)"),
        ("SESSION_ALERTS", "sometimes"),
        ("SESSION_THRESHOLDS", "0"),
        ("CREDIT_THRESHOLDS", "80,eighty"),
        ("BANKED_RESETS_ENABLED", "maybe"),
        ("TIMEZONE", "Mars/Olympus_Mons"),
        ("TIMEZONE", "Europe"),  # a folder of the zone data, not a zone
        ("TIMEZONE", "../../etc/passwd"),
        ("TIMEZONE", "utc"),  # IANA names are case-sensitive
        ("TIMEZONE", "CET+1"),
        ("QUIET_HOURS", "22-7"),
        ("QUIET_HOURS", "22:00-24:00"),
        ("QUIET_HOURS", "22:00 07:00"),
        ("QUIET_HOURS", "07:00-07:00"),  # all day or never: not a span
        ("MATRIX_MENTION", "me:example.org"),
        ("MATRIX_MENTION", "@me"),
        ("MATRIX_MENTION", "@me:example.org,#room:example.org"),
        ("MATRIX_MENTION", " , "),
    ],
)
def test_each_bad_value_is_named(name: str, bad: str) -> None:
    message = config_error({**MINIMAL, name: bad})
    assert named(message) == {name}


def test_several_bad_variables_give_one_error_naming_each() -> None:
    bad = {
        "OAUTH_REFRESH_LEEWAY_SEC": "abc",
        "WEEKLY_THRESHOLDS": "fifty,eighty",
        "STATE_URL": "ftp://nowhere",
        "FORECAST_ENABLED": "maybe",
        "ALERT_SINK": "email",
        "ANTHROPIC_BASE_URL": "nope",
        "NOW_OVERRIDE": "yesterday",
        "HEALTH_FAILURES": "0",
        "MATRIX_TRUSTED_DEVICES": "not-a-device",
        "MATRIX_ROOM_ID": "general",
    }
    message = config_error({"K8S_OAUTH_SECRET_NAME": "tokens", **bad})
    assert message.startswith("invalid configuration:")
    assert named(message) == set(bad)


def test_matrix_room_id_is_required_for_the_matrix_sink_only() -> None:
    assert named(config_error({"K8S_OAUTH_SECRET_NAME": "tokens"})) == {"MATRIX_ROOM_ID"}
    assert named(config_error({"K8S_OAUTH_SECRET_NAME": "tokens", "ALERT_SINK": "matrix"})) == {"MATRIX_ROOM_ID"}
    s = load_settings({"K8S_OAUTH_SECRET_NAME": "tokens", "ALERT_SINK": "stdout"})
    assert s.matrix_room_id is None


def test_a_short_trigger_token_is_refused_with_the_reason_and_without_its_value() -> None:
    message = config_error({**MINIMAL, "TRIGGER_TOKEN": "hunter2-trigger"})  # 15 characters
    assert named(message) == {"TRIGGER_TOKEN"}
    assert "at least 16 characters" in message and "got 15" in message
    assert "hunter2" not in message
    assert load_settings({**MINIMAL, "TRIGGER_TOKEN": "x" * 16}).trigger_token == "x" * 16


def test_log_format_defaults_to_text_and_accepts_json() -> None:
    assert load_settings(MINIMAL).log_format == "text"
    assert load_settings({**MINIMAL, "LOG_FORMAT": "JSON"}).log_format == "json"


def test_check_files_names_a_missing_matrix_creds_dir_with_the_other_problems(tmp_path: Path) -> None:
    env = {**MINIMAL, "MATRIX_CREDS_DIR": str(tmp_path / "absent"), "HEALTH_FAILURES": "0"}
    load_settings(env | {"HEALTH_FAILURES": "3"})  # not looked at unless asked: status needs no credentials
    with pytest.raises(ConfigError) as caught:
        load_settings(env, check_files=True)
    assert named(str(caught.value)) == {"MATRIX_CREDS_DIR", "HEALTH_FAILURES"}
    assert "matrix-login" in str(caught.value)


def test_check_files_names_each_missing_or_empty_credential_file(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "homeserver_url").write_text("http://127.0.0.1:8008")
    (creds / "user_id").write_text("@bot:example.org")
    (creds / "access_token").write_text("")
    env = {**MINIMAL, "MATRIX_CREDS_DIR": str(creds)}
    with pytest.raises(ConfigError) as caught:
        load_settings(env, check_files=True)
    message = str(caught.value)
    assert named(message) == {"MATRIX_CREDS_DIR"}
    assert "access_token (empty)" in message and "device_id (missing)" in message
    (creds / "access_token").write_text("syt_secret")
    (creds / "device_id").write_text("BOTDEVICE")
    assert load_settings(env, check_files=True).matrix_creds_dir == creds
    # The stdout sink needs no Matrix credentials at all.
    load_settings({**env, "ALERT_SINK": "stdout", "MATRIX_CREDS_DIR": str(tmp_path / "absent")}, check_files=True)


def test_the_secret_name_is_required_unless_local_mode() -> None:
    assert named(config_error({"MATRIX_ROOM_ID": "!r:example.org"})) == {"K8S_OAUTH_SECRET_NAME"}
    assert named(config_error({"MATRIX_ROOM_ID": "!r:example.org", "LOCAL_MODE": "0"})) == {"K8S_OAUTH_SECRET_NAME"}
    s = load_settings({"MATRIX_ROOM_ID": "!r:example.org", "LOCAL_MODE": "1"})
    assert s.local_mode is True and s.k8s_oauth_secret_name is None


def test_an_empty_environment_names_both_requirements() -> None:
    assert named(config_error({})) == {"MATRIX_ROOM_ID", "K8S_OAUTH_SECRET_NAME"}


# --- MATRIX_TRUSTED_DEVICES (user ids contain colons) ---------------------------------------


def test_trusted_devices_split_from_the_right() -> None:
    s = load_settings(
        {
            **MINIMAL,
            "MATRIX_TRUSTED_DEVICES": " @alice:example.org:PHONE:Ab+/cd0123 ,"
            "@bob:matrix.example.org:8448:LAPTOP:Zz9=, ,@c-3.po_x:sub.example.org:D:k",
        }
    )
    assert s.matrix_trusted_devices == (
        TrustedDevice("@alice:example.org", "PHONE", "Ab+/cd0123"),
        TrustedDevice("@bob:matrix.example.org:8448", "LAPTOP", "Zz9="),
        TrustedDevice("@c-3.po_x:sub.example.org", "D", "k"),
    )


@pytest.mark.parametrize(
    "entry",
    [
        "@alice:example.org:PHONE",
        "@alice:example.org::key",
        "@alice:example.org:PHONE:",
        "alice:PHONE:key",
        "@alice:PHONE:key",
    ],
)
def test_malformed_trusted_devices(entry: str) -> None:
    message = config_error({**MINIMAL, "MATRIX_TRUSTED_DEVICES": entry})
    assert named(message) == {"MATRIX_TRUSTED_DEVICES"}


# --- secrets --------------------------------------------------------------------------------


def test_no_secret_in_repr_or_errors() -> None:
    secrets = {"TRIGGER_TOKEN": "tt-5ecret-0001-trigger", "MATRIX_STORE_PASSPHRASE": "pp-5ecret-0002"}
    s = load_settings({**MINIMAL, **secrets})
    assert s.trigger_token == "tt-5ecret-0001-trigger"
    assert s.matrix_store_passphrase == "pp-5ecret-0002"
    for text in (repr(s), str(s)):
        assert "5ecret" not in text
    # A configuration error elsewhere does not echo them either.
    message = config_error({**secrets, "HEALTH_FAILURES": "x"})
    assert "5ecret" not in message


# --- whatever the environment, Settings or one ConfigError ----------------------------------


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(VARIABLES), st.text(max_size=40), max_size=10))
def test_any_environment_gives_settings_or_one_config_error(env: dict[str, str]) -> None:
    try:
        load_settings({**MINIMAL, **env})
    except ConfigError as exc:
        message = str(exc)
        assert named(message) <= set(VARIABLES)
        assert named(message)


@pytest.mark.parametrize("name", ["CHARTS_ENABLED", "DIGEST_ENABLED"])
def test_pictures_and_the_digest_are_on_by_default_and_validated(name: str) -> None:
    # docs/design.md §3: `CHARTS_ENABLED`, `DIGEST_ENABLED` | on, on.
    field = name.lower()
    assert getattr(load_settings(MINIMAL), field) is True
    assert getattr(load_settings({**MINIMAL, name: "false"}), field) is False
    assert getattr(load_settings({**MINIMAL, name: "on"}), field) is True
    message = config_error({**MINIMAL, name: "weekly", "FORECAST_ENABLED": "maybe"})
    assert named(message) == {name, "FORECAST_ENABLED"}, "named together with every other bad value"


# --- the reader's day and the new families (docs/design.md §8, §9) -----------------------------


@pytest.mark.parametrize(
    ("text", "start", "end"), [("22:00-07:00", time(22), time(7)), ("9:05 - 17:30", time(9, 5), time(17, 30))]
)
def test_quiet_hours_are_a_span_of_local_time(text: str, start: time, end: time) -> None:
    span = load_settings({**MINIMAL, "QUIET_HOURS": text}).quiet_hours
    assert span == QuietHours(start, end)
    assert str(span) == f"{start:%H:%M}-{end:%H:%M}"


def test_quiet_hours_may_wrap_midnight() -> None:
    night = QuietHours(time(22), time(7))
    assert night.wraps_midnight
    assert [night.contains(time(h)) for h in (21, 22, 23, 0, 6, 7, 12)] == [False, True, True, True, True, False, False]
    office = QuietHours(time(9), time(17, 30))
    assert not office.wraps_midnight
    assert [office.contains(t) for t in (time(8, 59), time(9), time(17, 29), time(17, 30))] == [
        False,
        True,
        True,
        False,
    ]


def test_log_level_takes_any_case_and_is_named_with_the_other_bad_values() -> None:
    assert load_settings({**MINIMAL, "LOG_LEVEL": "debug"}).log_level == "DEBUG"
    assert load_settings({**MINIMAL, "LOG_LEVEL": "Warning"}).log_level == "WARNING"
    message = config_error({**MINIMAL, "LOG_LEVEL": "loud", "TIMEZONE": "Nowhere/At_All", "HEALTH_FAILURES": "0"})
    assert named(message) == {"LOG_LEVEL", "TIMEZONE", "HEALTH_FAILURES"}


@pytest.mark.parametrize("name", ["CREDIT_THRESHOLDS", "SESSION_THRESHOLDS", "EXTRA_USAGE_THRESHOLDS"])
def test_set_but_empty_thresholds_turn_a_family_s_thresholds_off(name: str) -> None:
    assert getattr(load_settings({**MINIMAL, name: ""}), name.lower()) == ()
    assert getattr(load_settings({**MINIMAL, name: "100,25"}), name.lower()) == (25, 100)


def test_the_core_gets_the_families_and_the_reader_s_day() -> None:
    s = load_settings(
        {
            **MINIMAL,
            "SESSION_ALERTS": "off",
            "SESSION_THRESHOLDS": "80",
            "CREDIT_THRESHOLDS": "",
            "BANKED_RESETS_ENABLED": "off",
            "TIMEZONE": "America/New_York",
            "QUIET_HOURS": "23:00-06:30",
        }
    )
    config = s.decide_config()
    assert config == DecideConfig(
        session_alerts=False,
        session_thresholds=(80,),
        credit_thresholds=(),
        banked_resets_enabled=False,
        timezone=ZoneInfo("America/New_York"),
        quiet_hours=QuietHours(time(23), time(6, 30)),
    )
    # The defaults of both come from one place.
    assert load_settings(MINIMAL).decide_config() == DecideConfig()


# --- the README's table, the settings and the declaration (docs/design.md §3) ------------------


def readme_settings_table() -> dict[str, tuple[str, str]]:
    """`NAME -> (default, meaning)` from the README's table of variables."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("| variable | default | meaning |") + 2
    table: dict[str, tuple[str, str]] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        name, default, meaning = (cell.strip() for cell in line.strip("|").split(" | ", 2))
        assert name.startswith("`") and name.endswith("`"), line
        assert name.strip("`") not in table, f"{name} is listed twice"
        table[name.strip("`")] = (default, meaning)
    return table


def test_the_readme_table_lists_every_declared_variable_with_its_default() -> None:
    table = readme_settings_table()
    assert sorted(table) == sorted(VARIABLES)
    shown = {item.env: shown_default(item) for item in DECLARED}
    assert {name: default for name, (default, _) in table.items()} == shown
    assert all(meaning for _, meaning in table.values())


def test_each_setting_says_in_one_line_what_it_means() -> None:
    for item in DECLARED:
        assert item.spec.meaning and "\n" not in item.spec.meaning, item.env
        assert item.env == item.name.upper()


def test_the_core_configuration_is_the_settings_of_the_same_names() -> None:
    core = {item.name for item in declared(DecideConfig)}
    assert core <= {item.name for item in DECLARED}
    assert {"weekly_thresholds", "reset_shift_tolerance_sec", "timezone", "quiet_hours"} <= core
    assert "matrix_mention" not in core and "trigger_token" not in core, "the core gets no shell or secret setting"
