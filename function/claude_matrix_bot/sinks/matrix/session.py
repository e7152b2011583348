"""The frame of one delivery: one nio client, opened and closed here; never raises,
never leaks the token; counts every HTTP attempt; plain JSON calls beside nio's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ...charts import Picture
from ...model import Alert
from ..crosssigning import CrossSigningError, PublishedIdentity
from .credentials import MatrixCredentials, _Stopped, login_hint
from .describe import _describe_error, _describe_status

if TYPE_CHECKING:
    from nio import AsyncClient

    from ...logs import Redactor
    from ...settings import TrustedDevice

log = logging.getLogger(__package__)  # one logger for the whole sink, as before the split


@dataclass(frozen=True, slots=True)
class CrossSigningOutcome:
    """What signing the bot's device came to (public values only)."""

    master: str | None = None  # the identity the device is now signed by
    created: bool = False  # a new identity was published
    foreign_master: str | None = None  # the account's identity is not the bot's: left alone
    needs_password: bool = False  # the homeserver asked for the password to publish one
    signature_problem: str | None = None  # signed, but recipients cannot see it (what to say)


class SinkOptions(Protocol):
    """What a delivery reads of its `MatrixSink` (sink.py), named here so this module, below
    the sink, does not import it back (no import cycle)."""

    creds_dir: Path
    room_id: str
    store_dir: Path
    trusted_devices: tuple[TrustedDevice, ...]
    _store_passphrase: str | None
    timeout: float
    exclude_insecure_devices: bool
    redactor: Redactor | None
    mention: tuple[str, ...]


