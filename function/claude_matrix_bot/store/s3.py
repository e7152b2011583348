"""`s3://bucket/prefix`: an S3 bucket (or an S3-compatible one).

Credentials, region and endpoint come from boto3's own configuration chain
(`AWS_REGION`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, IRSA web identity,
instance roles, `~/.aws/config`...), never from a project-specific variable.

Compare-and-swap rests on S3 conditional writes: `If-None-Match: *` for an
exclusive create, `If-Match: <ETag>` to replace a version. The version is the
object's ETag. ETags of single-part uploads are content hashes, so writing
the same bytes again gives the same version; a CAS that "misses" such an
A-B-A change replaces bytes identical to those it read, which is harmless for
our blobs (the lease record is unique per holder and instant). S3 answers a
lost race with 412 PreconditionFailed, or 409 ConditionalRequestConflict when
two conditional writes overlap in flight.
Conditional deletes (`If-Match` on DeleteObject) are supported by AWS and by
moto; an S3-compatible server that ignores the header would delete
unconditionally, so such a server is not a safe home for the lease.

boto3 is imported only here, so other backends never pay for it at cold start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import ConfigError, StorageConflict, StorageError
from .base import ANY, Absent, Anything, Durability, Expect, check_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# A cycle runs every five minutes: fail fast rather than hang on a dead endpoint.
# Standard retry mode backs off on throttling and 5xx; 3 attempts in all.
CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=15,
    retries={"mode": "standard", "total_max_attempts": 3},
)

# S3's answers to a conditional request that lost.
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def _key_missing(exc: ClientError) -> bool:
    """The object is not there (a missing bucket is a configuration fault, not "no state yet")."""
    code, status = _error_code(exc)
    return code != "NoSuchBucket" and (code in _MISSING_CODES or status == 404)


def _error_code(exc: ClientError) -> tuple[str, int | None]:
    error: dict[str, Any] = dict(exc.response.get("Error", {}))
    meta: dict[str, Any] = dict(exc.response.get("ResponseMetadata", {}))
    status = meta.get("HTTPStatusCode")
    return str(error.get("Code", "Unknown")), status if isinstance(status, int) else None


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", *, client: S3Client | None = None) -> None:
        if not bucket:
            raise ConfigError("STATE_URL: s3:// needs a bucket name (s3://bucket/prefix)")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client: S3Client = client or boto3.session.Session().client("s3", config=CLIENT_CONFIG)

    @classmethod
    def from_url(cls, url: str) -> S3Store:
        parsed = urlparse(url)
        return cls(parsed.netloc, parsed.path)

    def local_dir(self) -> str | None:
        return None

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    # --- key mapping -------------------------------------------------------------

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}/{key}" if self.prefix else f"s3://{self.bucket}/{key}"

    def _failure(self, action: str, key: str, exc: Exception) -> StorageError:
        # Only the error code and status: S3 error bodies can echo request details.
        if isinstance(exc, ClientError):
            code, status = _error_code(exc)
            return StorageError(f"S3 {action} {self._where(key)} failed: {code} (HTTP {status})")
        return StorageError(f"S3 {action} {self._where(key)} failed: {type(exc).__name__}")

    # --- BlobStore -----------------------------------------------------------------

    def read(self, key: str) -> tuple[bytes, str]:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            data = response["Body"].read()
        except ClientError as exc:
            if _key_missing(exc):
                raise FileNotFoundError(self._where(key)) from None
            raise self._failure("read", key, exc) from exc
        except BotoCoreError as exc:
            raise self._failure("read", key, exc) from exc
        return data, response["ETag"]

    def write(self, key: str, data: bytes, *, expect: Expect, durability: Durability = "durable") -> str:
        # An acknowledged PUT is durable: `durability` asks for nothing more.
        conditions: dict[str, str] = {}
        if isinstance(expect, Absent):
            conditions["IfNoneMatch"] = "*"
        elif not isinstance(expect, Anything):
            conditions["IfMatch"] = expect
        try:
            response = self._client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType="application/octet-stream",
                **conditions,  # type: ignore[arg-type]  # boto3-stubs cannot type a kwargs dict
            )
        except ClientError as exc:
            code, status = _error_code(exc)
            if code in _CONFLICT_CODES or status in (409, 412):
                raise StorageConflict(f"{self._where(key)} changed since it was read") from None
            if conditions.get("IfMatch") and _key_missing(exc):
                # If-Match on a key that is gone: somebody deleted what we meant to replace.
                raise StorageConflict(f"{self._where(key)} was deleted since it was read") from None
            raise self._failure("write", key, exc) from exc
        except BotoCoreError as exc:
            raise self._failure("write", key, exc) from exc
        return response["ETag"]

    def delete(self, key: str, *, expect: Expect = ANY) -> None:
        s3_key = self._key(key)
        try:
            if isinstance(expect, Absent):
                # "Delete only if absent" is a no-op that must still refuse a present key.
                if self._exists(s3_key):
                    raise StorageConflict(f"{self._where(key)} exists")
                return
            if isinstance(expect, Anything):
                self._client.delete_object(Bucket=self.bucket, Key=s3_key)
            else:
                self._client.delete_object(Bucket=self.bucket, Key=s3_key, IfMatch=expect)
        except ClientError as exc:
            code, status = _error_code(exc)
            if code in _CONFLICT_CODES or status in (409, 412):
                raise StorageConflict(f"{self._where(key)} changed since it was read") from None
            if _key_missing(exc):
                # Only a conditional delete reaches here: the expected version is gone.
                raise StorageConflict(f"{self._where(key)} was deleted since it was read") from None
            raise self._failure("delete", key, exc) from exc
        except BotoCoreError as exc:
            raise self._failure("delete", key, exc) from exc

    def _exists(self, s3_key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=s3_key)
        except ClientError as exc:
            if _key_missing(exc):
                return False
            raise
        return True

    def list(self, prefix: str = "") -> list[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix):
                keys.extend(obj["Key"][len(root) :] for obj in page.get("Contents", []))
        except (ClientError, BotoCoreError) as exc:
            raise self._failure("list", prefix or ".", exc) from exc
        return sorted(keys)
