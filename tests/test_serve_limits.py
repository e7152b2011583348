"""The HTTP function's server (`python -m claude_matrix_bot.serve`, the image's CMD) bounds
what an unauthenticated client can cost (issue 21, item 8): a huge request line is refused
unread, and clients sending their requests slowly are cut off after REQUEST_READ_SEC, so
they cannot hold every worker thread while a trigger waits."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from claude_matrix_bot.serve import LIMITS, REQUEST_READ_SEC
from devstack.fakes.anthropic import FakeAnthropic
from devstack.function_server import FunctionServer
from tests.helpers import REAL_NOW, bot_env

THREADS = 4
SLOW_CLIENTS = 2 * THREADS
# Longer than any wait below: without the read deadline, the slow clients would hold
# their threads for this long.
SLOW_CLIENT_SEC = 90.0


@pytest.fixture
def server(tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path) -> Iterator[FunctionServer]:
    env = {
        **bot_env(tmp_path, anthropic.base_url, anthropic.token_url, MIN_INTERVAL_SEC="0"),
        "NOW_OVERRIDE": REAL_NOW.isoformat(),
        "THREADS": str(THREADS),
    }
    with FunctionServer(env, log=tmp_path / "server.log", cwd=tmp_path) as running:
        yield running


def test_a_huge_request_line_is_refused_unread(server: FunctionServer) -> None:
    path = "/" + "a" * (4 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        with contextlib.suppress(OSError):  # the server may close before the line is all sent
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = sock.recv(4096)

    assert answer.startswith(b"HTTP/1.1 414"), answer[:200]
    assert LIMITS["limit_request_line"] == 8190


def test_too_many_header_fields_are_refused(server: FunctionServer) -> None:
    headers = {f"x-h{i}": "v" for i in range(int(LIMITS["limit_request_fields"]) + 1)}

    response = httpx.get(server.url + "/", headers=headers, timeout=30)

    assert response.status_code == 431


def _slow_client(port: int, stop: threading.Event, started: threading.Semaphore) -> None:
    """Starts a request at once (then releases `started`), then sends one header byte a second."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started.release()
        deadline = time.monotonic() + SLOW_CLIENT_SEC
        while time.monotonic() < deadline and not stop.wait(1.0):
            sock.sendall(b"a")


def test_slow_clients_cannot_starve_a_trigger(server: FunctionServer) -> None:
    stop = threading.Event()
    started = threading.Semaphore(0)
    clients = [
        threading.Thread(target=_slow_client, args=(server.port, stop, started), daemon=True)
        for _ in range(SLOW_CLIENTS)
    ]
    for client in clients:
        client.start()
    try:
        # Every slow client has connected and begun its request before the trigger connects
        # (a fixed sleep let a late client start behind the trigger on a loaded machine).
        assert all(started.acquire(timeout=30) for _ in clients), "every slow client started its request"
        # A trigger behind them is served once their read deadline frees the threads.
        response = httpx.post(server.url + "/", json={}, timeout=3 * REQUEST_READ_SEC + 10)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=10)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"
