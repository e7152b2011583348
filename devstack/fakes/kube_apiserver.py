"""A loopback stand-in for the Kubernetes API server, enough for one Secret.

It speaks real HTTP on 127.0.0.1 (a free port) and is driven through the real
`kubernetes` Python client. It serves GET, PATCH and PUT on
`/api/v1/namespaces/{ns}/secrets/{name}` and answers errors with proper
`Status` objects, as the API server does:

- authorization like a Role with `resourceNames`: the configured bearer token
  may get/patch/update exactly one Secret; any other Secret is 403 Forbidden,
  a missing or wrong token is 401;
- a cluster-wide `resourceVersion` counter bumped on every write;
- optimistic concurrency: a body carrying `metadata.resourceVersion` that is
  not the current one is 409 Conflict (reason "Conflict");
- PATCH accepts the object-patch content types the API server accepts for a
  built-in type (`application/merge-patch+json`,
  `application/strategic-merge-patch+json`; for a Secret, which has no lists,
  both merge the same way) and `application/json-patch+json` only with a list
  body; anything else is 415.

Fault injection: `fail_next(status)` answers the next request(s) with a 5xx (optionally
only a method, only token writes), `stall_next(seconds)` performs a write and answers too
late (a client timeout after the write landed; held until `release_stalled()`, at most `seconds`),
`another_writer()` changes the Secret behind the client's back (the race a
second cycle would cause). Every request is recorded in `requests`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from kubernetes import client

SECRET_PREFIX = "/api/v1/namespaces/"
OBJECT_PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
JSON_PATCH_TYPE = "application/json-patch+json"
DEFAULT_BEARER = "fake-serviceaccount-token"
DEFAULT_SERVICE_ACCOUNT = "system:serviceaccount:claude-bot:claude-matrix-bot"

_STATUS_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
    503: "ServiceUnavailable",
}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake saw it (bodies included: they stay in the test's memory)."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    content_type: str | None
    authorization: str | None
    body: Any
    status: int  # what the fake answered


@dataclass
class _Fault:
    status: int
    remaining: int
    method: str | None = None  # only requests of this method
    writes_tokens: bool = False  # only requests whose body carries `data` (a token write)
    stall: float = 0.0  # perform the request, then answer after this long (the client has given up)

    def matches(self, method: str, body: Any) -> bool:
        if self.remaining <= 0 or (self.method is not None and method != self.method):
            return False
        return not self.writes_tokens or (isinstance(body, dict) and "data" in body)


@dataclass
class _State:
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    resource_version: int = 1000
    requests: list[RecordedRequest] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def status_object(code: int, message: str, *, name: str | None = None, reason: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _STATUS_REASONS.get(code, "Unknown"),
        "code": code,
    }
    if name is not None:
        body["details"] = {"name": name, "kind": "secrets"}
    return body


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (null deletes a key)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # strategic-merge directives; none apply to a Secret's maps
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class _ApiError(Exception):
    def __init__(self, code: int, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.status = status_object(code, message, name=name)


class FakeKubeApiServer:
    """The fake API server. Use as a context manager, or `start()` / `stop()`."""

    def __init__(
        self,
        *,
        namespace: str = "claude-bot",
        secret_name: str = "claude-oauth-tokens",  # noqa: S107 - a Secret's name
        bearer_token: str = DEFAULT_BEARER,
        service_account: str = DEFAULT_SERVICE_ACCOUNT,
    ) -> None:
        self.namespace = namespace
        self.secret_name = secret_name
        self.bearer_token = bearer_token
        self.service_account = service_account
        self._lock = threading.Lock()
        self._state = _State()
        self._released = threading.Event()  # ends a stall_next hold
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> FakeKubeApiServer:
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        # A short poll interval keeps shutdown (each test's teardown) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-kube-apiserver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeKubeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def secret_path(self) -> str:
        return f"{SECRET_PREFIX}{self.namespace}/secrets/{self.secret_name}"

    # --- the objects -------------------------------------------------------------

    def _next_version(self) -> str:
        self._state.resource_version += 1
        return str(self._state.resource_version)

    def put_secret(
        self,
        data: Mapping[str, str] | None = None,
        *,
        raw_data: Mapping[str, str] | None = None,
        name: str | None = None,
        namespace: str | None = None,
    ) -> str:
        """Create or overwrite a Secret directly (no authorization); `data` is plain text.

        `raw_data` is stored as-is in `.data` (for malformed-base64 tests).
        Returns the new resourceVersion.
        """
        key = (namespace or self.namespace, name or self.secret_name)
        encoded = {k: b64(v) for k, v in (data or {}).items()}
        encoded.update(raw_data or {})
        with self._lock:
            version = self._next_version()
            existing = self._state.secrets.get(key)
            meta = existing["metadata"] if existing else _new_metadata(*key)
            self._state.secrets[key] = {
                "kind": "Secret",
                "apiVersion": "v1",
                "metadata": {**meta, "resourceVersion": version},
                "type": "Opaque",
                "data": encoded,
            }
            return version

    def secret_data(self, *, name: str | None = None, namespace: str | None = None) -> dict[str, str]:
        """The Secret's `.data`, decoded to text."""
        key = (namespace or self.namespace, name or self.secret_name)
        with self._lock:
            data = dict(self._state.secrets[key].get("data") or {})
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def annotations(self) -> dict[str, str]:
        """The Secret's `metadata.annotations`."""
        with self._lock:
            return dict(self._state.secrets[(self.namespace, self.secret_name)]["metadata"].get("annotations") or {})

    def resource_version(self, *, name: str | None = None, namespace: str | None = None) -> str:
        key = (namespace or self.namespace, name or self.secret_name)
        with self._lock:
            return str(self._state.secrets[key]["metadata"]["resourceVersion"])

    def delete_secret(self) -> None:
        with self._lock:
            self._state.secrets.pop((self.namespace, self.secret_name), None)

    def another_writer(self, data: Mapping[str, str] | None = None) -> str:
        """Another client writes the Secret (new values or just a touch): the rV moves on."""
        key = (self.namespace, self.secret_name)
        with self._lock:
            secret = self._state.secrets[key]
            if data:
                secret["data"] = {**(secret.get("data") or {}), **{k: b64(v) for k, v in data.items()}}
            version = self._next_version()
            secret["metadata"]["resourceVersion"] = version
            return version

    # --- fault injection and the log -------------------------------------------------

    def fail_next(
        self, status: int = 500, *, times: int = 1, method: str | None = None, writes_tokens: bool = False
    ) -> None:
        """Answer the next `times` requests (of `method`; writing tokens) with `status` (a Status body)."""
        with self._lock:
            self._state.faults.append(_Fault(status, times, method, writes_tokens))

    def stall_next(self, seconds: float, *, times: int = 1, method: str = "PATCH", writes_tokens: bool = True) -> None:
        """Perform the next `times` matching requests, then answer only on `release_stalled()` (or
        after `seconds`): a write that landed while the client timed out, whatever the load."""
        with self._lock:
            self._released.clear()
            self._state.faults.append(_Fault(200, times, method, writes_tokens, stall=min(seconds, 10.0)))

    def release_stalled(self) -> None:
        """Let stalled requests answer now (their clients have given up)."""
        self._released.set()

    def clear_faults(self) -> None:
        with self._lock:
            self._state.faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._state.requests.clear()

    def requested_paths(self) -> set[str]:
        return {r.path for r in self.requests}

    # --- request handling (called from the handler threads) -------------------------------

    def _handle(self, method: str, raw_path: str, headers: Mapping[str, str], raw_body: bytes) -> tuple[int, Any]:
        """Answer one request; `headers` keys are lower-case."""
        split = urlsplit(raw_path)
        content_type = headers.get("content-type")
        body: Any = None
        if raw_body:
            try:
                body = json.loads(raw_body)
            except ValueError:
                body = raw_body.decode("utf-8", "replace")
        status, payload = self._answer(method, split.path, headers, content_type, body)
        with self._lock:
            self._state.requests.append(
                RecordedRequest(
                    method=method,
                    path=split.path,
                    query=parse_qs(split.query),
                    content_type=content_type,
                    authorization=headers.get("authorization"),
                    body=body,
                    status=status,
                )
            )
        return status, payload

    def _answer(
        self, method: str, path: str, headers: Mapping[str, str], content_type: str | None, body: Any
    ) -> tuple[int, Any]:
        with self._lock:
            fault = next((f for f in self._state.faults if f.matches(method, body)), None)
            if fault is not None:
                fault.remaining -= 1
        if fault is not None and not fault.stall:
            return fault.status, status_object(fault.status, f"injected fault {fault.status}")
        try:
            answer: tuple[int, Any] = (200, self._route(method, path, headers, content_type, body))
        except _ApiError as exc:
            answer = (int(exc.status["code"]), exc.status)
        if fault is not None:
            self._released.wait(fault.stall)  # bounded by stall_next
        return answer

    def _route(
        self, method: str, path: str, headers: Mapping[str, str], content_type: str | None, body: Any
    ) -> dict[str, Any]:
        parts = path.split("/")
        # ['', 'api', 'v1', 'namespaces', ns, 'secrets', name]
        if len(parts) != 7 or parts[:4] != ["", "api", "v1", "namespaces"] or parts[5] != "secrets":
            raise _ApiError(404, "the server could not find the requested resource")
        namespace, name = parts[4], parts[6]
        verb = {"GET": "get", "PATCH": "patch", "PUT": "update"}.get(method)
        if verb is None:
            raise _ApiError(405, f"the server does not allow this method on the requested resource: {method}")
        if headers.get("authorization") != f"Bearer {self.bearer_token}":
            raise _ApiError(401, "Unauthorized")
        if (namespace, name) != (self.namespace, self.secret_name):
            raise _ApiError(
                403,
                f'secrets "{name}" is forbidden: User "{self.service_account}" cannot {verb} resource '
                f'"secrets" in API group "" in the namespace "{namespace}"',
                name=name,
            )
        with self._lock:
            key = (namespace, name)
            current = self._state.secrets.get(key)
            if current is None:
                raise _ApiError(404, f'secrets "{name}" not found', name=name)
            if method == "GET":
                return _copy(current)
            if method == "PATCH":
                updated = self._patched(current, content_type, body, name)
            else:
                updated = self._replaced(current, body, name)
            self._check_precondition(current, updated, name)
            _validate_data(updated, name)
            if "stringData" in updated:
                string_data = updated.pop("stringData") or {}
                updated["data"] = {**(updated.get("data") or {}), **{k: b64(v) for k, v in string_data.items()}}
            system = {k: current["metadata"][k] for k in ("name", "namespace", "uid", "creationTimestamp")}
            meta = {k: v for k, v in (updated.get("metadata") or {}).items() if v not in ({}, None)}
            updated["metadata"] = {**meta, **system, "resourceVersion": self._next_version()}
            self._state.secrets[key] = updated
            return _copy(updated)

    @staticmethod
    def _patched(current: dict[str, Any], content_type: str | None, body: Any, name: str) -> dict[str, Any]:
        media_type = (content_type or "").split(";")[0].strip().lower()
        if media_type in OBJECT_PATCH_TYPES:
            if not isinstance(body, dict):
                raise _ApiError(400, "the body of the request was in an unknown format", name=name)
            patched = merge_patch(current, body)
            assert isinstance(patched, dict)
            return patched
        if media_type == JSON_PATCH_TYPE:
            if not isinstance(body, list):
                raise _ApiError(400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch", name=name)
            raise _ApiError(415, "this fake implements object patches only", name=name)
        raise _ApiError(
            415,
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join((JSON_PATCH_TYPE, *OBJECT_PATCH_TYPES))}",
            name=name,
        )

    @staticmethod
    def _replaced(current: dict[str, Any], body: Any, name: str) -> dict[str, Any]:
        if not isinstance(body, dict) or body.get("kind", "Secret") != "Secret":
            raise _ApiError(400, "the body of the request was in an unknown format", name=name)
        meta = body.get("metadata") or {}
        if meta.get("name", name) != name:
            raise _ApiError(400, "the name of the object does not match the name on the URL", name=name)
        return {**body, "kind": "Secret", "apiVersion": "v1", "metadata": {**current["metadata"], **meta}}

    @staticmethod
    def _check_precondition(current: dict[str, Any], updated: dict[str, Any], name: str) -> None:
        wanted = (updated.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and str(wanted) != str(current["metadata"]["resourceVersion"]):
            raise _ApiError(
                409,
                f'Operation cannot be fulfilled on secrets "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
                name=name,
            )


def _copy(obj: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(obj))
    return copied


def _new_metadata(namespace: str, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "uid": str(uuid.uuid4()),
        "creationTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _validate_data(secret: Mapping[str, Any], name: str) -> None:
    # The API server decodes `.data` values into []byte: bad base64 is a 400.
    for key, value in (secret.get("data") or {}).items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise _ApiError(
                400, f'Secret in version "v1" cannot be handled: data[{key}]: illegal base64 data', name=name
            ) from None


def _make_handler(fake: FakeKubeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The headers and the body go out in two writes; with Nagle on, the body waits for
        # the client's delayed ACK of the headers (40 ms on Linux loopback) on every
        # keep-alive request. Real servers (nginx, Envoy, Go) set TCP_NODELAY too.
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw_body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = fake._handle(self.command, self.path, headers, raw_body)
            encoded = json.dumps(payload).encode()
            # A client that gave up (stall_next) is gone: nothing to answer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(encoded)))
                self.end_headers()
                self.wfile.write(encoded)

        do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean; the fake records requests itself

    return Handler


# --- client helpers ------------------------------------------------------------------


def client_configuration(fake: FakeKubeApiServer, *, bearer_token: str | None = None) -> client.Configuration:
    configuration = client.Configuration()
    configuration.host = fake.url
    configuration.api_key = {"BearerToken": f"Bearer {bearer_token or fake.bearer_token}"}
    configuration.verify_ssl = False  # plain http on loopback
    return configuration


def core_v1_api(fake: FakeKubeApiServer, *, bearer_token: str | None = None) -> client.CoreV1Api:
    """A real `CoreV1Api` pointed at the fake."""
    return client.CoreV1Api(client.ApiClient(client_configuration(fake, bearer_token=bearer_token)))


def write_kubeconfig(fake: FakeKubeApiServer, path: Path, *, namespace: str | None = None) -> Path:
    """A kubeconfig whose current context points at the fake (for the `load_kube_config()` path)."""
    context: dict[str, Any] = {"cluster": "fake", "user": "bot"}
    if namespace is not None:
        context["namespace"] = namespace
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
        "users": [{"name": "bot", "user": {"token": fake.bearer_token}}],
        "contexts": [{"name": "fake", "context": context}],
        "current-context": "fake",
    }
    path.write_text(yaml.safe_dump(document))
    return path


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[FakeKubeApiServer]:
    with FakeKubeApiServer(**kwargs) as fake:
        yield fake
