"""A loopback HTTP proxy in front of a homeserver that breaks requests on demand.

The fault catalogue's Matrix rows (tests/test_faults_matrix.py and its neighbours) put
it between the bot and Synapse: a send answered 502, a send stored but never answered,
a send parked while the bot is killed; a room-key to-device request answered 502 with an
HTML page (what nginx says while Synapse restarts), a signature upload dropped.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

SEND_MARK = "/send/"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


@dataclass
class SendFault:
    """What the proxy does with the next `times` requests of `method` whose path holds
    `mark` (by default: room sends).

    mode: "status" answers `status`/`body` without forwarding; "drop_after" forwards to
    Synapse (which stores the event) and closes the connection without an answer, as a
    timeout after the server accepted would; "hold_before" parks the request without
    forwarding; "hold_after" forwards, then parks the answer; "pass" lets it through (to
    break a later send). Parked requests wait for `MatrixProxy.release()` and then close
    without an answer. A `body` given as text is answered as an HTML page.
    """

    mode: str
    status: int = 502
    body: dict[str, Any] | str = field(default_factory=dict)
    times: int = 1
    mark: str = SEND_MARK
    method: str = "PUT"


class MatrixProxy:
    """HTTP on 127.0.0.1 forwarding to a homeserver; requests can be broken."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = 0
        self._lock = threading.Lock()
        self._faults: list[SendFault] = []
        self._released = threading.Event()
        self.parked = threading.Event()  # set when a send is parked
        self.forwarded_sends: list[str] = []  # txn ids Synapse received through us
        self.faulted: list[str] = []  # "METHOD path" of every request a fault was used on
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MatrixProxy:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _proxy_handler(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the port: the homeserver is down as far as the bot can tell."""
        server, self._server = self._server, None
        if server is not None:
            self.release()
            server.shutdown()
            server.server_close()

    def break_sends(self, fault: SendFault) -> None:
        with self._lock:
            self._released.clear()
            self.parked.clear()
            self._faults.append(fault)

    def release(self) -> None:
        self._released.set()

    def heal(self) -> None:
        """Forget the faults not used yet."""
        with self._lock:
            self._faults.clear()

    def _take(self, method: str, path: str) -> SendFault | None:
        """The first fault waiting for this kind of request, used once."""
        with self._lock:
            fault = next((f for f in self._faults if f.method == method and f.mark in path), None)
            if fault is None:
                return None
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
            return fault


def _proxy_handler(proxy: MatrixProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The headers and the body go out in two writes; with Nagle on, the body waits for
        # the client's delayed ACK of the headers (40 ms on Linux loopback) on every
        # keep-alive request. Real servers (nginx, Envoy, Go) set TCP_NODELAY too.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _forward(self, body: bytes) -> httpx.Response:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            return httpx.request(self.command, proxy.upstream + self.path, headers=headers, content=body, timeout=30)

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _park(self) -> None:
            proxy.parked.set()
            proxy._released.wait(60)
            self.close_connection = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fault = proxy._take(self.command, self.path.split("?", 1)[0])
            if fault is not None:
                proxy.faulted.append(f"{self.command} {self.path.split('?', 1)[0]}")
            if fault is not None and fault.mode == "status":
                if isinstance(fault.body, str):
                    self._answer(fault.status, {"Content-Type": "text/html"}, fault.body.encode())
                else:
                    self._answer(fault.status, {"Content-Type": "application/json"}, json.dumps(fault.body).encode())
                return
            if fault is not None and fault.mode == "hold_before":
                self._park()
                return
            try:
                response = self._forward(body)
            except httpx.HTTPError:
                self.close_connection = True
                return
            if SEND_MARK in self.path and response.status_code == 200:
                proxy.forwarded_sends.append(self.path.rsplit("/", 1)[-1].split("?")[0])
            if fault is not None and fault.mode == "drop_after":
                self.close_connection = True
                return
            if fault is not None and fault.mode == "hold_after":
                self._park()
                return
            self._answer(response.status_code, dict(response.headers), response.content)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler
