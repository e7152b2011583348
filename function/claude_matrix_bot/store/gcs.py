"""`gs://bucket/prefix`: a Google Cloud Storage bucket.

Credentials come from Application Default Credentials (Workload Identity on
GKE, `GOOGLE_APPLICATION_CREDENTIALS`, gcloud). When `STORAGE_EMULATOR_HOST`
is set the library talks to that endpoint instead; we then pass anonymous
credentials and no project explicitly, so a local emulator works on a machine
without ADC whatever the library version's defaults are.

Compare-and-swap rests on object generations: the version is the generation
number; an exclusive create sends `ifGenerationMatch=0`, a replacement or a
delete sends `ifGenerationMatch=<generation>`, and GCS answers a lost race
with 412.

Retries: a conditional request that timed out may have succeeded; its retry
then gets 412 and we report a conflict although we won. Callers already treat
a conflict as "re-read and decide again", which is safe in that case too.

google-cloud-storage is imported only here, so other backends never pay for it.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import GoogleAuthError
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY
from requests import RequestException

from ..errors import ConfigError, StorageConflict, StorageError
from .base import ANY, Absent, Anything, Durability, Expect, check_key

# A cycle runs every five minutes: give up on a dead endpoint quickly.
TIMEOUT_SEC = 15.0
# Every request we send carries a precondition (or is idempotent), so retrying
# transient failures is safe; bound the whole retry loop.
RETRY = DEFAULT_RETRY.with_timeout(30.0)

_TRANSPORT_ERRORS = (gexc.GoogleAPIError, GoogleAuthError, RequestException)


def _client() -> Any:
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]  # google-auth is partly untyped
        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT"), credentials=anonymous)
    # Bucket-level calls need no project; one from the environment is still honoured.
    return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT"))


def _generation(version: str, where: str) -> int:
    try:
        return int(version)
    except ValueError:
        # A version from another backend can never match a GCS object.
        raise StorageConflict(f"{where}: {version!r} is not a GCS generation") from None


class GCSStore:
    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None) -> None:
        if not bucket:
            raise ConfigError("STATE_URL: gs:// needs a bucket name (gs://bucket/prefix)")
        self.prefix = prefix.strip("/")
        self.url = f"gs://{bucket}/{self.prefix}" if self.prefix else f"gs://{bucket}"
        try:
            self._client = client or _client()
        except _TRANSPORT_ERRORS as exc:
            raise StorageError(f"GCS client for {self.url} unusable: {type(exc).__name__}") from exc
        self._bucket = self._client.bucket(bucket)

    @classmethod
    def from_url(cls, url: str) -> GCSStore:
        parsed = urlparse(url)
        return cls(parsed.netloc, parsed.path)

    def local_dir(self) -> str | None:
        return None

    def __repr__(self) -> str:
        return f"GCSStore({self.url!r})"

    # --- key mapping -------------------------------------------------------------

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str) -> str:
        return f"{self.url}/{key}"

    def _failure(self, action: str, key: str, exc: Exception) -> StorageError:
        # Class and status only: library messages carry full request URLs.
        status = getattr(exc, "code", None)
        detail = f" (HTTP {status})" if isinstance(status, int) else ""
        return StorageError(f"GCS {action} {self._where(key)} failed: {type(exc).__name__}{detail}")

    # --- BlobStore -----------------------------------------------------------------

    def read(self, key: str) -> tuple[bytes, str]:
        blob = self._bucket.blob(self._name(key))
        try:
            data: bytes = blob.download_as_bytes(timeout=TIMEOUT_SEC, retry=RETRY)
            if blob.generation is None:
                # GCS sends x-goog-generation with the media; some emulators do not.
                blob.reload(timeout=TIMEOUT_SEC, retry=RETRY)
        except gexc.NotFound:
            raise FileNotFoundError(self._where(key)) from None
        except _TRANSPORT_ERRORS as exc:
            raise self._failure("read", key, exc) from exc
        return data, str(blob.generation)

    def write(self, key: str, data: bytes, *, expect: Expect, durability: Durability = "durable") -> str:
        # An acknowledged PUT is durable: `durability` asks for nothing more.
        blob = self._bucket.blob(self._name(key))
        generation: int | None = None
        if isinstance(expect, Absent):
            generation = 0  # GCS: 0 means "only if no live object exists"
        elif not isinstance(expect, Anything):
            generation = _generation(expect, self._where(key))
        try:
            blob.upload_from_string(
                data,
                content_type="application/octet-stream",
                if_generation_match=generation,
                timeout=TIMEOUT_SEC,
                retry=RETRY,
            )
        except gexc.PreconditionFailed:
            raise StorageConflict(f"{self._where(key)} changed since it was read") from None
        except _TRANSPORT_ERRORS as exc:
            raise self._failure("write", key, exc) from exc
        return str(blob.generation)

    def delete(self, key: str, *, expect: Expect = ANY) -> None:
        blob = self._bucket.blob(self._name(key))
        generation: int | None = None
        if isinstance(expect, Absent):
            generation = 0  # 404 when absent (fine), 412 when present (conflict)
        elif not isinstance(expect, Anything):
            generation = _generation(expect, self._where(key))
        try:
            blob.delete(if_generation_match=generation, timeout=TIMEOUT_SEC, retry=RETRY)
        except gexc.NotFound:
            if generation:
                raise StorageConflict(f"{self._where(key)} was deleted since it was read") from None
        except gexc.PreconditionFailed:
            raise StorageConflict(f"{self._where(key)} changed since it was read") from None
        except _TRANSPORT_ERRORS as exc:
            raise self._failure("delete", key, exc) from exc

    def list(self, prefix: str = "") -> list[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        try:
            names = [
                blob.name[len(root) :]
                for blob in self._client.list_blobs(
                    self._bucket, prefix=root + prefix, timeout=TIMEOUT_SEC, retry=RETRY
                )
            ]
        except gexc.NotFound:
            raise StorageError(f"GCS bucket of {self.url} does not exist") from None
        except _TRANSPORT_ERRORS as exc:
            raise self._failure("list", prefix, exc) from exc
        return sorted(names)
