"""`make bench`: what one cycle costs, in numbers, each next to its goal (issue 6).

Medians over repeated runs, on loopback only: the simulated usage API (in this
process), a throwaway Synapse behind a counting proxy (so every Matrix request
the bot makes is counted, whoever makes it), the HTTP entry through
functions-framework's own test client, and the CLI in a subprocess.

    python -m scripts.bench [--quick] [--markdown FILE] [--only cold,http,cli,drawing,chart,state,image]

Figures, not assertions: the tests never time anything.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from claude_matrix_bot.core.decide import DecideConfig, decide, drop_delivered
from claude_matrix_bot.state import State, dump_state, parse_state
from claude_matrix_bot.usage import USAGE_PATH, parse_usage
from devstack.fakes.anthropic import FakeAnthropic
from devstack.matrix_recipient import Recipient
from devstack.payloads import payload
from devstack.synapse import Homeserver
from scripts._bench_memory import Family, run_watched
from scripts._bench_proxy import CountingProxy

REPO = Path(__file__).resolve().parent.parent
FIVE_MIN = timedelta(minutes=5)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# What the simulated usage API takes to answer: a round trip to api.anthropic.com from a
# cluster is tens to hundreds of milliseconds. The wait matters to the figures, not only
# to wall times: the bot's code after an idle wait runs on a colder CPU (measured here:
# a quiet cycle's own work 2.2 ms after an instant loopback answer, 3.6 ms after a 40 ms
# one). Until 2026-12-03 the fake's Nagle stall (40 ms per answer) played this part by accident.
USAGE_LATENCY_SEC = 0.05


@dataclass(frozen=True, slots=True)
class Row:
    measure: str
    figure: str
    goal: str
    met: bool | None  # None: no goal, a figure for context

    @property
    def mark(self) -> str:
        return {True: "✓", False: "✗ missed", None: ""}[self.met]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def median(values: list[float]) -> float:
    return statistics.median(values)


def progress(text: str) -> None:
    print(f"  … {text}", file=sys.stderr, flush=True)


# --- the machine ------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB RAM"
    return {
        "cpu": cpu,
        "cores": str(cores),
        "memory": memory,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# --- cold start ------------------------------------------------------------------------------


def _import_time(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO / "function")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO / "function", capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def bench_cold_start(runs: int) -> list[Row]:
    progress(f"cold start: {runs} fresh interpreters each")
    function_times: list[float] = []
    framework_times: list[float] = []
    for _ in range(runs):  # interleaved, so a noisy moment hits both alike
        framework_times.append(_import_time("functions_framework"))
        function_times.append(_import_time("main"))
    ratio = median(function_times) / median(framework_times)
    heavy = _heavy_modules_after_import()
    return [
        Row(
            "cold start: import function/main.py ÷ import functions_framework",
            f"{ratio:.2f} ({ms(median(function_times))} / {ms(median(framework_times))})",
            "≤ 1.5",
            ratio <= 1.5,
        ),
        Row("  heavy modules loaded by importing main", heavy or "none", "none", not heavy),
    ]


def _heavy_modules_after_import() -> str:
    code = (
        "import sys, main; heavy = ('nio', 'aiohttp', 'boto3', 'botocore', 'google.cloud.storage', 'kubernetes', "
        "'vodozemac', 'claude_matrix_bot.cycle'); print(','.join(m for m in heavy if m in sys.modules))"
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO / "function")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


# --- state size ------------------------------------------------------------------------------


def simulated_payload(now: datetime, start: datetime, rng: random.Random) -> dict[str, Any]:
    """A month of plausible usage: work hours burn the weekly buckets, weeks differ,
    five-hour windows roll, and Anthropic once moves an active weekly reset 2 h later
    (that window then really ends 2 h later)."""
    # Window boundaries; the second window's end is announced at +7 d, moved on day 3.
    bounds = [start, start + 7 * DAY, start + 14 * DAY + 2 * HOUR]
    while bounds[-1] <= now:
        bounds.append(bounds[-1] + 7 * DAY)
    week = max(i for i, b in enumerate(bounds) if b <= now)
    window_start, reset = bounds[week], bounds[week + 1]
    if week == 1 and now < window_start + 3 * DAY:
        reset -= 2 * HOUR  # not moved yet
    pace = (1.0, 1.6, 0.7, 1.9, 1.2)[week % 5]  # %/h while working
    worked = 0.0
    moment = window_start
    while moment < now:  # work hours so far in this window, at a five-minute grain
        if moment.weekday() < 5 and 9 <= moment.hour < 18:
            worked += 5 / 60
        moment += FIVE_MIN
    weekly = min(100.0, pace * worked)
    five_start = start + int((now - start) / (5 * HOUR)) * 5 * HOUR
    five = min(100.0, 7.0 * (now - five_start) / HOUR) if 9 <= now.hour < 18 and now.weekday() < 5 else 0.0
    # Like the real endpoint: "…:59:59.6" for a window that ends on the hour.
    second = timedelta(seconds=1)
    return payload(
        five_hour=(round(five, 1), five_start + 5 * HOUR - second),
        weekly={
            "seven_day": (round(weekly, 1), reset - second),
            "seven_day_sonnet": (round(weekly * 0.3, 1), reset - second),
            "seven_day_opus": None,
        },
        jitter_us=rng.randrange(1_000_000),
    )


def bench_state_size(days: int = 30) -> list[Row]:
    progress(f"state.json over {days} simulated days of five-minute cycles")
    rng = random.Random(6)  # noqa: S311 (a reproducible simulation, not a secret)
    start = datetime(2031, 3, 3, 0, 0, tzinfo=UTC)
    config = DecideConfig()
    state: State | None = None
    data = b""
    sizes: dict[int, int] = {}
    largest = 0
    alerts = 0
    now = start
    steps = days * 288
    for step in range(steps):
        body = simulated_payload(now, start, rng)
        decision = decide(state, parse_usage(body, now), now, config)
        alerts += len(decision.alerts)
        # As the cycle does: delivered alerts leave the outbox; the file round-trips.
        data = dump_state(drop_delivered(decision.state, tuple(a.id for a in decision.state.outbox)))
        state = parse_state(data)
        largest = max(largest, len(data))
        day = (step + 1) // 288
        if (step + 1) % 288 == 0:
            sizes[day] = len(data)
        now += FIVE_MIN
    day7, day30 = sizes.get(7, 0), sizes.get(days, len(data))
    flat = day30 <= day7 * 1.25
    return [
        Row(
            f"state.json after 7 / {days} days ({steps} cycles, {alerts} alerts)",
            f"{day7 / 1024:.1f} KB / {day30 / 1024:.1f} KB (largest {largest / 1024:.1f} KB)",
            "≤ 16 KB, flat",
            largest <= 16 * 1024 and flat,
        )
    ]


# --- cycles against real servers -------------------------------------------------------------


class Stopwatch:
    """Adds up, per label, the time spent inside chosen methods (patched on the class,
    restored on exit). The bot's code is untouched; this only watches it."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self._restore: list[tuple[type, str, Any]] = []

    def watch(self, owner: type, name: str, label: str, when: Callable[..., bool] | None = None) -> None:
        original = getattr(owner, name)
        spent = self.spent

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                if when is None or when(*args, **kwargs):
                    spent[label] = spent.get(label, 0.0) + time.perf_counter() - began

        self._restore.append((owner, name, original))
        setattr(owner, name, timed)

    def take(self) -> dict[str, float]:
        taken = dict(self.spent)
        self.spent.clear()
        return taken

    def __enter__(self) -> Stopwatch:
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._restore):
            setattr(owner, name, original)
        self._restore.clear()


