"""A counting reverse proxy on 127.0.0.1, for `make bench`.

The bot's Matrix credentials point at this proxy instead of Synapse, so every HTTP
request the bot makes to the homeserver is counted, whatever library makes it,
without touching the bot's code.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


class CountingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=60)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> CountingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._client.close()

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def since(self, mark: int) -> list[tuple[str, str]]:
        with self._lock:
            return self.requests[mark:]

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        with self._lock:
            self.requests.append((method, path.split("?", 1)[0]))
        kept = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
        return self._client.request(method, self.upstream + path, headers=kept, content=body)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The headers and the body go out in two writes; with Nagle on, the body waits for
            # the client's delayed ACK of the headers (40 ms on Linux loopback) on every
            # keep-alive request. Real servers (nginx, Envoy, Go) set TCP_NODELAY too.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    answer = proxy._forward(self.command, self.path, dict(self.headers.items()), body)
                except httpx.TransportError:
                    self.send_error(502)
                    return
                data = answer.content
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        return Handler
