"""`make demo`: the whole bot, usage in and encrypted alerts out, in about a minute.

Starts a throwaway Synapse and the simulated usage API on 127.0.0.1, registers the
bot and a recipient (alice), who creates an end-to-end-encrypted room and invites
the bot. Then it plays a scripted week at accelerated simulated time through the
two production entry points, alternately: the HTTP trigger (a real
functions-framework server, PingSource-style CloudEvents) and the CLI
(`python -m claude_matrix_bot run`, as the CronJob runs it). The bot watches two
accounts (`ACCOUNTS=work,priv`, docs/design.md §6): work carries the week's story, priv is
a lighter private subscription with alerts of its own, in the same room. At the
end it prints the room as alice's device decrypts it and writes the same
transcript as HTML.

Everything lives under one throwaway folder (`.demo/` by default); every process
it starts is stopped on the way out, errors and Ctrl-C included.

    python -m scripts.demo [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from devstack.bot import run_cycle
from devstack.fakes.anthropic import FakeAnthropic, banked_block, credit_entry, grant_entry
from devstack.function_server import FunctionServer
from devstack.payloads import payload
from devstack.stack import Stack
from devstack.synapse import Homeserver
from scripts._demo_room import DemoRecipient, StepSpan, clock, html_transcript, place_on_clock, plain_transcript

REPO = Path(__file__).resolve().parent.parent
# The production target on the demo's simulated clock (scripts/_demo_function.py says how).
DEMO_FUNCTION = REPO / "scripts" / "_demo_function.py"
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
CLI_TIMEOUT = 60.0
# Knative's PingSource sends a binary-mode CloudEvent like this one.
PING_HEADERS = {
    "ce-specversion": "1.0",
    "ce-type": "dev.knative.sources.ping",
    "ce-source": "/apis/v1/namespaces/claude-matrix-bot/pingsources/claude-matrix-bot",
    "Content-Type": "application/json",
}

# Notes raised at night wait for the morning (docs/design.md §9); urgent alerts would not.
QUIET_HOURS = "23:00-07:00"
# The deployment's accounts (docs/design.md §6): every message is led by one of these names.
ACCOUNTS = ("work", "priv")

Usage = dict[str, Any]


def week_start(now: datetime) -> datetime:
    """Monday 09:00 UTC of the current week: simulated times stay within days of the
    real clock, so the fake's tokens (valid for two real weeks) stay valid."""
    monday = (now - timedelta(days=now.weekday())).replace(hour=9, minute=0, second=0, microsecond=0)
    return monday


@dataclass(frozen=True, slots=True)
class Outcome:
    """One cycle as the step line reports it."""

    via: str
    code: int  # HTTP status or exit code
    new_alerts: int
    delivered: int
    pending: int
    error: str | None
    failure: str | None = None
    # Per account (the result's `accounts`): name → that account's own summary.
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def line(self) -> str:
        what = f"HTTP → {self.code}" if self.via == "http" else f"CLI  → exit {self.code}"
        parts = []
        if self.new_alerts:
            whose = [name for name, summary in self.accounts.items() if summary.get("new_alerts")]
            by = f" ({', '.join(whose)})" if whose else ""
            parts.append(f"{self.new_alerts} alert{'s' if self.new_alerts != 1 else ''}{by}")
        if self.delivered and self.delivered != self.new_alerts:
            parts.append(f"{self.delivered} delivered")
        if self.pending:
            parts.append(f"{self.pending} kept in the outbox")
        if not parts:
            parts.append("nothing to send")
        if self.error:
            parts.append(f"{self.failure or 'cycle'} failed: {_short(self.error)}")
        return f"cycle via {what} ({', '.join(parts)})"


