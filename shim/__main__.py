"""Entry point: `python -m shim` and the console script `claude-matrix-bot-trigger`."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from shim import EXIT_CONFIG, EXIT_FAILED, ShimConfigError, environment, load_config, masked, summary_line, trigger

USAGE = """\
usage: claude-matrix-bot-trigger

POST one trigger to $FUNCTION_URL (with $TRIGGER_TOKEN as a bearer token when set)
and exit 0 (cycle done, or nothing to do: 409/429), 1 (failed after retries) or
2 (configuration missing or invalid). The function's JSON answer goes to stdout.
Tuning: SHIM_MAX_ATTEMPTS (4), SHIM_BACKOFF_SEC (1), SHIM_TIMEOUT_SEC (150).
"""


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return 0
    if args:
        sys.stderr.write(USAGE)
        return EXIT_CONFIG
    try:
        config = load_config(environment() if env is None else env)
    except ShimConfigError as exc:
        print(f"claude-matrix-bot-trigger: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        outcome = trigger(config)
        if outcome.body.strip():
            print(masked(summary_line(outcome.body), config.trigger_token), flush=True)
    except Exception as exc:  # never a traceback; the Job fails like any failed trigger (issue 21)
        message = masked(f"unexpected {type(exc).__name__}: {exc}", config.trigger_token)
        print(f"claude-matrix-bot-trigger: {' '.join(message.split())[:300]}", file=sys.stderr)
        return EXIT_FAILED
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
