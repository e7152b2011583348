"""The HTTP function's server: functions-framework's app on gunicorn, with request limits.

`python -m claude_matrix_bot.serve [--source F] [--target T] [--host H] [--port P]`
serves what `functions-framework --source F --target T` serves (the image's CMD), but
functions-framework's own server sets `limit_request_line = 0` (unlimited) and no
deadline on reading a request: one unauthenticated 16 MB request line cost 30 s of CPU
and 98 MB, and nine clients sending their headers slowly held every worker thread, so
a trigger waited (issue 21). Here:

- gunicorn's request limits: a request line of at most 8190 bytes, at most 100 header
  fields of at most 8190 bytes each (larger requests get gunicorn's 4xx, unread);
- each request must arrive (head and body) within REQUEST_READ_SEC: after that its
  socket stops reading (a watchdog shuts the read side), so a slow client frees its
  thread and the trigger behind it is served. The answer can still be written.

Everything else is functions-framework's: the same app (`create_app`), one worker,
`THREADS` threads (4 per CPU by default), `PORT` (8080).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import threading
from collections.abc import Sequence
from typing import Any

from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
from gunicorn.workers.gthread import ThreadWorker  # type: ignore[import-untyped]

REQUEST_READ_SEC = 10.0
LIMITS: dict[str, Any] = {
    "limit_request_line": 8190,
    "limit_request_fields": 100,
    "limit_request_field_size": 8190,
}


class BoundedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker, with a deadline on reading each request."""

    def handle(self, conn: Any) -> Any:
        watchdog = threading.Timer(REQUEST_READ_SEC, _stop_reading, (conn.sock,))
        watchdog.daemon = True
        watchdog.start()
        try:
            return super().handle(conn)
        finally:
            watchdog.cancel()


def _stop_reading(sock: socket.socket) -> None:
    # The blocked read returns end-of-file; writing the answer still works.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, app: Any, options: dict[str, Any]) -> None:
        self.app = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self.app


def options(host: str, port: int) -> dict[str, Any]:
    """gunicorn's settings: functions-framework's, with the limits above."""
    return {
        "bind": f"{host}:{port}",
        "workers": 1,
        "threads": int(os.environ.get("THREADS") or (os.cpu_count() or 1) * 4),
        "worker_class": f"{__name__}.BoundedThreadWorker",
        "timeout": 0,
        "loglevel": os.environ.get("GUNICORN_LOG_LEVEL", "error"),
        **LIMITS,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m claude_matrix_bot.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=os.environ.get("FUNCTION_SOURCE", "function/main.py"))
    parser.add_argument("--target", default=os.environ.get("FUNCTION_TARGET", "watch"))
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))  # noqa: S104 (a container's server)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8080))
    args = parser.parse_args(argv)
    from functions_framework import create_app

    app = create_app(target=args.target, source=args.source)  # type: ignore[no-untyped-call]
    _Server(app, options(args.host, args.port)).run()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
