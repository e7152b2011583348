"""Blob stores picked from `STATE_URL` (DESIGN §3): a directory, S3 or GCS."""

from .base import ABSENT, ANY, BlobStore, Expect, open_store

__all__ = ["ABSENT", "ANY", "BlobStore", "Expect", "open_store"]
