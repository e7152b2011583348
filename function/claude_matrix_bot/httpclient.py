"""One httpx client per process for the Anthropic endpoints (usage and token refresh).

Building an `httpx.Client` costs an SSL context (about 20 ms of a 5 ms quiet-cycle
budget), so a warm instance (Knative keeps one between triggers) builds it once
and the usage client and the token refresher share it and its connection pool.
Requests carry their own timeouts; the client has no base URL, so one pool
serves every configured endpoint.
"""

from __future__ import annotations

import threading

import httpx


class _Shared:
    lock = threading.Lock()
    client: httpx.Client | None = None


def shared_client() -> httpx.Client:
    """The process's client, built on first use (and again after `reset_shared_client`)."""
    with _Shared.lock:
        if _Shared.client is None or _Shared.client.is_closed:
            _Shared.client = httpx.Client(timeout=httpx.Timeout(10.0))
        return _Shared.client


def reset_shared_client() -> None:
    """Close and forget the client: tests call it so no pooled connection outlives its server."""
    with _Shared.lock:
        client, _Shared.client = _Shared.client, None
    if client is not None:
        client.close()