@contextlib.contextmanager
def counting_fsyncs() -> Iterator[list[int]]:
    """Counts `os.fsync` calls (the bot's durability costs on a directory), restored on exit."""
    count = [0]
    original = os.fsync

    def counted(fd: Any) -> None:
        count[0] += 1
        original(fd)

    os.fsync = counted
    try:
        yield count
    finally:
        os.fsync = original


def _is_usage_request(client: httpx.Client, request: httpx.Request, **_: Any) -> bool:
    return request.url.path == USAGE_PATH


def _is_usage_answer(response: httpx.Response, *_: Any) -> bool:
    return response.request.url.path == USAGE_PATH


class Rig:
    """Synapse (behind the counting proxy), the usage API, a recipient's encrypted room."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.homeserver = Homeserver(workdir / "synapse")
        self.anthropic = FakeAnthropic(expires_in=14 * 86400, usage_latency=USAGE_LATENCY_SEC)
        self.proxy: CountingProxy | None = None
        self.recipient: Recipient | None = None
        self.room_id = ""
        self.now = datetime.now(UTC).replace(second=0, microsecond=0)
        self.weekly_reset = self.now + 5 * DAY
        self.five_hour_reset = self.now + 5 * HOUR

    def start(self) -> None:
        progress("starting Synapse, the usage API and the recipient's room")
        self.homeserver.start()
        self.anthropic.start()
        self.proxy = CountingProxy(self.homeserver.url).start()
        bot = self.homeserver.register("bench-bot")
        alice = self.homeserver.register("alice")
        bot.write_creds_dir(self.workdir / "creds", self.proxy.url)
        self.recipient = Recipient(self.homeserver.url, alice, self.workdir / "alice")
        self.room_id = self.recipient.create_encrypted_room([bot.user_id])
        self.anthropic.write_tokens_dir(self.workdir / "tokens")

    def stop(self) -> None:
        if self.recipient is not None:
            with contextlib.suppress(Exception):
                self.recipient.close()
        if self.proxy is not None:
            self.proxy.stop()
        self.anthropic.stop()
        self.homeserver.stop()

    def env(self, state: str = "state", sink: str = "matrix") -> dict[str, str]:
        return {
            "LOCAL_MODE": "1",
            "ALERT_SINK": sink,
            "MATRIX_ROOM_ID": self.room_id,
            "MATRIX_CREDS_DIR": str(self.workdir / "creds"),
            "OAUTH_TOKENS_DIR": str(self.workdir / "tokens"),
            "STATE_URL": (self.workdir / state).as_uri(),
            "ANTHROPIC_BASE_URL": self.anthropic.base_url,
            "ANTHROPIC_TOKEN_URL": self.anthropic.token_url,
            "LOG_LEVEL": "INFO",
            "NOW_OVERRIDE": self.now.isoformat(),
        }

    def usage(self, weekly_reset: datetime | None = None, weekly_utilization: float = 30.0) -> None:
        self.weekly_reset = weekly_reset or self.weekly_reset
        self.anthropic.set_usage(
            payload(
                five_hour=(20.0, self.five_hour_reset),
                weekly={"seven_day": (weekly_utilization, self.weekly_reset), "seven_day_opus": None},
            ),
            jitter=True,
        )

    def tick(self) -> None:
        self.now += FIVE_MIN
        os.environ["NOW_OVERRIDE"] = self.now.isoformat()


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


ACCOUNT_COUNTS = (1, 2, 3)


def bench_http_cycles(rig: Rig, quiet_runs: int, alert_runs: int, account_runs: int, log: Path) -> list[Row]:
    """In-process through functions-framework's test client, as Knative runs it (warm)."""
    from functions_framework import create_app

    assert rig.proxy is not None
    rows: list[Row] = []
    with (
        log.open("a") as sink,
        contextlib.redirect_stderr(sink),  # the bot's INFO logs, kept out of the table
        environment(rig.env()),
        Stopwatch() as watch,
        counting_fsyncs() as fsyncs,
    ):
        from claude_matrix_bot import httpclient
        from claude_matrix_bot.store.file import DirectoryStore

        watch.watch(httpx.Client, "send", "usage request", _is_usage_request)
        # The answer's body is streamed after `send` returns (httpclient.send_bounded): its
        # reading is the usage request's too.
        watch.watch(httpclient, "_read_capped", "usage request", _is_usage_answer)  # type: ignore[arg-type]
        watch.watch(httpx.Client, "__init__", "httpx client setup")
        watch.watch(DirectoryStore, "write", "state store writes")
        watch.watch(DirectoryStore, "delete", "state store writes")
        client = create_app(  # type: ignore[no-untyped-call]
            target="watch", source=str(REPO / "function" / "main.py")
        ).test_client()
        rig.usage()
        first = client.post("/")  # arms, and the bot's first (cold) Matrix delivery
        assert first.status_code == 200, first.get_data(as_text=True)
        cold_matrix = rig.proxy.count()

        progress(f"{quiet_runs} warm quiet cycles over HTTP")
        handler: list[float] = []
        parts: dict[str, list[float]] = {"httpx client setup": [], "state store writes": [], "usage request": []}
        rest: list[float] = []
        usage_before = rig.anthropic.usage_calls
        matrix_before = rig.proxy.count()
        fsyncs_before = fsyncs[0]
        for _ in range(quiet_runs):
            rig.tick()
            rig.usage()
            watch.take()
            began = time.perf_counter()
            response = client.post("/")
            total = time.perf_counter() - began
            spent = watch.take()
            body = response.get_json()
            assert response.status_code == 200, body
            assert body["new_alerts"] == 0, body
            handler.append(total - spent.get("usage request", 0.0))
            for label, values in parts.items():
                values.append(spent.get(label, 0.0))
            rest.append(total - sum(spent.values()))
        usage_per_cycle = (rig.anthropic.usage_calls - usage_before) / quiet_runs
        matrix_per_cycle = (rig.proxy.count() - matrix_before) / quiet_runs
        fsyncs_per_cycle = (fsyncs[0] - fsyncs_before) / quiet_runs

        progress(f"{alert_runs} warm cycles with one alert each (a reset shift) over HTTP")
        alert_walls: list[float] = []
        alert_requests: list[int] = []
        paths: list[tuple[str, str]] = []
        for _ in range(alert_runs):
            rig.tick()
            rig.usage(rig.weekly_reset + HOUR)  # an active window's reset moves: one alert
            mark = rig.proxy.count()
            began = time.perf_counter()
            response = client.post("/")
            alert_walls.append(time.perf_counter() - began)
            body = response.get_json()
            assert response.status_code == 200, body
            assert body["new_alerts"] == 1, body
            assert body["delivered"] == 1, body
            paths = rig.proxy.since(mark)
            alert_requests.append(len(paths))
        refreshes = rig.anthropic.refresh_calls

        progress(f"{account_runs} quiet cycles each with ACCOUNTS of {', '.join(map(str, ACCOUNT_COUNTS))} accounts")
        with contextlib.redirect_stdout(sink):  # the stdout sink's armed lines
            accounts = _quiet_cycles_per_account(rig, client, watch, fsyncs, account_runs, rig.workdir)
            # The same on tmpfs: the bot's own cost per account, without the disk's fsync.
            shm = Path("/dev/shm")  # noqa: S108 (a private TemporaryDirectory is made inside)
            in_memory = None
            if shm.is_dir() and os.access(shm, os.W_OK):
                with tempfile.TemporaryDirectory(prefix="cmb-bench-", dir=shm) as tmp:
                    in_memory = _quiet_cycles_per_account(rig, client, watch, fsyncs, account_runs, Path(tmp))

    rows.append(
        Row("quiet cycle (nothing to send): usage API requests", f"{usage_per_cycle:g}", "1", usage_per_cycle == 1)
    )
    rows.append(Row("quiet cycle: token refreshes", f"{refreshes}", "0", refreshes == 0))
    rows.append(Row("quiet cycle: Matrix requests", f"{matrix_per_cycle:g}", "0", matrix_per_cycle == 0))
    rows.append(
        Row(
            "quiet cycle: handler time beyond the usage request (warm, HTTP)",
            f"{ms(median(handler))} (p90 {ms(statistics.quantiles(handler, n=10)[-1])}; "
            f"the usage request itself {ms(median(parts['usage request']))})",
            "≤ 5 ms",
            median(handler) <= 0.005,
        )
    )
    rows.append(
        Row(
            "  of which: httpx client setup (one per process, 0 once warm)",
            ms(median(parts["httpx client setup"])),
            "—",
            None,
        )
    )
    rows.append(
        Row(
            "  fsyncs per quiet cycle (state.json's data; lease and directory not)",
            f"{fsyncs_per_cycle:g}",
            "1",
            fsyncs_per_cycle <= 1,
        )
    )
    rows.append(
        Row(
            "  of which: state store writes (lease, state.json; fsync)",
            ms(median(parts["state store writes"])),
            "—",
            None,
        )
    )
    rows.append(Row("  of which: everything else (framework, lease, state, decide)", ms(median(rest)), "—", None))
    requests = statistics.median_low(alert_requests)
    described = ", ".join(f"{m} {_short_path(p)}" for m, p in paths)
    rows.append(
        Row(
            "one-alert cycle, warm store: Matrix requests", f"{requests} ({described})", "≤ 3", max(alert_requests) <= 3
        )
    )
    rows.append(Row("one-alert cycle, warm store: wall time (warm process, HTTP)", ms(median(alert_walls)), "—", None))
    rows.append(Row("  first delivery ever (cold store): Matrix requests", str(cold_matrix), "—", None))
    rows += _account_rows(accounts)
    if in_memory is not None:
        rows += _account_rows(in_memory, where=" (state on tmpfs: no disk)")
    return rows


