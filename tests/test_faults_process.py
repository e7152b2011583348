"""Fault catalogue, process rows (issue 7): the bot killed with SIGKILL at the two worst
instants of a delivery, and two triggers (Knative's HTTP and the CronJob's CLI) firing at
the same instant. No alert lost, none shown twice.

The kill instants are reached without a test hook in the bot: the Matrix proxy of
test_faults_matrix.py parks the room send, either before forwarding it (the outbox is
saved, the alert not sent) or after Synapse accepted it (sent, the outbox not yet
cleared). The test kills the process while it is parked there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from devstack.fakes.anthropic import FakeAnthropic
from devstack.matrix_proxy import SendFault
from tests.helpers import REAL_NOW as NOW
from tests.helpers import REPO, CliResult, assert_no_secrets, bot_env, issued_secrets, payload, run_cli
from tests.matrix_scene import T0, MatrixScene

# --- SIGKILL mid-delivery ------------------------------------------------------------------


def _spawn(env: dict[str, str], now: datetime) -> subprocess.Popen[bytes]:
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO / "function"), **env}
    full["NOW_OVERRIDE"] = now.isoformat()
    return subprocess.Popen(
        [sys.executable, "-m", "claude_matrix_bot", "run"], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _kill_while_parked(scene: MatrixScene, fault: str, minutes: int) -> None:
    scene.proxy.break_sends(SendFault(fault))
    scene.set_usage(81.0)
    proc = _spawn(scene.env, T0 + timedelta(minutes=minutes))
    try:
        assert scene.proxy.parked.wait(60), "the send reached the proxy"
        # Whatever the instant, the alert is already recorded in the outbox.
        assert scene.pending() == ["threshold"]
    finally:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        scene.proxy.release()
    assert proc.returncode == -signal.SIGKILL
    scene.outputs.extend([out.decode(), err.decode()])
    assert (scene.state_dir / "lease.json").exists(), "the killed run left its lease behind"


def test_sigkill_after_saving_the_outbox_before_sending(scene: MatrixScene) -> None:
    _kill_while_parked(scene, "hold_before", 5)
    assert scene.count("passed 80%") == 0, "killed before the homeserver saw it"
    # The next tick comes after the dead run's lease expired (LEASE_TTL_SEC = 240).
    scene.run(10, 81.5)
    assert scene.count("passed 80%") == 1
    assert scene.pending() == []


def test_sigkill_after_sending_before_saving(scene: MatrixScene) -> None:
    _kill_while_parked(scene, "hold_after", 5)
    assert scene.count("passed 80%") == 1, "Synapse stored it before the bot died"
    assert scene.pending() == ["threshold"], "the bot could not know: it stays in the outbox"
    scene.run(10, 81.5)
    # Marked attempted before the send, so the next run looked in the room first: found,
    # it is not sent again (before docs/design.md §5's look it was resent with the same txn id).
    sent = scene.proxy.forwarded_sends[1:]
    assert len(sent) == 1, "not sent again"
    assert scene.count("passed 80%") == 1, "and the room shows it once"
    assert scene.pending() == []


def test_sigkill_after_sending_then_the_homeserver_forgets_the_transaction(scene: MatrixScene) -> None:
    """docs/design.md §5, beyond the homeserver's memory: the retry comes after Synapse dropped the
    transaction id (a day later, or at once on homeservers that keep it in memory)."""
    _kill_while_parked(scene, "hold_after", 5)
    [entry] = json.loads((scene.state_dir / "state.json").read_text())["outbox"]
    assert isinstance(entry["attempted_at"], int), "the mark was written before the send"
    assert scene.homeserver.forget_transaction_ids() > 0
    scene.run(10, 81.5)
    assert scene.count("passed 80%") == 1, "found among the bot's events, not sent again"
    assert len(scene.proxy.forwarded_sends[1:]) == 1
    assert scene.pending() == []


def test_a_run_inside_the_dead_runs_lease_does_nothing(scene: MatrixScene) -> None:
    _kill_while_parked(scene, "hold_before", 5)
    busy = scene.run(6, 81.0)  # one minute later: the lease is still live
    assert "another cycle is running" in busy.stderr
    assert scene.pending() == ["threshold"]
    scene.run(10, 81.0)
    assert scene.count("passed 80%") == 1


# --- two triggers at once: a real functions-framework server and the CLI --------------------


def _alert_lines(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        start = line.find('{"')
        if start < 0:
            continue
        try:
            doc = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(doc, dict) and "kind" in doc and "id" in doc:
            found.append(doc)
    return found


def test_knative_and_cronjob_at_the_same_instant_emit_each_alert_once(
    tmp_path: Path, anthropic: FakeAnthropic, function_server: tuple[str, Path]
) -> None:
    url, server_out = function_server
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    reset = NOW + timedelta(days=3)
    cli_results: list[CliResult] = []
    http_codes: list[int] = []
    for weekly in (30.0, 55.0, 85.0):  # armed; 50% crossed; 80% crossed
        usage = payload(five_hour=(5.0, NOW + timedelta(hours=2)), weekly={"seven_day": (weekly, reset)})
        anthropic.set_usage(usage)
        # The CronJob's cycle is held inside its usage call, so inside its lease, until the
        # Knative trigger has met that lease: they overlap however slowly the CLI starts (a 1 s
        # delay did not outlast a loaded machine's interpreter start-up; they then ran in turn).
        anthropic.fail_next("usage", 200, body=usage, delay=60.0)
        cli = threading.Thread(target=lambda: cli_results.append(run_cli(env, "run", now=NOW, timeout=120)))
        cli.start()
        deadline = time.monotonic() + 60
        while anthropic.usage_calls == 0 and cli.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        http_codes.append(httpx.post(url, timeout=60).status_code)
        anthropic.release_delayed()
        cli.join(timeout=120)
        anthropic.reset()

    emitted = [a for r in cli_results for a in r.alerts] + _alert_lines(server_out.read_text())
    ids = [a["id"] for a in emitted]
    assert len(ids) == len(set(ids)), "no alert twice"
    assert sorted((a["kind"], a.get("threshold")) for a in emitted) == [
        ("armed", None),
        ("threshold", 50),
        ("threshold", 80),
    ], "and none lost"
    assert all(r.code == 0 for r in cli_results), [r.stderr for r in cli_results]
    assert http_codes == [409, 409, 409], "the Knative trigger met the CronJob's lease each time"
    assert 409 in http_codes or any("another cycle is running" in r.stderr for r in cli_results), "they did collide"
    assert_no_secrets(issued_secrets(anthropic), server_out.read_text(), *(r.stderr for r in cli_results))
