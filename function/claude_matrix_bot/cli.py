"""`claude-matrix-bot run | status` (DESIGN §3). Thin: parse, configure, call, exit."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from . import __version__
from .errors import BotError, ConfigError
from .logs import configure_logging, register_secret
from .settings import Settings, load_settings

log = logging.getLogger("claude_matrix_bot")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def _settings(*, need_tokens: bool) -> Settings:
    env = dict(os.environ)
    if not need_tokens:
        # `status` reads state only; it must work without token or Matrix settings.
        env.setdefault("LOCAL_MODE", "1")
        env.setdefault("ALERT_SINK", "stdout")
    settings = load_settings(env)
    register_secret(settings.trigger_token, settings.matrix_store_passphrase)
    return settings


def cmd_run(_: argparse.Namespace) -> int:
    from .cycle import run_cycle

    settings = _settings(need_tokens=True)
    result = run_cycle(settings)
    summary = json.dumps(result.to_json())
    if result.status == "failed":
        log.error("cycle failed: %s", summary)
    else:
        log.info("cycle %s: %s", result.status, summary)
    return result.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    from .status import format_status, status_report

    settings = _settings(need_tokens=False)
    report = status_report(settings)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_status(report))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claude-matrix-bot", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one watch cycle (exit 0: done or nothing to do; 1: failed; 2: bad config)")
    run.set_defaults(func=cmd_run)
    status = sub.add_parser("status", help="print the state: buckets, history, forecast, health")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"claude-matrix-bot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BotError as exc:
        print(f"claude-matrix-bot: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