def with_credit_and_reset(answer: Usage, t0: datetime, week: float, *, banked: bool) -> Usage:
    """work's answer holds a $250 usage credit expiring Sunday noon (its 72 h reminder comes
    on Friday), from Tuesday a banked usage-limit reset, and where the week went
    (docs/design.md §8)."""
    day = timedelta(days=1)
    grant = grant_entry("opus55-launch-promax", (t0 + 30 * day).isoformat(), starts_at=None)
    answer["iguana_necktie"] = credit_entry(250, min(2.5 + week, 200.0), (t0 + 6 * day + 3 * HOUR).isoformat())
    answer["cedar_ember"] = banked_block([grant] if banked else [])
    rows = [("claude_code", "Claude Code", 83), ("chat", "Chats", 17)]
    answer["seven_day_breakdown"] = {"rows": [{"key": k, "display_name": n, "percent": p} for k, n, p in rows]}
    return answer


def _short(text: str, limit: int = 36) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Demo:
    def __init__(self, workdir: Path, *, out: Callable[[str], None] = print) -> None:
        self.workdir = workdir
        self.out = out
        self.logs = workdir / "logs"
        self.clock_file = workdir / "clock"
        self.homeserver: Homeserver | None = None
        self.anthropic: FakeAnthropic | None = None
        self.stack: Stack | None = None
        self.server: FunctionServer | None = None
        self.recipient_user = ""  # kept after close(), for the closing lines
        self.trigger_token = "demo-trigger-" + os.urandom(12).hex()
        self.spans: list[StepSpan] = []
        self.outcomes: list[tuple[datetime, str, Outcome | None]] = []
        self.pending_since: datetime | None = None
        self.start = week_start(datetime.now(UTC))
        self.now = self.start

    @property
    def recipient(self) -> DemoRecipient:
        assert self.stack is not None
        assert isinstance(self.stack.recipient, DemoRecipient)
        return self.stack.recipient

    @property
    def room_id(self) -> str:
        return self.stack.room_id if self.stack else ""

    # --- setup ------------------------------------------------------------------------

    def setup(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.homeserver = Homeserver(self.workdir / "synapse")
        self.homeserver.start()
        # Tokens valid for two real weeks: the simulated week never sees them expire.
        self.anthropic = FakeAnthropic(expires_in=14 * 86400).start()
        # The bot, alice's device and her encrypted room; one login per account, each in
        # its own directory (OAUTH_TOKENS_DIR/<name>/).
        stack = self.stack = Stack.build(
            self.workdir, self.homeserver, self.anthropic, accounts=ACCOUNTS, recipient=DemoRecipient
        )
        self.recipient_user = stack.user.user_id

        self._set_clock(self.start)
        env = {**self.bot_env(), "DEMO_CLOCK_FILE": str(self.clock_file)}
        self.server = FunctionServer(env, log=self.logs / "function.log", cwd=self.workdir, source=DEMO_FUNCTION)
        self.server.start()
        self.out(f"homeserver    {self.homeserver.url}  (Synapse, data in {self._rel(self.homeserver.data_dir)})")
        self.out(
            f"usage API     {self.anthropic.base_url}  (simulated Anthropic endpoint; accounts {', '.join(ACCOUNTS)})"
        )
        self.out(f"function      {self.server.url}  (functions-framework, target watch)")
        self.out(f"room          {self.room_id}, encrypted; {self.recipient_user} invited {stack.bot.user_id}")
        self.out(f"bot files     {self._rel(self.workdir)}/ (state, tokens, matrix-bot, logs)")

    def _rel(self, path: Path) -> str:
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
        return str(path)

    def bot_env(self) -> dict[str, str]:
        assert self.stack is not None
        return self.stack.env(
            PYTHONPATH=os.pathsep.join([str(REPO / "function"), str(REPO)]),
            TRIGGER_TOKEN=self.trigger_token,
            LOG_LEVEL="INFO",
            QUIET_HOURS=QUIET_HOURS,
        )

    # --- teardown ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop everything this demo started, whatever state it is in."""
        server, self.server = self.server, None
        if server is not None:
            server.stop()
        stack, self.stack = self.stack, None
        if stack is not None:
            with contextlib.suppress(Exception):
                stack.close()
        if self.homeserver is not None:
            self.homeserver.stop()
        if self.anthropic is not None:
            self.anthropic.stop()

    # --- one step of the simulated week ----------------------------------------------------

    def _set_clock(self, moment: datetime) -> None:
        self.now = moment
        self.clock_file.write_text(moment.isoformat() + "\n")

    def cycle(
        self, moment: datetime, via: str, usage: Usage | None, note: str = "", *, priv: Usage | None = None
    ) -> Outcome:
        """One cycle at `moment`: `usage` is work's answer from now on, `priv` (when given) priv's."""
        assert self.anthropic is not None
        self._set_clock(moment)
        # The real endpoint jitters resets_at by sub-seconds between calls.
        if usage is not None:
            self.anthropic.set_usage(usage, jitter=True, account="work")
        if priv is not None:
            self.anthropic.set_usage(priv, jitter=True, account="priv")
        late_since = self.pending_since
        began = int(time.time() * 1000)
        outcome = self._http_cycle() if via == "http" else self._cli_cycle()
        ended = int(time.time() * 1000)
        self.spans.append(StepSpan(via, moment, began, ended, late_since if outcome.delivered else None))
        # Kept by a failed delivery (the homeserver down), not by quiet hours: those alerts say
        # themselves when they were raised.
        if outcome.pending and outcome.error and self.pending_since is None:
            self.pending_since = moment
        elif not outcome.pending:
            self.pending_since = None
        self.outcomes.append((moment, note, outcome))
        self.out(f"{clock(moment)}  {outcome.line()}" + (f"  — {note}" if note else ""))
        return outcome

    def _http_cycle(self) -> Outcome:
        headers = {
            **PING_HEADERS,
            "ce-id": os.urandom(8).hex(),
            "ce-time": self.now.isoformat(),
            "Authorization": f"Bearer {self.trigger_token}",
        }
        assert self.server is not None
        response = httpx.post(self.server.url + "/", headers=headers, content=b"{}", timeout=90)
        body = response.json()
        return Outcome(
            "http",
            response.status_code,
            int(body.get("new_alerts", 0)),
            int(body.get("delivered", 0)),
            int(body.get("pending", 0)),
            body.get("error"),
            body.get("failure"),
            dict(body.get("accounts", {})),
        )

    def _cli_cycle(self) -> Outcome:
        run = run_cycle(self.bot_env(), now=self.now, timeout=CLI_TIMEOUT, cwd=self.workdir)
        with (self.logs / "cli.log").open("a") as log:
            log.write(f"--- {self.now.isoformat()} exit {run.code}\n{run.cli.stderr}")
        summary = run.result
        if not summary and run.code != 0:  # no cycle ran (exit 2: configuration)
            summary = {"error": run.cli.stderr.strip().splitlines()[-1] if run.cli.stderr.strip() else "failed"}
        return Outcome(
            "cli",
            run.code,
            int(summary.get("new_alerts", 0)),
            int(summary.get("delivered", 0)),
            int(summary.get("pending", 0)),
            summary.get("error"),
            summary.get("failure"),
            dict(summary.get("accounts", {})),
        )

    # --- the scripted week -------------------------------------------------------------------

    def play_week(self) -> None:
        assert self.homeserver is not None
        assert self.anthropic is not None
        t0 = self.start  # Monday 09:00
        day = timedelta(days=1)
        weekly_reset = t0 + 6 * day + 9 * HOUR  # Sunday 18:00
        shifted_reset = weekly_reset + 4 * HOUR  # Sunday 22:00

        def usage(
            five: tuple[float, datetime], week: float, reset: datetime, sonnet_pct: float = 4.0, *, banked: bool = True
        ) -> Usage:
            answer = payload(
                five_hour=five,
                weekly={
                    "seven_day": (week, reset),
                    "seven_day_sonnet": (sonnet_pct, weekly_reset),
                    "seven_day_opus": None,
                },
            )
            return with_credit_and_reset(answer, t0, week, banked=banked)

        # priv: a private subscription whose weekly window runs Thursday to Thursday.
        priv_reset = t0 + 10 * day - 3 * HOUR

        def private(week: float) -> Usage:
            return payload(weekly={"seven_day": (week, priv_reset)})

        self.out("")
        self.out("The week (simulated time, UTC):")
        self.cycle(
            t0,
            "http",
            usage((12.0, t0 + 2 * HOUR), 18.0, weekly_reset, banked=False),
            "first run: each account armed",
            priv=private(6.0),
        )
        self.cycle(t0 + 5 * MINUTE, "cli", usage((13.0, t0 + 2 * HOUR), 18.4, weekly_reset, banked=False), "quiet")
        self.cycle(
            t0 + 4 * HOUR,
            "http",
            usage((3.0, t0 + 9 * HOUR), 21.0, weekly_reset, banked=False),
            "5-hour window rolled over naturally: silent",
        )

        tue = t0 + day
        self.cycle(
            tue + HOUR,
            "cli",
            usage((40.0, tue + 3 * HOUR), 51.0, weekly_reset),
            "weekly crosses 50%; a banked reset is granted",
        )
        # The 5-hour wall (issue 24): the limit, said with when it is back, and the back itself.
        self.cycle(
            tue + 2 * HOUR,
            "http",
            usage((100.0, tue + 3 * HOUR), 52.0, weekly_reset),
            "the 5-hour limit is reached: back at 12:00",
        )
        self.cycle(
            tue + 3 * HOUR + 5 * MINUTE,
            "cli",
            usage((0.0, tue + 8 * HOUR), 52.0, weekly_reset),
            "the 5-hour window reset: the limit is back",
        )
        self.cycle(
            tue + 6 * HOUR,
            "http",
            usage((22.0, tue + 8 * HOUR), 53.0, shifted_reset),
            "Anthropic moves the active weekly window's reset",
        )

        # Wednesday afternoon: a steady 6 %/h burn. Six samples over 75 minutes is
        # the least the forecast accepts (FORECAST_MIN_SAMPLES, FORECAST_MIN_SPAN_SEC).
        wed = t0 + 2 * day + 4 * HOUR  # 13:00
        for n in range(6):
            moment = wed + n * 15 * MINUTE
            week = 56.0 + 1.5 * n
            note = "heavy use: 6 %/h" if n == 0 else ("enough history: burn-rate forecast" if n == 5 else "")
            self.cycle(
                moment,
                "http" if n % 2 == 0 else "cli",
                usage((30.0 + 4 * n, wed + 3 * HOUR), week, shifted_reset, 9.0),
                note,
            )

        # Thursday: the homeserver goes away just as the weekly usage crosses 80%.
        thu = t0 + 3 * day + HOUR  # 10:00
        self.out(f"{clock(thu)}  homeserver stopped")
        self.homeserver.stop()
        try:
            self.cycle(
                thu,
                "http",
                usage((35.0, thu + 2 * HOUR), 81.0, shifted_reset, 11.0),
                "weekly crosses 80%, but Matrix is down",
            )
            self.cycle(
                thu + 5 * MINUTE,
                "cli",
                usage((36.0, thu + 2 * HOUR), 81.2, shifted_reset, 11.0),
                "still down: the alert waits",
            )
        finally:
            self.homeserver.start()
        self.out(f"{clock(thu + 6 * MINUTE)}  homeserver back")
        self.cycle(
            thu + 10 * MINUTE, "http", usage((37.0, thu + 2 * HOUR), 81.3, shifted_reset, 11.0), "delivered late, once"
        )

        # Friday night: a private side project; only priv speaks, in quiet hours, so its note
        # waits in the outbox for the morning (a restart in between would lose nothing).
        fri = t0 + 4 * day + 14 * HOUR + 30 * MINUTE  # 23:30
        self.cycle(
            fri,
            "cli",
            usage((2.0, fri + 5 * HOUR), 81.6, shifted_reset, 11.0),
            f"priv passes 50% in quiet hours ({QUIET_HOURS}): the note waits",
            priv=private(52.0),
        )
        morning = t0 + 4 * day + 22 * HOUR + 5 * MINUTE  # Saturday 07:05
        self.cycle(
            morning,
            "http",
            usage((2.0, fri + 5 * HOUR), 81.6, shifted_reset, 11.0),
            "quiet hours over: the note goes out, saying when it was raised",
        )

        # Saturday: the usage API fails three runs in a row (HEALTH_FAILURES) for both
        # accounts, then works: each account counts its own failures and says so.
        sat = t0 + 5 * day  # 09:00
        for name in ACCOUNTS:
            self.anthropic.fail_next("usage", 500, times=3, account=name)
        steady = usage((5.0, sat + 3 * HOUR), 84.0, shifted_reset, 12.0)
        self.cycle(sat, "http", steady, "usage API answers 500", priv=private(53.0))
        self.cycle(sat + 5 * MINUTE, "cli", steady, "500 again")
        self.cycle(sat + 10 * MINUTE, "http", steady, "third failure in a row: degraded")
        self.cycle(sat + 15 * MINUTE, "cli", steady, "the API works again: recovered")

        # Sunday night: the (shifted) weekly reset passes: a new window, silently.
        after = shifted_reset + 5 * MINUTE
        self.cycle(
            after,
            "http",
            usage((1.0, after + 5 * HOUR), 0.0, after + 7 * day - 5 * MINUTE, 0.0),
            "weekly window rolled over naturally: work's week in review",
        )

    # --- the room ----------------------------------------------------------------------------

    def transcript(self) -> Transcript:
        messages, undecryptable = self.recipient.timeline(self.room_id)
        pictures = sum(len(m.images) for m in messages)
        entries = place_on_clock(messages, self.spans)
        text = plain_transcript(entries)
        page = html_transcript(
            entries,
            title="claude-matrix-bot demo: the alert room as the recipient decrypts it",
            subtitle=(
                f"{len(messages)} messages and {pictures} pictures in {self.room_id} on a throwaway Synapse, "
                f"simulated week of {self.start:%Y-%m-%d} (UTC); {undecryptable} could not be decrypted."
            ),
        )
        path = self.workdir / "transcript.html"
        path.write_text(page, encoding="utf-8")
        (self.workdir / "transcript.txt").write_text(text, encoding="utf-8")
        return Transcript(text, path, len(messages), pictures, undecryptable)


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    page: Path
    messages: int
    pictures: int
    undecryptable: int


_stopping: list[int] = []


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    _stopping.append(signum)
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=REPO / ".demo", help="throwaway folder (wiped first)")
    args = parser.parse_args(argv)
    workdir: Path = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)

    began = time.monotonic()
    print("claude-matrix-bot demo: a week of Claude usage, alerts into an end-to-end-encrypted Matrix room")
    print("(no Claude account, no Matrix account, no cluster: everything below runs on 127.0.0.1)")
    print("")
    demo = Demo(workdir)
    with _sigterm_as_exit():
        try:
            demo.setup()
            demo.play_week()
            room = demo.transcript()
        except KeyboardInterrupt:
            print("\ninterrupted; stopping everything", file=sys.stderr)
            return 130
        except Exception:
            if _stopping:  # whatever the signal broke on its way through (an event loop, a socket)
                print("\nterminated; stopping everything", file=sys.stderr)
                return 128 + _stopping[0]
            raise
        finally:
            demo.close()
    print("")
    print(
        f"The room as {demo.recipient_user} decrypts it ({room.messages} messages, "
        f"{room.pictures} picture{'' if room.pictures == 1 else 's'}, "
        f"{room.undecryptable} undecryptable):"
    )
    print("")
    print(room.text)
    print(f"HTML transcript (pictures inline): {room.page}")
    print(f"Done in {time.monotonic() - began:.0f} s; every process started here has stopped.")
    return 0 if room.undecryptable == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