class _Session:
    """One delivery's frame and what it learns on the way (the layers below add the steps)."""

    def __init__(self, sink: SinkOptions, alerts: list[Alert]) -> None:
        self.sink = sink
        self.alerts = alerts
        self.delivered: list[str] = []
        self.set_aside: list[str] = []  # refused for good (fit.refused_for_good)
        self.requests = 0
        self.creds: MatrixCredentials | None = None
        # Said in the armed message when the account's identity is not the bot's.
        self.identity_notice: str | None = None
        # Said in the next message when recipients cannot see the device's signature.
        self.signature_notice: str | None = None
        self.identities: dict[str, PublishedIdentity] = {}
        self.pictures: dict[str, Picture | None] = {}
        # The last answer that was not a 200, in words (what a swallowed failure was).
        self.last_refusal: str | None = None
        # Filled by MatrixSink.prime.
        self.device_ed25519: str | None = None
        self.outcome: CrossSigningOutcome | None = None

    async def run(
        self,
        work: Callable[[AsyncClient, MatrixCredentials], Awaitable[None]],
        secrets: tuple[str | None, ...] = (),
    ) -> str | None:
        """Run `work` with one nio client; the error in words (scrubbed), or None."""
        error: str | None = None
        client: AsyncClient | None = None
        try:
            self.creds = MatrixCredentials.from_dir(self.sink.creds_dir)
            if self.sink.redactor is not None:
                self.sink.redactor.add(self.creds.access_token)
            client = self._client(self.creds)
            # A whole delivery is bounded too: nio's own sync path can wait without limit.
            async with asyncio.timeout(self.sink.timeout * 6):
                await work(client, self.creds)
        except _Stopped as exc:
            error = str(exc)
        except CrossSigningError as exc:
            error = str(exc)
        except Exception as exc:  # the contract: report, never raise
            error = self._describe_exception(exc)
        finally:
            if client is not None:
                await self._close(client)
        if error is not None:
            error = self._scrub(error)
            for secret in secrets:
                if secret:
                    error = error.replace(secret, "<password>")
        return error

    def _scrub(self, text: str) -> str:
        if self.creds is not None and self.creds.access_token:
            text = text.replace(self.creds.access_token, "<access token>")
        return text

    def _describe_exception(self, exc: BaseException) -> str:
        import aiohttp

        url = self.creds.homeserver_url if self.creds else "the homeserver"
        if isinstance(exc, TimeoutError):
            return f"the homeserver {url} did not answer in time (timeout {self.sink.timeout:g}s)"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return f"cannot reach the homeserver {url}: {exc.strerror or exc.os_error or 'connection failed'}"
        if isinstance(exc, aiohttp.ClientError):
            return f"connection to the homeserver {url} failed: {type(exc).__name__}: {exc}"
        # A bug or a library surprise: name it, no traceback in the cycle's output.
        log.debug("unexpected matrix failure", exc_info=True)
        return f"unexpected failure while delivering to Matrix: {type(exc).__name__}: {exc}"

    def _client(self, creds: MatrixCredentials) -> AsyncClient:
        from nio import AsyncClient, AsyncClientConfig

        config = AsyncClientConfig(
            encryption_enabled=True,
            # We persist the token ourselves (sync.json), in step with the tracked users.
            store_sync_tokens=False,
            pickle_key=self.sink._store_passphrase or "DEFAULT_KEY",
            request_timeout=self.sink.timeout,
            # Never sleep on a 429 or loop on a dead server: the next cycle retries.
            max_limit_exceeded=0,
            max_timeouts=1,
            backoff_factor=0.0,
        )
        self.sink.store_dir.mkdir(parents=True, exist_ok=True)
        client = AsyncClient(
            creds.homeserver_url,
            creds.user_id,
            device_id=creds.device_id,
            store_path=str(self.sink.store_dir),
            config=config,
        )
        original_send: Callable[..., Awaitable[Any]] = client.send

        async def counted_send(*args: Any, **kwargs: Any) -> Any:
            # Every HTTP attempt goes through AsyncClient.send, retries included.
            self.requests += 1
            method, path = [*args, kwargs.get("method"), kwargs.get("path")][:2]
            # The path only: nio moves the token into a header, but never log a query string.
            log.debug("matrix request %d: %s %s", self.requests, method, str(path).split("?", 1)[0])
            return await original_send(*args, **kwargs)

        client.send = counted_send
        client.create_matrix_response = self._judged_by_status(client.create_matrix_response)
        return client

    def _judged_by_status(self, create: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """nio's answer parser, judging every answer by its HTTP status first.

        nio reads a body that is not JSON as `{}` whatever the status, and `{}` is a valid
        success for to-device, keys upload and more: a proxy's 502 page would pass as
        "room key shared" and the alert would go out undecryptable (issue 21 item 9)."""
        from nio import ErrorResponse

        async def judged(response_class: type, transport_response: Any, *args: Any, **kwargs: Any) -> Any:
            response = await create(response_class, transport_response, *args, **kwargs)
            status = transport_response.status
            if status != 200 and not isinstance(response, ErrorResponse):
                kind = transport_response.content_type or "no content type"
                response = ErrorResponse(f"answered with {kind}, not a Matrix answer")
                response.transport_response = transport_response
            if status != 200:
                self.last_refusal = _describe_error(response)
            return response

        return judged

    async def _close(self, client: AsyncClient) -> None:
        # Closing must not turn a report into an exception: the contract is "never raise".
        with contextlib.suppress(Exception):
            await client.close()
        store = getattr(client, "store", None)
        database = getattr(store, "database", None)
        if database is not None:
            with contextlib.suppress(Exception):
                database.close()
        keep_private(self.sink.store_dir)

    async def _request(
        self, client: AsyncClient, method: str, path: str, body: Any = None
    ) -> tuple[int, dict[str, Any]]:
        """A plain JSON call with nio's session (no nio state change): (status, body)."""
        assert self.creds is not None
        headers = {"Authorization": f"Bearer {self.creds.access_token}", "Content-Type": "application/json"}
        data = json.dumps(body) if body is not None else None
        response = await client.send(method, path, data, headers)
        try:
            payload = await response.json(content_type=None)
        except ValueError:
            payload = {}
        return response.status, payload if isinstance(payload, dict) else {}

    async def _raw(self, client: AsyncClient, step: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """`_request` that stops the delivery on anything but 200."""
        status, payload = await self._request(client, method, path, body)
        if status != 200:
            raise _Stopped(
                f"{step} failed: " + _describe_status(status, payload.get("errcode"), payload.get("error"), payload)
            )
        return payload

    def _login_hint(self, creds: MatrixCredentials) -> str:
        return login_hint(creds)


def keep_private(store_dir: Path) -> None:
    """Every file of the key store readable by the bot alone. nio creates its SQLite
    database (the Olm account, the Megolm sessions) and trust files with the process
    umask: 0644 under the usual 022 (issue 21 item 5). Symlinks are left alone."""
    with contextlib.suppress(OSError), os.scandir(store_dir) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mode & 0o077:
                with contextlib.suppress(OSError):
                    descriptor = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                    try:
                        os.fchmod(descriptor, 0o600)
                    finally:
                        os.close(descriptor)