@dataclass(frozen=True, slots=True)
class AccountsFigures:
    usage_requests: float  # per cycle
    fsyncs: float  # per cycle
    beyond_usage: list[float]  # seconds, one per cycle


def _quiet_cycles_per_account(
    rig: Rig, client: Any, watch: Stopwatch, fsyncs: list[int], runs: int, state_root: Path
) -> dict[int, AccountsFigures]:
    """Quiet cycles with ACCOUNTS of 1, 2, 3 accounts (issue 14), interleaved round by
    round so a noisy moment hits every count alike. Each count has its own state
    directory and token directories (stdout sink: quiet cycles never open a sink)."""
    envs: dict[int, dict[str, str]] = {}
    for count in ACCOUNT_COUNTS:
        names = [f"acct{i}" for i in range(1, count + 1)]
        tokens = state_root / f"tokens-{count}-accounts"
        for name in names:
            rig.anthropic.write_tokens_dir(tokens / name, account=name)
        envs[count] = {
            "ACCOUNTS": ",".join(names),
            "OAUTH_TOKENS_DIR": str(tokens),
            "STATE_URL": (state_root / f"state-{count}-accounts").as_uri(),
            "ALERT_SINK": "stdout",
        }
    times: dict[int, list[float]] = {count: [] for count in ACCOUNT_COUNTS}
    usage: dict[int, int] = dict.fromkeys(ACCOUNT_COUNTS, 0)
    synced: dict[int, int] = dict.fromkeys(ACCOUNT_COUNTS, 0)
    for round_ in range(runs + 1):  # round 0 arms every account (not measured)
        rig.tick()
        rig.usage()
        for count in ACCOUNT_COUNTS:
            with environment(envs[count]):
                calls, synced_before = rig.anthropic.usage_calls, fsyncs[0]
                watch.take()
                began = time.perf_counter()
                response = client.post("/")
                total = time.perf_counter() - began
                spent = watch.take()
            body = response.get_json()
            assert response.status_code == 200, body
            if round_ == 0:
                continue
            assert body["new_alerts"] == 0, body
            times[count].append(total - spent.get("usage request", 0.0))
            usage[count] += rig.anthropic.usage_calls - calls
            synced[count] += fsyncs[0] - synced_before
    return {count: AccountsFigures(usage[count] / runs, synced[count] / runs, times[count]) for count in ACCOUNT_COUNTS}


