"""The composition root (issue 13): `build(settings)` makes the ports once, `run_cycle`
runs on ports alone (no Settings), the sink is opened only when there is something to
send, the token stores hand what they read to the entry point's redactor, and a
configuration error found while building is a failed cycle before any write. Against
the loopback fake of the Anthropic API and a real directory store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from claude_matrix_bot.compose import build, run
from claude_matrix_bot.core.decide import DecideConfig
from claude_matrix_bot.cycle import CycleConfig, run_cycle
from claude_matrix_bot.logs import MASK, Redactor
from claude_matrix_bot.model import Alert
from claude_matrix_bot.ports import SINGLE_ACCOUNT
from claude_matrix_bot.settings import load_settings
from claude_matrix_bot.sinks.base import AlertSink, DeliveryReport
from devstack.fakes.anthropic import FakeAnthropic
from tests.helpers import bot_env, payload


class CountingSink:
    def __init__(self) -> None:
        self.opened = 0
        self.alerts: list[Alert] = []

    @contextlib.contextmanager
    def open(self) -> Iterator[AlertSink]:
        self.opened += 1
        yield self

    def deliver(self, alerts: Sequence[Alert]) -> DeliveryReport:
        self.alerts.extend(alerts)
        return DeliveryReport(tuple(a.id for a in alerts))


def test_run_cycle_runs_on_ports_and_opens_the_sink_only_to_send(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    settings = load_settings(bot_env(tmp_path, anthropic.base_url, anthropic.token_url))
    now = settings.now()
    anthropic.set_usage(payload(five_hour=(5.0, now + timedelta(hours=2)), weekly={"seven_day": (20.0, None)}))
    sink = CountingSink()
    ports = replace(build(settings, Redactor()), open_sink=sink.open)
    config = CycleConfig(decide=DecideConfig())

    first = run_cycle(ports, config, now)
    assert (first.status, first.new_alerts, first.delivered) == ("ok", 1, 1)
    assert [a.kind for a in sink.alerts] == ["armed"] and sink.opened == 1

    quiet = run_cycle(ports, config, now + timedelta(minutes=5))
    assert (quiet.status, quiet.new_alerts, quiet.pending) == ("ok", 0, 0)
    assert sink.opened == 1, "a quiet cycle never opens the sink"
    assert anthropic.usage_calls == 2


def test_the_token_store_hands_what_it_reads_to_the_redactor(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    redactor = Redactor()
    ports = build(load_settings(bot_env(tmp_path, anthropic.base_url, anthropic.token_url)), redactor)
    access = (tokens_dir / "accessToken").read_text().strip()
    assert redactor(f"Bearer {access}") == f"Bearer {access}", "nothing is known before a read"
    ports.tokens[SINGLE_ACCOUNT].load()
    assert redactor(f"Bearer {access}") == f"Bearer {MASK}"


def test_a_configuration_error_while_building_fails_the_cycle_before_any_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(var, raising=False)  # not in a pod, and no kubeconfig either
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    env = bot_env(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9/token")
    del env["LOCAL_MODE"]
    env.update(K8S_OAUTH_SECRET_NAME="claude-oauth-tokens", K8S_NAMESPACE="claude-bot")

    result = run(load_settings(env))

    assert (result.status, result.failure, result.exit_code, result.http_status) == ("failed", "config", 2, 500)
    assert result.error is not None and "no Kubernetes credentials" in result.error
    assert not (tmp_path / "state").exists(), "no lease, no state: nothing was written"


@pytest.mark.parametrize("passphrase", [None, "a-store-passphrase-0123"])
def test_an_unencrypted_key_store_is_said_in_the_log_and_in_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, passphrase: str | None
) -> None:
    # Issue 21 item 5: every deployment kept its key store in plain text, and nothing said so.
    from claude_matrix_bot.compose import matrix_sink
    from claude_matrix_bot.status import collect, format_status, status_report

    env = bot_env(tmp_path, "https://api.example.org", "https://auth.example.org/token")
    env.update(ALERT_SINK="matrix", MATRIX_ROOM_ID="!room:example.org", MATRIX_CREDS_DIR=str(tmp_path / "creds"))
    if passphrase:
        env["MATRIX_STORE_PASSPHRASE"] = passphrase
    settings = load_settings(env)
    caplog.set_level("WARNING")
    matrix_sink(settings, tmp_path / "nio")
    warned = [r.getMessage() for r in caplog.records if "not encrypted at rest" in r.getMessage()]
    report = status_report(settings)
    text = format_status(collect(settings))
    if passphrase is None:
        assert len(warned) == 1 and "MATRIX_STORE_PASSPHRASE" in warned[0]
        assert report["key_store"] == {"encrypted": False, "warning": warned[0]}
        assert f"WARNING: {warned[0]}" in text.splitlines()
    else:
        assert warned == []
        assert report["key_store"] == {"encrypted": True}
        assert "not encrypted" not in text
        assert passphrase not in text + str(report)


@pytest.mark.parametrize("accounts", [None, "work,priv"])
def test_every_token_store_keeps_a_pair_it_cannot_write_back_in_the_state_store(
    tmp_path: Path, anthropic: FakeAnthropic, accounts: str | None
) -> None:
    # Issue 21 item 3: the composition root gives every account its last resort, beside its state.
    from claude_matrix_bot.tokens.pending import SafekeepingTokenStore

    extra = {"ACCOUNTS": accounts} if accounts else {}
    ports = build(load_settings(bot_env(tmp_path, anthropic.base_url, anthropic.token_url, **extra)), Redactor())
    keys = {}
    for name, registering in ports.tokens.items():
        keeper = registering.inner  # type: ignore[attr-defined]
        assert isinstance(keeper, SafekeepingTokenStore)
        assert keeper.state is ports.state
        keys[name] = keeper.key
    expected = {"work": "work/tokens-pending.json", "priv": "priv/tokens-pending.json"}
    assert keys == (expected if accounts else {SINGLE_ACCOUNT: "tokens-pending.json"})
