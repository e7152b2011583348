"""`claude-matrix-bot run | status` (docs/design.md §3). Thin: parse, configure, call, exit."""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import BotError, ConfigError, InternalError, StorageError
from .logs import Redactor, configure_logging, cycle_scope, set_log_format, startup_level
from .settings import Settings, load_settings

if TYPE_CHECKING:
    from .state import State

log = logging.getLogger("claude_matrix_bot")

EXIT_OK = 0


def _settings(redactor: Redactor, *, need_tokens: bool) -> Settings:
    env = dict(os.environ)
    if not need_tokens:
        # `status` reads state only; it must work without token or Matrix settings.
        env.setdefault("LOCAL_MODE", "1")
        env.setdefault("ALERT_SINK", "stdout")
    settings = load_settings(env, check_files=need_tokens)
    redactor.add(settings.trigger_token, settings.matrix_store_passphrase)
    set_log_format(settings.log_format)
    return settings


def cmd_run(_: argparse.Namespace, redactor: Redactor) -> int:
    from .compose import run

    settings = _settings(redactor, need_tokens=True)
    with cycle_scope():
        result = run(settings, redactor=redactor)
        summary = json.dumps(result.to_json())
        if result.status == "failed":
            log.error("cycle failed: %s", summary)
        else:
            log.info("cycle %s: %s", result.status, summary)
    return result.exit_code


def cmd_status(args: argparse.Namespace, redactor: Redactor) -> int:
    from .status import collect, format_status

    snapshot = collect(_settings(redactor, need_tokens=False))
    print(json.dumps(snapshot.to_json(), indent=2) if args.json else format_status(snapshot))
    # An account whose state cannot be read fails `status` as one unreadable file does.
    return StorageError.exit_code if any(view.problem for view in snapshot.views.values()) else EXIT_OK


def _chart_state_key(settings: Settings, account: str | None) -> str:
    """Which state file `chart` draws from: state.json, or `<account>/state.json` with
    ACCOUNTS (docs/design.md §6). An account that is not configured is a usage error (exit 2)."""
    from .state_file import state_key

    if not settings.accounts:
        if account is not None:
            raise ConfigError(f"--account {account}: ACCOUNTS is not set, so there is one account and no names")
        return "state.json"
    names = ", ".join(settings.accounts)
    if account is None:
        if len(settings.accounts) == 1:
            return state_key(settings.accounts[0])
        raise ConfigError(f"several accounts ({names}): name one with --account")
    if account not in settings.accounts:
        raise ConfigError(f"--account {account}: not one of ACCOUNTS ({names})")
    return state_key(account)


def cmd_chart(args: argparse.Namespace, redactor: Redactor) -> int:
    """Draw a weekly bucket's current window from state.json (docs/design.md §7), nothing sent."""
    from .atomic import replace_file
    from .charts import png_dimensions, render_png
    from .core.family_table import family_of
    from .core.pictures import current_chart

    settings = _settings(redactor, need_tokens=False)
    state = _chart_state(settings, args.account)
    weekly = sorted(name for name, bucket in state.buckets.items() if family_of(name).chart and bucket.resets_at)
    if not weekly:
        raise BotError("no weekly bucket with a window in the state yet: nothing to draw")
    lead = family_of(weekly[0]).lead
    name = args.bucket or (lead if lead in weekly else weekly[0])
    if name not in weekly:
        raise BotError(f"no weekly bucket {name!r} with a window in the state; there are: {', '.join(weekly)}")
    try:
        spec = current_chart(
            name,
            state.buckets[name],
            now=settings.now(),
            thresholds=settings.weekly_thresholds,
            min_samples=settings.forecast_min_samples,
            min_span_sec=settings.forecast_min_span_sec,
            zone=settings.timezone,
        )
    except ValueError as exc:
        raise BotError(str(exc)) from None
    png = render_png(spec)
    out: Path = args.out
    _refuse_special(out)
    try:
        # A private temporary file (unpredictable name, created exclusively, 0600) renamed
        # over `out`: a planted symlink is replaced, never followed (issue 21).
        replace_file(out, png, durable=False)
    except OSError as exc:
        raise BotError(f"cannot write {out}: {exc.strerror or exc}") from None
    width, height = png_dimensions(png)
    who = f"{args.account or settings.accounts[0]} " if settings.accounts else ""
    print(f"{out}: {who}{name}, {width}x{height} PNG, {len(png)} bytes, {len(spec.samples)} samples")
    return EXIT_OK