def _account_rows(figures: dict[int, AccountsFigures], where: str = "") -> list[Row]:
    counts = list(figures)
    first, last = counts[0], counts[-1]
    medians = {count: median(f.beyond_usage) for count, f in figures.items()}
    # The cost of one more account: the slope from the fewest to the most accounts.
    per_account = (medians[last] - medians[first]) / (last - first)
    requests_ok = all(f.usage_requests == count for count, f in figures.items())

    def each(values: list[str]) -> str:
        return " / ".join(values)

    return [
        Row(
            f"ACCOUNTS of {each([str(c) for c in counts])}, quiet cycle{where}: usage API requests",
            each([f"{f.usage_requests:g}" for f in figures.values()]),
            f"{each([str(c) for c in counts])} (+1 per account)",
            requests_ok,
        ),
        Row(
            "  handler time beyond the usage requests",
            each([ms(medians[c]) for c in counts])
            + f" (p90 {each([ms(statistics.quantiles(f.beyond_usage, n=10)[-1]) for f in figures.values()])})",
            "—",
            None,
        ),
        Row(
            "  each extra account costs (slope of the medians)",
            f"{'+' if per_account >= 0 else '-'}{ms(abs(per_account))}",
            "≤ +2 ms per account",
            per_account <= 0.002,
        ),
        Row("  fsyncs per quiet cycle", each([f"{f.fsyncs:g}" for f in figures.values()]), "1 per account", None),
    ]


