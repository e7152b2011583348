"""A hostile upstream on loopback: answers every request one byte at a time (issue 21).

Real HTTP on 127.0.0.1 (a free port). For each connection it reads the request head,
then writes `answer` (a whole HTTP/1.1 response) one byte every `interval` seconds,
so no single socket read of the client ever waits long enough to time out. It stops
when the client hangs up, when `stop()` is called, or after `max_sec` (a bound on
every test). `sent` tells how many bytes went out before the client gave up.

    with Trickle(usage_answer(b'{"five_hour": null}'), interval=5.0) as server:
        UsageClient(server.url, "claude-code/2.0.55").fetch(token, now)  # fails after ~10 s
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType


def usage_answer(body: bytes, status: int = 200) -> bytes:
    """A complete HTTP/1.1 answer carrying `body` as JSON."""
    head = f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class Trickle:
    def __init__(self, answer: bytes, *, interval: float = 5.0, max_sec: float = 60.0) -> None:
        self.answer = answer
        self.interval = interval
        self.max_sec = max_sec
        self.sent = 0
        self.connections = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []

    def start(self) -> Trickle:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> Trickle:
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1.0)
            head = b""
            try:
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    head += chunk
            except OSError:
                return
            for index in range(len(self.answer)):
                if self._stop.wait(self.interval if index else 0) or self._stop.is_set():
                    return
                try:
                    conn.sendall(self.answer[index : index + 1])
                except OSError:
                    return  # the client gave up
                self.sent += 1
                if self.interval * index > self.max_sec:
                    return
