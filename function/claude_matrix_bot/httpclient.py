"""One httpx client per process for the Anthropic endpoints (usage and token refresh),
and the bounds every answer from them is read within (issue 21).

Building an `httpx.Client` costs an SSL context (about 20 ms of a 5 ms quiet-cycle
budget), so a warm instance (Knative keeps one between triggers) builds it once
and the usage client and the token refresher share it and its connection pool.
Requests carry their own timeouts; the client has no base URL, so one pool
serves every configured endpoint.

Bounds (`send_bounded`):
- one total deadline per call (DEADLINE_SEC, what the docs promise): httpx's timeouts
  are per socket operation, so a server trickling a byte every 5 s never trips them.
  Every socket operation here waits at most what is left of the call's deadline (a
  network backend in front of httpcore's, reading a context variable);
- the body streamed with a cap on what arrives and on what it inflates to
  (MAX_ANSWER_BYTES each): a 1 MB gzip answer that inflates to 1 GiB costs at most the
  cap, never the gigabyte. Inflation is done here, in steps no larger than the cap.
"""

from __future__ import annotations

import contextvars
import threading
import time
import typing
import zlib

import httpcore
import httpx

DEADLINE_SEC = 10.0
MAX_ANSWER_BYTES = 1024 * 1024
ACCEPT_ENCODING = "gzip, deflate"  # what `_inflater` reads; never br or zstd
# Headers that described the wire form of the body, not the body handed on.
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("cmb_http_deadline", default=None)


class AnswerTooLarge(httpx.HTTPError):
    """The answer, as sent or inflated, is larger than the cap."""


class _Shared:
    lock = threading.Lock()
    client: httpx.Client | None = None


def shared_client() -> httpx.Client:
    """The process's client, built on first use (and again after `reset_shared_client`)."""
    with _Shared.lock:
        if _Shared.client is None or _Shared.client.is_closed:
            _Shared.client = bounded_client(httpx.Timeout(DEADLINE_SEC))
        return _Shared.client


def reset_shared_client() -> None:
    """Close and forget the client: tests call it so no pooled connection outlives its server."""
    with _Shared.lock:
        client, _Shared.client = _Shared.client, None
    if client is not None:
        client.close()


def bounded_client(timeout: httpx.Timeout | float, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """An `httpx.Client` whose socket operations respect `send_bounded`'s deadline
    (an injected transport, a test's, is left as it is)."""
    client = httpx.Client(timeout=timeout, transport=transport)
    if transport is None:
        install_deadline(client)
    return client


def install_deadline(client: httpx.Client) -> bool:
    """Put the deadline backend in front of the client's connection pools (the direct one
    and any proxy's). True when every pool has it: a test holds httpx to that."""
    transports: list[object] = [client._transport, *client._mounts.values()]
    done = True
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is None:
            done = done and transport is None
            continue
        if not isinstance(backend, _DeadlineBackend):
            pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
    return done


def send_bounded(
    client: httpx.Client,
    request: httpx.Request,
    *,
    deadline_sec: float = DEADLINE_SEC,
    max_bytes: int = MAX_ANSWER_BYTES,
) -> httpx.Response:
    """Send `request` and read its answer within one deadline and the byte caps. The
    answer comes back read and inflated (no Content-Encoding left). Raises httpx's
    timeouts and errors, and AnswerTooLarge."""
    request.headers["Accept-Encoding"] = ACCEPT_ENCODING
    token = _deadline.set(time.monotonic() + deadline_sec)
    try:
        response = client.send(request, stream=True)
        try:
            body = _read_capped(response, max_bytes)
        finally:
            response.close()
    finally:
        _deadline.reset(token)
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _WIRE_HEADERS]
    return httpx.Response(response.status_code, headers=headers, content=body, request=request)


def _read_capped(response: httpx.Response, cap: int) -> bytes:
    try:
        body = response.content  # read already: an injected transport's answer (tests)
    except httpx.ResponseNotRead:
        return _stream_capped(response, cap)
    if len(body) > cap:
        raise AnswerTooLarge(f"answer larger than {cap} bytes")
    return body


def _stream_capped(response: httpx.Response, cap: int) -> bytes:
    inflater = _inflater(response.headers.get("content-encoding", ""))
    received = 0
    out = bytearray()
    for chunk in response.iter_raw():
        received += len(chunk)
        if received > cap:
            raise AnswerTooLarge(f"answer larger than {cap} bytes")
        if inflater is None:
            out += chunk
        else:
            _inflate(inflater, chunk, out, cap)
        if len(out) > cap:
            raise AnswerTooLarge(f"answer larger than {cap} bytes once inflated")
    return bytes(out)


def _inflater(encoding: str) -> typing.Any:
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return None
    if name in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if name == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS)
    raise httpx.DecodingError(f"unsupported Content-Encoding {name[:40]!r}")


def _inflate(inflater: typing.Any, data: bytes, out: bytearray, cap: int) -> None:
    """Inflate `data` into `out`, never producing more than one byte beyond `cap`."""
    try:
        while data:
            out += inflater.decompress(data, cap + 1 - len(out))
            if len(out) > cap:
                return
            data = inflater.unconsumed_tail
    except zlib.error as exc:
        raise httpx.DecodingError(f"answer could not be inflated ({exc})") from None


# --- the deadline at the socket ------------------------------------------------------------


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    """`timeout` cut to what is left of the current call's deadline (none outside one)."""
    end = _deadline.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise error("the call's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: typing.Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _left(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: typing.Iterable[typing.Any] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, _left(timeout, httpcore.ConnectTimeout), socket_options)
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)