def _short_path(path: str) -> str:
    parts = path.split("/")
    # /_matrix/client/v3/rooms/!id/send/m.room.message/txn -> rooms/…/send
    keep = [p for p in parts[4:] if p and not p.startswith(("!", "@", "$", "cmb-", "m.")) and len(p) < 24]
    return "/".join(keep[:2]) or path


# The CLI exactly as `python -m claude_matrix_bot run` runs it (runpy is what -m does),
# reporting its own peak RSS on the way out. VmHWM belongs to the process image after
# exec; rusage maxrss would also count the pre-exec copy of this (much larger) process.
# A cycle that draws does so in a child interpreter (chart_drawing.render_png_in_child):
# the wrapper also reports the children's peak (RUSAGE_CHILDREN: the drawing child, whose
# pre-exec copy is this small CLI process) and its own RSS while a child was drawing.
_CLI_WITH_PEAK = """
import atexit, json, os, resource, runpy, sys
def vm(key):
    with open('/proc/self/status') as status:
        return int(next(line.split()[1] for line in status if line.startswith(key + ':')))
while_drawing = [0]
import claude_matrix_bot.charts as charts
drawing = charts.render_png_in_child
def watched(*args, **kwargs):
    while_drawing[0] = max(while_drawing[0], vm('VmRSS'))
    return drawing(*args, **kwargs)
charts.render_png_in_child = watched
def report():
    figures = {'own': vm('VmHWM'), 'children': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
               'while_drawing': while_drawing[0]}
    with open(os.environ['BENCH_PEAK_FILE'], 'w') as out:
        json.dump(figures, out)
atexit.register(report)
sys.argv = ['claude-matrix-bot', 'run']
runpy.run_module('claude_matrix_bot', run_name='__main__', alter_sys=True)
"""


