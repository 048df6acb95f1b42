"""The ``s3`` adapter of :class:`~sealtune.storage.base.BlobStore`: any S3-compatible store.

``s3://BUCKET/PREFIX`` with the standard AWS configuration (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, profiles):
nothing secret is in the URL or the workspace config. Expected production
stores: AWS S3, MinIO, Ceph RGW, and others that implement conditional writes.
Tests run against moto's server mode, an in-memory test double.

Immutability is the store's job, not a read-then-write race: every write is
``PutObject`` with ``If-None-Match: *``, which the store refuses (412) when
the key exists. Some S3-compatible stores ignore that header and overwrite;
:meth:`S3BlobStore.probe` (run when the store is opened) writes a probe key
twice and fails closed if the second write is not refused. When the bucket has
Object Lock enabled, each blob also gets a retention date (the URL's
``retain_days``, default 180) in the bucket's default mode or ``GOVERNANCE``,
so that even the account owner cannot destroy the version written.

What this protects against: overwriting an artifact (by a second writer or a
replay), stores that silently drop the conditional header, deletion of a
locked artifact through this API.

What it does not: S3 is untrusted storage. Anyone with ``s3:PutObject`` and no
condition can still write a key in a bucket without Object Lock, or a new
version on top in one with it: readers check blobs against the catalogue's
digest (:func:`~sealtune.storage.base.get_verified`) and the sealing AEAD.
Credentials are the caller's: scope them to this prefix.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sealtune.errors import BlobExistsError, ConfigError, PolicyViolation, StorageError
from sealtune.storage.base import BLOB_STORES, BlobStat, check_key

INSTALL_HINT = "install the S3 extra: pip install 'sealtune[s3]'"
DEFAULT_RETAIN_DAYS = 180
PROBE_PREFIX = ".sealtune-probe"
_EXISTS = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3BlobStore:
    """Blobs as objects under ``s3://BUCKET/PREFIX``.

    Args:
        url: ``s3://BUCKET[/PREFIX][?retain_days=N]``.
        client: a boto3 S3 client (default: one from the standard AWS configuration).
        probe: check conditional writes and Object Lock now (never skip in production).

    Raises:
        StorageError: boto3 is missing, the bucket is unreachable, or the store
            ignores conditional writes.
    """

    def __init__(self, url: str, *, client: Any = None, probe: bool = True) -> None:
        parts = urlsplit(url)
        if "@" in parts.netloc:  # never echoed: it may hold an access key and secret
            raise ConfigError("the s3 URL carries credentials",
                              hint="remove them; credentials come from AWS_* variables, "
                              "never the URL")
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError(f"{url[:100]!r} is not an s3://BUCKET/PREFIX URL",
                              hint="e.g. s3://my-bucket/team-a")
        self.url = url
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        if self.prefix:
            check_key(self.prefix, what="prefix")
        options = dict(parse_qsl(parts.query))
        unknown = set(options) - {"retain_days"}
        if unknown:
            raise ConfigError(f"unknown s3 URL option {sorted(unknown)[0]!r}",
                              hint="known options: retain_days")
        try:
            self.retain_days = int(options.get("retain_days", DEFAULT_RETAIN_DAYS))
        except ValueError:
            raise ConfigError("s3 URL option retain_days must be an integer") from None
        self._client = client if client is not None else _client()
        self.lock_mode: str | None = None
        if probe:
            self.probe()

    @classmethod
    def from_url(cls, url: str, root: Path) -> S3BlobStore:
        """Open ``url`` (``root`` is unused: the store is remote)."""
        del root
        return cls(url)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def probe(self) -> None:
        """Check the bucket, that conditional writes are enforced, and Object Lock.

        Raises:
            StorageError: unreachable bucket, or a store that ignores ``If-None-Match``.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        # A dot-name no caller can write (check_key refuses it), so a probe never
        # collides with an artifact.
        probe = f"{self.prefix}/" if self.prefix else ""
        probe += f"{PROBE_PREFIX}/{secrets.token_hex(8)}"
        try:
            self.lock_mode = self._lock_mode()
            self._client.put_object(Bucket=self.bucket, Key=probe, Body=b"1", IfNoneMatch="*")
            try:
                self._client.put_object(Bucket=self.bucket, Key=probe, Body=b"2",
                                        IfNoneMatch="*")
            except ClientError as exc:
                if _code(exc) not in _EXISTS:
                    raise
            else:
                raise StorageError(
                    f"s3://{self.bucket} ignores conditional writes (If-None-Match: *): "
                    "a stored artifact could be overwritten",
                    hint="use a store that enforces conditional writes (AWS S3, MinIO, "
                    "a recent Ceph RGW) or enable that feature on this one")
            # Under Object Lock this only hides it (a delete marker); the lock keeps it.
            with contextlib.suppress(ClientError):
                self._client.delete_object(Bucket=self.bucket, Key=probe)
        except ClientError as exc:
            raise StorageError(f"cannot use s3://{self.bucket} ({_code(exc) or 'error'})",
                               hint="check the bucket name, AWS_ENDPOINT_URL and credentials"
                               ) from None
        except BotoCoreError as exc:
            raise StorageError(f"cannot reach s3://{self.bucket} ({type(exc).__name__})",
                               hint="check AWS_ENDPOINT_URL and the network") from None

    def _lock_mode(self) -> str | None:
        from botocore.exceptions import ClientError

        try:
            cfg = self._client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as exc:
            if "ObjectLockConfigurationNotFound" in _code(exc):
                return None
            raise
        lock = cfg.get("ObjectLockConfiguration", {})
        if lock.get("ObjectLockEnabled") != "Enabled":
            return None
        mode = lock.get("Rule", {}).get("DefaultRetention", {}).get("Mode")
        return str(mode) if mode else "GOVERNANCE"

    def put_if_absent(self, key: str, data: bytes) -> None:
        """Store ``data`` under a new ``key`` (the store refuses an existing one)."""
        from botocore.exceptions import ClientError

        extra: dict[str, Any] = {}
        if self.lock_mode is not None:
            extra["ObjectLockMode"] = self.lock_mode
            extra["ObjectLockRetainUntilDate"] = (datetime.now(UTC)
                                                  + timedelta(days=self.retain_days))
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                    IfNoneMatch="*", **extra)
        except ClientError as exc:
            if _code(exc) in _EXISTS:
                raise BlobExistsError(f"{key} already exists in {self.url}",
                                      hint="stored artifacts are immutable: write a new key"
                                      ) from None
            raise self._failed("write", key, exc) from None

    def get(self, key: str) -> bytes:
        """Return the blob under ``key``."""
        from botocore.exceptions import ClientError

        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            return bytes(body.read())
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise StorageError(f"{key} not found in {self.url}") from None
            raise self._failed("read", key, exc) from None

    def stat(self, key: str) -> BlobStat | None:
        """Size and Object Lock retention of ``key``, or None."""
        from botocore.exceptions import ClientError

        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise self._failed("stat", key, exc) from None
        until = head.get("ObjectLockRetainUntilDate")
        return BlobStat(key, int(head["ContentLength"]),
                        until.isoformat() if until is not None else None)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield keys under ``prefix``, sorted (probe keys excluded)."""
        base = f"{self.prefix}/" if self.prefix else ""
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base + prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                key = str(obj["Key"])[len(base):]
                if not key.startswith(PROBE_PREFIX):
                    yield key

    def delete(self, key: str) -> None:
        """Delete ``key`` unless Object Lock still retains it."""
        stat = self.stat(key)
        if stat is None:
            raise StorageError(f"{key} not found in {self.url}")
        if stat.locked_until is not None and (
                datetime.fromisoformat(stat.locked_until) > datetime.now(UTC)):
            raise PolicyViolation(f"{key} is under Object Lock until {stat.locked_until}",
                                  hint="locked artifacts cannot be deleted before then")
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def _failed(self, what: str, key: str, exc: Any) -> StorageError:
        return StorageError(f"cannot {what} {key} in {self.url} ({_code(exc) or 'error'})",
                            hint="check the credentials' permissions and the endpoint")


def _client() -> Any:
    try:
        import boto3
    except ImportError:
        raise StorageError("S3 support is not installed", hint=INSTALL_HINT) from None
    return boto3.client("s3")


BLOB_STORES.register("s3", S3BlobStore.from_url)
