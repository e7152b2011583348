"""Object-storage servers on 127.0.0.1 for the blob-store tests.

- moto's S3 server (the same WSGI app `moto_server` runs), in a thread.
- gcp-storage-emulator, in a thread. It ignores `ifGenerationMatch`, so it only
  proves that the real client, URLs and listings work.
- `GenerationServer`: a small GCS JSON-API server of our own that the real
  google-cloud-storage client talks to, and that ENFORCES generation
  preconditions (412) atomically. The CAS half of the contract is proven here.

Each server is started once per test session by the fixtures in the test
modules (see `s3_server`, `gcs_emulator`, `gcs_generation_server` below) and
stopped at the end; they are threads of the pytest process, so no process can
outlive the run.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import google_crc32c
import pytest

from claude_matrix_bot.store import BlobStore, memory, open_store

S3_BUCKET = "cmb-test-s3"
GCS_BUCKET = "cmb-test-gcs"

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]


# --- S3 (moto) -------------------------------------------------------------------


class _OneRequestAtATime:
    """Serialise requests into moto.

    moto checks `If-None-Match`/`If-Match` and then stores the object in two
    steps, so two threads can both pass the check; real S3 makes the
    conditional write atomic. Serialising the requests gives moto that
    atomicity, which is the server behaviour our client code relies on.
    (Measured without it: 0 of 30 eight-way races produced two winners, so
    the window is narrow, but a flaky race test is worse than none.)
    """

    def __init__(self, app: WSGIApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    _stop: Callable[[], None]

    def stop(self) -> None:
        self._stop()


def start_s3_server(*, serialised: bool = True) -> S3Server:
    import boto3
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    class QuietHandler(MotoRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    app: WSGIApp = DomainDispatcherApplication(create_backend_app)
    if serialised:
        app = _OneRequestAtATime(app)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="moto-s3", daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_port}"

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=S3_BUCKET)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return S3Server(endpoint=endpoint, bucket=S3_BUCKET, _stop=stop)


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
# Keep a developer's own AWS setup out of the tests.
S3_ENV_UNSET = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


# --- GCS: gcp-storage-emulator -----------------------------------------------------


@dataclass
class GCSServer:
    endpoint: str
    bucket: str
    _stop: Callable[[], None]

    def stop(self) -> None:
        self._stop()


def start_gcs_emulator() -> GCSServer:
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=GCS_BUCKET)
    server.start()
    # The emulator has no accessor for the port the OS picked.
    port = server._api._httpd.server_address[1]
    return GCSServer(endpoint=f"http://127.0.0.1:{port}", bucket=GCS_BUCKET, _stop=server.stop)


# --- GCS: our generation-enforcing JSON-API server -----------------------------------


@dataclass
class _Object:
    data: bytes
    generation: int
    metageneration: int
    content_type: str


class GenerationStore:
    """Buckets of objects with GCS generation semantics, behind one lock."""

    def __init__(self, buckets: Iterable[str]) -> None:
        self.lock = threading.Lock()
        self.buckets: dict[str, dict[str, _Object]] = {name: {} for name in buckets}
        # GCS generations are microsecond timestamps: unique and increasing.
        self._generations = itertools.count(1_700_000_000_000_000)
        self.precondition_failures = 0

    def next_generation(self) -> int:
        return next(self._generations)


class _PreconditionFailed(Exception):
    pass


class _NotFound(Exception):
    pass


def _check_preconditions(current: _Object | None, query: dict[str, str]) -> None:
    """`ifGenerationMatch`/`ifGenerationNotMatch`/`ifMetagenerationMatch` as GCS applies them."""
    if "ifGenerationMatch" in query:
        wanted = int(query["ifGenerationMatch"])
        actual = current.generation if current else 0
        if wanted != actual:
            raise _PreconditionFailed
    if "ifGenerationNotMatch" in query:
        actual = current.generation if current else 0
        if int(query["ifGenerationNotMatch"]) == actual:
            raise _PreconditionFailed
    if "ifMetagenerationMatch" in query and (
        current is None or int(query["ifMetagenerationMatch"]) != current.metageneration
    ):
        raise _PreconditionFailed


def _resource(base: str, bucket: str, name: str, obj: _Object) -> dict[str, Any]:
    crc = google_crc32c.value(obj.data).to_bytes(4, "big")
    quoted = quote(name, safe="")
    return {
        "kind": "storage#object",
        "id": f"{bucket}/{name}/{obj.generation}",
        "selfLink": f"{base}/storage/v1/b/{bucket}/o/{quoted}",
        "mediaLink": f"{base}/download/storage/v1/b/{bucket}/o/{quoted}?generation={obj.generation}&alt=media",
        "name": name,
        "bucket": bucket,
        "generation": str(obj.generation),
        "metageneration": str(obj.metageneration),
        "contentType": obj.content_type,
        "size": str(len(obj.data)),
        "md5Hash": base64.b64encode(hashlib.md5(obj.data).digest()).decode(),  # noqa: S324 - GCS's own field
        "crc32c": base64.b64encode(crc).decode(),
        "etag": f"{obj.generation:x}",
        "storageClass": "STANDARD",
    }


def _parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, Any], bytes, str]:
    """The two-part `multipart/related` body google-resumable-media sends."""
    boundary = None
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key == "boundary":
            boundary = value.strip('"').encode()
    if boundary is None:
        raise ValueError("multipart upload without boundary")
    delimiter = b"--" + boundary
    parts = body.split(delimiter)
    # parts: [b"", metadata part, media part, b"--" + trailer]
    if len(parts) < 4:
        raise ValueError("multipart upload needs a metadata and a media part")

    def split_part(part: bytes) -> tuple[dict[str, str], bytes]:
        part = part.removeprefix(b"\r\n")
        head, _, payload = part.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return headers, payload.removesuffix(b"\r\n")

    _, meta_payload = split_part(parts[1])
    media_headers, media = split_part(parts[2])
    return json.loads(meta_payload), media, media_headers.get("content-type", "application/octet-stream")


class _GenerationHandler(BaseHTTPRequestHandler):
    server: _GenerationHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- plumbing ---

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json; charset=UTF-8"})

    def _error(self, status: int, reason: str, message: str) -> None:
        self._json(
            status,
            {"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}},
        )

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(length) if length else b""

    def _route(self) -> tuple[str, str, str | None, dict[str, str]]:
        """(api, bucket, object name or None, query) from the raw, still-quoted path."""
        split = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(split.query).items()}
        for api in ("/upload/storage/v1/b/", "/download/storage/v1/b/", "/storage/v1/b/"):
            if split.path.startswith(api):
                rest = split.path[len(api) :]
                bucket, _, tail = rest.partition("/")
                # Object names arrive percent-encoded, slashes included.
                if tail in {"o", "o/"}:
                    return api, unquote(bucket), None, query
                if tail.startswith("o/"):
                    return api, unquote(bucket), unquote(tail[2:]), query
                return api, unquote(bucket), "", query
        return "", "", None, query

    def _objects(self, bucket: str) -> dict[str, _Object]:
        objects = self.server.store.buckets.get(bucket)
        if objects is None:
            raise _NotFound
        return objects

    def _dispatch(self, handler: Callable[[], None]) -> None:
        try:
            handler()
        except _NotFound:
            self._error(404, "notFound", "No such object or bucket.")
        except _PreconditionFailed:
            self.server.store.precondition_failures += 1
            self._error(412, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.")
        except (ValueError, KeyError) as exc:
            self._error(400, "invalid", f"Bad request: {exc}")

    # --- verbs ---

    def do_GET(self) -> None:
        self._dispatch(self._get)

    def do_POST(self) -> None:
        self._dispatch(self._post)

    def do_DELETE(self) -> None:
        self._dispatch(self._delete)

    def _get(self) -> None:
        api, bucket, name, query = self._route()
        store = self.server.store
        if api == "/storage/v1/b/" and name is None:
            self._list(bucket, query)
            return
        if not name:
            raise _NotFound
        with store.lock:
            current = self._objects(bucket).get(name)
            if current is None:
                raise _NotFound
            if "generation" in query and int(query["generation"]) != current.generation:
                raise _NotFound  # no versioning: older generations are gone
            _check_preconditions(current, query)
        if api == "/download/storage/v1/b/" or query.get("alt") == "media":
            crc = base64.b64encode(google_crc32c.value(current.data).to_bytes(4, "big")).decode()
            md5 = base64.b64encode(hashlib.md5(current.data).digest()).decode()  # noqa: S324 - GCS's own header
            self._send(
                200,
                current.data,
                {
                    "Content-Type": current.content_type,
                    "X-Goog-Generation": str(current.generation),
                    "X-Goog-Metageneration": str(current.metageneration),
                    "X-Goog-Hash": f"crc32c={crc},md5={md5}",
                    "X-Goog-Stored-Content-Length": str(len(current.data)),
                    "ETag": f"{current.generation:x}",
                },
            )
            return
        self._json(200, _resource(self.server.base_url, bucket, name, current))

    def _list(self, bucket: str, query: dict[str, str]) -> None:
        prefix = query.get("prefix", "")
        page_size = min(int(query.get("maxResults", "1000")), self.server.page_size)
        start = query.get("pageToken", "")
        with self.server.store.lock:
            objects = self._objects(bucket)
            names = sorted(name for name in objects if name.startswith(prefix) and name > start)
            page = names[:page_size]
            items = [_resource(self.server.base_url, bucket, name, objects[name]) for name in page]
        payload: dict[str, Any] = {"kind": "storage#objects", "items": items}
        if len(names) > page_size:
            payload["nextPageToken"] = page[-1]
        self._json(200, payload)

    def _post(self) -> None:
        api, bucket, name, query = self._route()
        if api != "/upload/storage/v1/b/" or name is not None:
            self._error(400, "invalid", "only object uploads are supported")
            return
        body = self._body()
        upload_type = query.get("uploadType", "media")
        if upload_type == "multipart":
            metadata, data, content_type = _parse_multipart(body, self.headers.get("Content-Type", ""))
            object_name = str(metadata.get("name") or query.get("name", ""))
            content_type = str(metadata.get("contentType") or content_type)
        elif upload_type == "media":
            data, object_name = body, query.get("name", "")
            content_type = self.headers.get("Content-Type", "application/octet-stream")
        else:
            # Resumable uploads are for objects above 8 MiB; our blobs are small.
            self._error(400, "invalid", f"uploadType={upload_type} is not supported by this server")
            return
        if not object_name:
            raise ValueError("object name missing")
        store = self.server.store
        # The precondition check and the store are one atomic step, as in GCS.
        with store.lock:
            objects = self._objects(bucket)
            _check_preconditions(objects.get(object_name), query)
            obj = _Object(data, store.next_generation(), 1, content_type)
            objects[object_name] = obj
            resource = _resource(self.server.base_url, bucket, object_name, obj)
        self._json(200, resource)

    def _delete(self) -> None:
        _, bucket, name, query = self._route()
        if not name:
            raise _NotFound
        store = self.server.store
        with store.lock:
            objects = self._objects(bucket)
            current = objects.get(name)
            if current is None:
                raise _NotFound
            _check_preconditions(current, query)
            del objects[name]
        self._send(204)


class _GenerationHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, store: GenerationStore, page_size: int) -> None:
        super().__init__(("127.0.0.1", 0), _GenerationHandler)
        self.store = store
        self.page_size = page_size
        self.base_url = f"http://127.0.0.1:{self.server_port}"


@dataclass
class GenerationServer:
    endpoint: str
    bucket: str
    store: GenerationStore
    _stop: Callable[[], None]

    def stop(self) -> None:
        self._stop()


def start_generation_server(*, page_size: int = 2) -> GenerationServer:
    """A small page size makes every listing of more than two keys page."""
    store = GenerationStore([GCS_BUCKET])
    server = _GenerationHTTPServer(store, page_size)
    thread = threading.Thread(target=server.serve_forever, name="gcs-generation", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return GenerationServer(endpoint=server.base_url, bucket=GCS_BUCKET, store=store, _stop=stop)


# --- pytest fixtures (loaded with `pytest_plugins = ("tests.fakes.storage_servers",)`) -------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = start_s3_server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GCSServer]:
    server = start_gcs_emulator()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_generation_server() -> Iterator[GenerationServer]:
    server = start_generation_server()
    yield server
    server.stop()


@dataclass(frozen=True)
class Backend:
    """One blob-store backend under test, with a fresh prefix of its own."""

    name: str
    url: str
    enforces_cas: bool
    cross_process: bool

    def open(self) -> BlobStore:
        # Through the real scheme table, as the bot does.
        return open_store(self.url)


@dataclass(frozen=True)
class Capabilities:
    scheme: str
    # The server enforces compare-and-swap (gcp-storage-emulator ignores ifGenerationMatch).
    enforces_cas: bool
    # A bot in a child process (the CLI, functions-framework) reaches the same blobs.
    cross_process: bool


BACKENDS = {
    "memory": Capabilities("memory", enforces_cas=True, cross_process=False),
    "directory": Capabilities("file", enforces_cas=True, cross_process=True),
    "moto-s3": Capabilities("s3", enforces_cas=True, cross_process=True),
    "gcs-emulator": Capabilities("gs", enforces_cas=False, cross_process=True),
    "gcs-enforcing": Capabilities("gs", enforces_cas=True, cross_process=True),
}


def backends(*, cas: bool = False, cross_process: bool = False) -> tuple[str, ...]:
    """The backends with (at least) these capabilities."""
    return tuple(
        name
        for name, can in BACKENDS.items()
        if (can.enforces_cas or not cas) and (can.cross_process or not cross_process)
    )


def _backend(name: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    can = BACKENDS[name]
    if name == "memory":
        space = f"test-{uuid.uuid4().hex[:12]}"
        request.addfinalizer(lambda: memory.forget(space))
        return Backend(name, f"memory://{space}/{prefix}", can.enforces_cas, can.cross_process)
    if name == "directory":
        return Backend(name, (tmp_path / "store").as_uri(), can.enforces_cas, can.cross_process)
    if name == "moto-s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        for var in S3_ENV_UNSET:
            monkeypatch.delenv(var, raising=False)
        for var, value in S3_ENV.items():
            monkeypatch.setenv(var, value)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint)
        return Backend(name, f"s3://{s3.bucket}/{prefix}", can.enforces_cas, can.cross_process)
    server: GCSServer | GenerationServer = request.getfixturevalue(
        "gcs_emulator" if name == "gcs-emulator" else "gcs_generation_server"
    )
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.endpoint)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    return Backend(name, f"gs://{server.bucket}/{prefix}", can.enforces_cas, can.cross_process)


# Fixtures by capability. In-process tests (the store, the lease, a cycle run with compose.run)
# take every backend that has what they need, memory included; tests whose bot runs in a child
# process take only the backends that process can reach.


@pytest.fixture(params=backends())
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    return _backend(request.param, request, tmp_path, monkeypatch)


@pytest.fixture(params=backends(cas=True))
def cas_backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    return _backend(request.param, request, tmp_path, monkeypatch)


@pytest.fixture(params=backends(cas=True, cross_process=True))
def shared_cas_backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """A compare-and-swap backend that a bot in a child process reaches too."""
    return _backend(request.param, request, tmp_path, monkeypatch)