@dataclass(frozen=True, slots=True)
class Peak:
    """KiB: the CLI process's own peak, its children's (0: none), its RSS while one drew
    (as the CLI itself reported them), and the family as sampled from outside."""

    own: int
    children: int = 0
    while_drawing: int = 0
    family: Family = field(default_factory=Family)

    @property
    def together(self) -> int:
        """At most this much at once: the child's own peak on the most the parent held while
        it lived (pages both map, such as libpython, are counted in each: RSS, not PSS)."""
        child = max(self.children, self.family.child_hwm)
        return max(self.own, max(self.while_drawing, self.family.parent_rss) + child)


def _run_cli_peak(env: dict[str, str], log: Path) -> tuple[int, float, Peak]:
    """(exit code, wall seconds, peak RSS) of one CLI cycle in a new process."""
    import json

    peak_file = log.parent / "peak-rss"
    full = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO / "function"),
        "BENCH_PEAK_FILE": str(peak_file),
        **env,
    }
    with log.open("ab") as out:
        began = time.perf_counter()
        code, family = run_watched([sys.executable, "-c", _CLI_WITH_PEAK], full, out, timeout=120)
        wall = time.perf_counter() - began
    figures = json.loads(peak_file.read_text())
    return code, wall, Peak(figures["own"], figures["children"], figures["while_drawing"], family)


def _run_cli(env: dict[str, str], log: Path) -> tuple[int, float, int]:
    """(exit code, wall seconds, own peak RSS in KiB) of one CLI cycle that draws nothing."""
    code, wall, peak = _run_cli_peak(env, log)
    return code, wall, peak.own


def bench_cli(rig: Rig, runs: int, log: Path) -> list[Row]:
    assert rig.proxy is not None
    progress(f"{runs} CLI cycles with one alert each (matrix sink), and {runs} with the stdout sink")
    matrix_rss: list[int] = []
    matrix_wall: list[float] = []
    matrix_requests: list[int] = []
    for _ in range(runs):
        rig.tick()
        rig.usage(rig.weekly_reset + HOUR)
        mark = rig.proxy.count()
        code, wall, rss = _run_cli(rig.env(), log)
        assert code == 0, f"CLI cycle failed; see {log}"
        matrix_wall.append(wall)
        matrix_rss.append(rss)
        matrix_requests.append(len(rig.proxy.since(mark)))
    stdout_rss: list[int] = []
    for n in range(runs):
        rig.tick()
        rig.usage()
        code, _, rss = _run_cli(rig.env(state=f"stdout-state-{n}", sink="stdout"), log)  # armed: one alert
        assert code == 0, f"CLI cycle failed; see {log}"
        stdout_rss.append(rss)
    quiet_rss: list[int] = []
    for _ in range(runs):
        rig.tick()
        rig.usage()
        code, _, rss = _run_cli(rig.env(), log)
        assert code == 0, f"CLI cycle failed; see {log}"
        quiet_rss.append(rss)

    def mib(kib: list[int]) -> str:
        return f"{median([float(k) for k in kib]) / 1024:.0f} MB"

    peak = max(matrix_rss) / 1024
    return [
        Row(
            "CLI cycle, one alert via Matrix: peak RSS",
            f"{mib(matrix_rss)} (max {peak:.0f} MB)",
            "≤ 100 MB",
            peak <= 100,
        ),
        Row("CLI cycle, one alert via stdout: peak RSS", mib(stdout_rss), "≤ 100 MB", max(stdout_rss) / 1024 <= 100),
        Row("CLI cycle, nothing to send: peak RSS", mib(quiet_rss), "≤ 100 MB", max(quiet_rss) / 1024 <= 100),
        Row("CLI cycle, one alert via Matrix: wall time (new process)", ms(median(matrix_wall)), "—", None),
        Row(
            "CLI cycle, one alert via Matrix: Matrix requests",
            f"{statistics.median_low(matrix_requests)}",
            "≤ 3",
            max(matrix_requests) <= 3,
        ),
    ]


# --- pictures (issue 15) ----------------------------------------------------------------------

# Draws a full week's chart (hourly samples, the fitted line, thresholds, the reset) in
# a fresh interpreter: the first draw imports matplotlib, the next ones are warm. Prints
# JSON: first and warm seconds, and the process's own peak RSS (VmHWM, KiB).
_DRAW = """
import json, sys, time
from claude_matrix_bot.charts import ChartSpec, Fit, render_png
start = 1_900_000_000 - 1_900_000_000 % 3600
samples = tuple((start + h * 3600, min(99.0, h * 0.55)) for h in range(150))
spec = ChartSpec(title="Weekly (all models): 100% Fri 14:00", samples=samples, window_start=start,
                 resets_at=start + 7 * 86400, now=start + 149 * 3600, thresholds=(50, 80),
                 fit=Fit(start + 143 * 3600, 78.0, start + 180 * 3600))
began = time.perf_counter(); png = render_png(spec); first = time.perf_counter() - began
warm = []
for _ in range(int(sys.argv[1])):
    began = time.perf_counter(); render_png(spec); warm.append(time.perf_counter() - began)
peak = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))
print(json.dumps({"first": first, "warm": warm, "peak_kib": peak, "bytes": len(png)}))
"""


