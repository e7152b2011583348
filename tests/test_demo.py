"""`make demo` end to end (issue 6): the real script, in a subprocess, as a newcomer runs it.

It starts its own Synapse, usage API and functions-framework server; the proof is
the room as the recipient's device decrypts it, and that nothing is left running.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.synapse]

SIGNALS = {
    "armed": "Claude usage watch armed",
    "50%": "Weekly (all models) usage passed 50%",
    "80%": "Weekly (all models) usage passed 80%",
    "reset shift": "Weekly (all models) reset moved 4h later",
    "forecast": "Weekly (all models) on track to run out before it resets",
    "degraded": "Claude usage watch is failing",
    "recovered": "Claude usage watch recovered",
    "digest": "Weekly (all models): the week to",
    "credit reminder": "The $250.00 credit expires in 1d 12h with",
    "banked reset": "A banked usage-limit reset is available",
    "session limit": "5-hour session: limit reached",
    "session back": "5-hour session: the limit is back",
}


def _processes_under(directory: Path) -> list[str]:
    """Processes whose working directory or command line points into `directory`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(directory)) or str(directory) in cmdline:
            found.append(f"{proc.name}: {cmdline.strip()}")
    return found


def _port_is_closed(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _line_with(room: str, account: str, text: str) -> str:
    """The first line of the room that is `account`'s message containing `text` ('' if none)."""
    return next((line for line in room.splitlines() if f"{account} · " in line and text in line), "")


def test_make_demo_shows_every_signal_decrypted_and_leaves_nothing_running(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-m", "scripts.demo", "--workdir", str(workdir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout

    header, _, room = out.partition("The room as @alice:localhost decrypts it")
    assert room, out
    assert "0 undecryptable" in room.splitlines()[0]
    for name, text in SIGNALS.items():
        assert text in room, f"{name} missing from the decrypted room"
    # The alert raised while the homeserver was down arrives late, and only once.
    assert room.count(SIGNALS["80%"]) == 1
    assert re.search(r"usage passed 80%.*arrived late: raised Thu 10:00", room)
    # Two accounts (ACCOUNTS=work,priv) in one room: every message is led by its account's
    # name; work has the week's story, priv its own baseline, 50% and health messages.
    assert "work · 🔴 Weekly (all models) usage passed 80%" in room
    assert "priv · 🟠 Weekly (all models) usage passed 50%" in room
    assert "work · 🟠 Weekly (all models) usage passed 50%" in room
    # priv's note raised in quiet hours (QUIET_HOURS=23:00-07:00) goes out in the morning,
    # saying when it was raised; nothing calls it late for a homeserver outage.
    held = _line_with(room, "priv", SIGNALS["50%"].replace("Weekly", "🟠 Weekly"))
    assert held.startswith("Sat 07:05"), held
    assert re.search(
        r"usage passed 50%.*\n(?: {11}.*\n)*? {11}Raised Fri \d+ \w+ 23:30 UTC, held through quiet hours\.", room
    )
    assert "priv passes 50% in quiet hours (23:00-07:00): the note waits" in header
    for kind in ("armed", "degraded", "recovered"):
        for account in ("work", "priv"):
            assert _line_with(room, account, SIGNALS[kind]), f"{account}'s {kind} missing"
    first_lines = re.findall(r"^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d\d:\d\d +(.*)$", room, re.MULTILINE)
    assert first_lines and all(line.startswith(("work · ", "priv · ")) for line in first_lines), first_lines
    # work's credit and banked reset (issue 23): the grant when it appears, the credit's 72 h
    # reminder; the baseline lists the credit, the digest says where the week went.
    for kind in ("credit reminder", "banked reset"):
        assert room.count(SIGNALS[kind]) == 1 and _line_with(room, "work", SIGNALS[kind]), kind
    assert "Credit (iguana_necktie): $229.50 left of $250.00" in room
    assert "Where the week went: Claude Code 83%, Chats 17%." in room
    # The 5-hour wall (issue 24): its limit and its back once each, on work's account.
    for kind in ("session limit", "session back"):
        assert room.count(SIGNALS[kind]) == 1 and _line_with(room, "work", SIGNALS[kind]), kind
    # Only the weekly rollover speaks, once (work's digest; a 5-hour rollover without a limit
    # and priv's window, still open, stay silent): exactly the sixteen messages above (work's
    # armed, 50%, banked reset, session limit, session back, shift, forecast, 80%, credit
    # reminder, degraded, recovered, digest; priv's armed, 50%, degraded, recovered).
    assert room.count(SIGNALS["digest"]) == 1
    assert _line_with(room, "work", SIGNALS["digest"])
    count = re.search(r"\((\d+) messages", room.splitlines()[0])
    assert count is not None
    assert count.group(1) == "16"
    assert len(first_lines) == 16

    # Both production entry points ran, and the outage showed as failures of each.
    assert "cycle via HTTP → 200" in header
    assert "cycle via CLI  → exit 0" in header
    assert "cycle via HTTP → 503" in header
    assert "cycle via CLI  → exit 1" in header

    page = (workdir / "transcript.html").read_text()
    for text in SIGNALS.values():
        assert text in page
    assert page.count(SIGNALS["80%"]) == 1

    # Pictures: the forecast's and the digest's charts, downloaded and decrypted by alice's
    # device, are inside their messages' rows of the HTML transcript as PNGs, and named in
    # the text transcript.
    pictures = re.search(r"messages, (\d+) pictures?, ", room.splitlines()[0])
    assert pictures is not None
    rows = re.findall(r"<tr>.*?</tr>", page, re.DOTALL)
    embedded = [
        base64.b64decode(data) for data in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    ]
    assert len(embedded) == int(pictures.group(1))
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in embedded)
    assert int(pictures.group(1)) == 2, "the forecast's chart and the digest's"
    for kind in ("forecast", "digest"):
        row = next(row for row in rows if SIGNALS[kind] in row)
        assert row.count('<img src="data:image/png;base64,') == 1, f"the {kind} row shows its chart"
    assert re.search(re.escape(SIGNALS["forecast"]) + r".*\n(?: {11}.*\n)*? {11}\[picture: .*PNG, \d+ bytes\)\]", room)

    # Nothing left behind: the ports it printed are closed, no process runs in its folder.
    ports = [int(p) for p in re.findall(r"^\w[\w ]+ +http://127\.0\.0\.1:(\d+)", header, re.MULTILINE)]
    assert len(ports) == 3, header
    assert all(_port_is_closed(port) for port in ports)
    assert _processes_under(workdir) == []

    # The secrets it minted (Matrix access token, OAuth tokens) never reach the output.
    secrets = [(workdir / "matrix-bot" / "access_token").read_text().strip()]
    secrets += [
        (workdir / "tokens" / account / n).read_text().strip()
        for account in ("work", "priv")
        for n in ("accessToken", "refreshToken")
    ]
    for secret in secrets:
        assert len(secret) > 8
        assert secret not in out
        assert secret not in result.stderr