def _refuse_special(out: Path) -> None:
    """A device, a FIFO or a symlink to one (`/dev/stdout`) is never renamed over: that
    would replace the node itself. A symlink to a regular file is replaced, not followed."""
    try:
        mode = out.stat().st_mode
    except OSError:
        return  # absent (or dangling): a new file; other trouble is said by the write
    if not stat.S_ISREG(mode):
        raise BotError(f"cannot write {out}: not a regular file; name a file to write the PNG to")


def _chart_state(settings: Settings, account: str | None) -> State:
    from .errors import CorruptState
    from .state import parse_state
    from .store import open_store

    key = _chart_state_key(settings, account)
    try:
        data, _ = open_store(settings.state_url).read(key)
    except FileNotFoundError:
        raise BotError(f"no state yet ({key} under {settings.state_url}): run a cycle first") from None
    try:
        return parse_state(data)
    except CorruptState as exc:
        raise BotError(f"{key} cannot be read ({exc}); the next cycle moves it aside") from None


def cmd_matrix_login(args: argparse.Namespace, redactor: Redactor) -> int:
    from .sinks.matrix_login import LoginRequest, matrix_login
    from .url_policy import plain_http_problem

    # Only MATRIX_CREDS_DIR, STATE_URL, MATRIX_STORE_PASSPHRASE and MATRIX_PASSWORD_FILE matter here.
    settings = _settings(redactor, need_tokens=False)
    problem = plain_http_problem("--homeserver", args.homeserver)
    if problem and not settings.allow_plain_http:
        raise ConfigError(problem)
    request = LoginRequest(
        homeserver_url=args.homeserver,
        user=args.user,
        new_device=args.new_device,
        reset_cross_signing=args.reset_cross_signing,
    )
    return matrix_login(settings, request, redactor)


def _homeserver_url(text: str) -> str:
    from .url_policy import public_url

    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected an http(s) URL, got {public_url(text)!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claude-matrix-bot", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: LOG_LEVEL"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one watch cycle (exit 0: done or nothing to do; 1: failed; 2: bad config)")
    run.set_defaults(func=cmd_run)
    status = sub.add_parser("status", help="print the state: buckets, history, forecast, health")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    chart = sub.add_parser("chart", help="draw a weekly bucket's current window as a PNG (from state, nothing sent)")
    chart.add_argument("--bucket", help="weekly bucket, e.g. seven_day_opus (default: seven_day)")
    chart.add_argument("--account", help="with ACCOUNTS: whose window to draw, e.g. work (docs/design.md §6)")
    chart.add_argument("--out", type=Path, required=True, help="where to write the PNG")
    chart.set_defaults(func=cmd_chart)
    login = sub.add_parser(
        "matrix-login",
        help="log the bot in once: a dedicated device, its key store under STATE_URL, its cross-signing identity "
        "(password from MATRIX_PASSWORD_FILE or a prompt)",
    )
    login.add_argument("--homeserver", type=_homeserver_url, required=True, help="e.g. https://matrix.example.org")
    login.add_argument("--user", required=True, help="the bot's user name or id, e.g. claude-bot")
    login.add_argument("--new-device", action="store_true", help="replace a working device with a new one")
    login.add_argument(
        "--reset-cross-signing",
        action="store_true",
        help="replace the account's cross-signing identity (asks the password)",
    )
    login.set_defaults(func=cmd_matrix_login)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # One redactor for this run: the logging filter and every adapter share it.
    redactor = Redactor()
    try:
        configure_logging(args.log_level or startup_level(os.environ.get("LOG_LEVEL")), redactor)
        code: int = args.func(args, redactor)
        sys.stdout.flush()  # here, not at exit, so a reader that left is handled below
    except BrokenPipeError:
        # `status | head`: the reader of stdout left early. What `status` or `chart` had to say
        # is said; for `run` (the stdout sink) the cycle already counted what was not delivered.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_OK if args.command in ("status", "chart") else InternalError.exit_code
    except BotError as exc:  # its family says the exit code (a ConfigError: 2)
        _say(redactor(str(exc)))
        return exc.exit_code
    except Exception as exc:  # outside every family: a failure, never a traceback (issue 21)
        from .unexpected import describe

        log.debug("unexpected failure", exc_info=exc)  # the traceback, masked, at DEBUG only
        _say(describe(exc, redactor))
        return InternalError.exit_code
    return code


def _say(message: str) -> None:
    """The last word on stderr; with LOG_FORMAT=json one JSON line like every other, even
    when the settings it came from were refused (a log shipper parses every line)."""
    if os.environ.get("LOG_FORMAT", "").strip().lower() == "json":
        set_log_format("json")
        log.error("%s", message)
    else:
        print(f"claude-matrix-bot: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