def bench_chart_draw(runs: int) -> list[Row]:
    import json

    progress(f"drawing a week's chart in a fresh interpreter, then {runs} more times")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO / "function")}
    out = subprocess.run(
        [sys.executable, "-c", _DRAW, str(runs)], env=env, capture_output=True, text=True, check=True, timeout=300
    )
    figures = json.loads(out.stdout)
    return [
        Row("chart (1000x500 PNG, a week): first draw, importing matplotlib", ms(figures["first"]), "—", None),
        Row(
            "  each further draw (warm)",
            f"{ms(median(figures['warm']))} (p90 {ms(statistics.quantiles(figures['warm'], n=10)[-1])}; "
            f"{figures['bytes'] / 1024:.0f} KB PNG)",
            "—",
            None,
        ),
        Row("  peak RSS of a process that only draws", f"{figures['peak_kib'] / 1024:.0f} MB", "—", None),
    ]


def prime_forecast(store_dir: Path, now: datetime, bucket: str = "seven_day") -> float:
    """Rewrite `bucket` in `store_dir`/state.json so that the next reading (at `now`)
    fires its forecast: six readings over the last 80 minutes, rising 6 %/h, well under
    the first threshold. Returns the utilization the next reading must carry. Only the
    bench does this (between CLI runs, nothing else holds the store)."""
    import dataclasses

    from claude_matrix_bot.store.file import DirectoryStore

    store = DirectoryStore(store_dir)
    data, version = store.read("state.json")
    state = parse_state(data)
    old = state.buckets[bucket]
    base = max(0.0, (old.utilization or 0.0) - 10.0)
    stamps = [int((now - timedelta(minutes=80 - 15 * i)).timestamp()) for i in range(6)]
    history = tuple((t, round(base + 1.5 * i, 1)) for i, t in enumerate(stamps))
    primed = dataclasses.replace(old, history=history, forecast_fired=False, utilization=history[-1][1])
    state = dataclasses.replace(state, buckets={**state.buckets, bucket: primed})
    store.write("state.json", dump_state(state), expect=version)
    return round(base + 1.5 * 6.3, 1)


def bench_drawing_cycles(rig: Rig, runs: int, log: Path) -> list[Row]:
    """CLI cycles whose forecast alert carries a chart (docs/design.md §7): through the Matrix
    sink (drawn, encrypted, uploaded, posted as m.image) and the stdout sink (drawn,
    digested). Peak RSS as the CLI rows above (the child's own VmHWM)."""
    import shutil

    assert rig.proxy is not None
    progress(f"{runs} CLI cycles whose forecast draws a chart, via Matrix and via stdout")
    matrix: list[Peak] = []
    stdout: list[Peak] = []
    uploads = 0
    pictures = 0
    for n in range(runs):
        rig.tick()
        # stdout: a copy of the primed state beside the real one (no key store needed)
        copy = rig.workdir / f"chart-stdout-{n}"
        copy.mkdir()
        utilization = prime_forecast(rig.workdir / "state", rig.now)
        shutil.copy2(rig.workdir / "state" / "state.json", copy / "state.json")
        rig.usage(weekly_utilization=utilization)
        size = log.stat().st_size
        code, _, peak = _run_cli_peak(rig.env(state=copy.name, sink="stdout"), log)
        assert code == 0, f"CLI cycle failed; see {log}"
        with log.open("rb") as read:
            read.seek(size)
            pictures += read.read().count(b'"image_sha256"')
        stdout.append(peak)
        mark = rig.proxy.count()
        code, _, peak = _run_cli_peak(rig.env(), log)
        assert code == 0, f"CLI cycle failed; see {log}"
        uploads += sum(1 for _, path in rig.proxy.since(mark) if "/media/" in path and path.endswith("/upload"))
        matrix.append(peak)
    assert pictures == runs, f"{pictures} of {runs} stdout cycles drew a chart; see {log}"
    assert uploads == runs, f"{uploads} of {runs} Matrix cycles uploaded a chart; see {log}"

    return [*_drawing_rows("Matrix", matrix), *_drawing_rows("stdout", stdout)]


def _drawing_rows(sink: str, peaks: list[Peak]) -> list[Row]:
    """The cycle's own peak, the child's, and what both held at once (the goal's figure:
    what a container's memory limit sees while the chart is drawn)."""

    def mb(kib: float) -> str:
        return f"{kib / 1024:.0f} MB"

    worst = max(peaks, key=lambda p: p.together)
    return [
        Row(
            f"CLI cycle that draws (forecast + chart) via {sink}: peak RSS",
            f"{mb(median([float(p.own) for p in peaks]))}; child "
            f"{mb(median([float(p.children) for p in peaks]))} while the cycle held "
            f"{mb(worst.family.parent_rss)}: together {mb(max(p.family.rss_sum for p in peaks))}, "
            f"at most {mb(worst.together)}",
            "≤ 100 MB together",
            worst.together / 1024 <= 100,
        ),
        Row(
            "  both processes at once in PSS (a shared page split among its mappers)",
            f"{mb(max(p.family.pss_sum for p in peaks))}",
            "—",
            None,
        ),
    ]


# --- the table ---------------------------------------------------------------------------------


def render(rows: list[Row], info: dict[str, str], runs: dict[str, int]) -> str:
    widths = [max(len(r.measure) for r in rows), max(len(r.figure) for r in rows), max(len(r.goal) for r in rows)]
    head = ("measure", "figure (median)", "goal", "")
    widths = [max(w, len(h)) for w, h in zip(widths, head, strict=False)]
    lines = [
        f"machine: {info['cpu']}, {info['cores']} cores, {info['memory']}; {info['python']}; {info['os']}",
        f"date:    {info['date']}",
        "runs:    " + ", ".join(f"{k} x{v}" for k, v in runs.items()),
        "",
        f"| {head[0]:<{widths[0]}} | {head[1]:<{widths[1]}} | {head[2]:<{widths[2]}} | {head[3]} |",
        f"|{'-' * (widths[0] + 2)}|{'-' * (widths[1] + 2)}|{'-' * (widths[2] + 2)}|---|",
    ]
    for r in rows:
        lines.append(f"| {r.measure:<{widths[0]}} | {r.figure:<{widths[1]}} | {r.goal:<{widths[2]}} | {r.mark} |")
    return "\n".join(lines)


SECTIONS = ("cold", "http", "cli", "drawing", "chart", "state", "image")


def _run_sections(only: set[str], runs: dict[str, int]) -> list[Row]:
    rows: list[Row] = []
    if "cold" in only:
        rows += bench_cold_start(runs["cold start"])
    if only & {"http", "cli", "drawing"}:
        with tempfile.TemporaryDirectory(prefix="cmb-bench-") as tmp:
            workdir = Path(tmp)
            log = workdir / "bot.log"
            rig = Rig(workdir)
            try:
                rig.start()
                if "http" in only:
                    rows += bench_http_cycles(rig, runs["quiet cycle"], runs["one-alert cycle"], runs["accounts"], log)
                else:  # the first delivery ever (cold key store), which the CLI rows do not measure
                    rig.usage()
                    assert _run_cli(rig.env(), log)[0] == 0, f"CLI cycle failed; see {log}"
                if "cli" in only:
                    rows += bench_cli(rig, runs["CLI cycle"], log)
                if "drawing" in only:
                    rows += bench_drawing_cycles(rig, runs["CLI cycle"], log)
            finally:
                rig.stop()
    if "chart" in only:
        rows += bench_chart_draw(runs["chart draw"])
    if "state" in only:
        rows += bench_state_size()
    if "image" in only:
        from scripts._bench_image import image_size_rows

        rows += image_size_rows(Row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--only",
        type=lambda text: set(text.split(",")),
        default=set(SECTIONS),
        help=f"these sections only, comma-separated: {','.join(SECTIONS)} (default: all)",
    )
    args = parser.parse_args(argv)
    if unknown := args.only - set(SECTIONS):
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    runs = (
        {"cold start": 3, "quiet cycle": 40, "one-alert cycle": 3, "accounts": 15, "CLI cycle": 2, "chart draw": 5}
        if args.quick
        else {
            "cold start": 11,
            "quiet cycle": 300,
            "one-alert cycle": 9,
            "accounts": 100,
            "CLI cycle": 5,
            "chart draw": 20,
        }
    )
    info = machine()
    rows = _run_sections(args.only, runs)
    sections = {"cold start": "cold", "quiet cycle": "http", "one-alert cycle": "http", "accounts": "http"}
    sections |= {"CLI cycle": "cli", "chart draw": "chart"}
    shown = {k: v for k, v in runs.items() if sections[k] in args.only or (k == "CLI cycle" and "drawing" in args.only)}
    table = render(rows, info, shown)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    missed = [r.measure for r in rows if r.met is False]
    if missed:
        print(f"\n{len(missed)} goal(s) missed: see docs/performance.md for why.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
