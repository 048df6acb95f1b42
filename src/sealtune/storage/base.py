"""The storage ports: :class:`BlobStore` (sealed artifacts) and :class:`MetaStore` (catalogues).

A workspace keeps two kinds of state. Artifacts (sealed datasets, model
versions, reports) are write-once byte strings under a key: a
:class:`BlobStore`. Catalogues (datasets, jobs, models, the registry's alias
table and its signed snapshot) are small records that change under
compare-and-set: a :class:`MetaStore`. Adapters register by URL scheme
(``file``/``sqlite`` embedded by default, ``s3``, ``postgresql``); a URL with
an unknown scheme is refused, never mapped to a default.

What this protects against: an artifact overwritten in place (a second write
of a key raises :class:`~sealtune.errors.BlobExistsError`: for S3 the store
itself enforces it with ``If-None-Match: *``), lost updates between
concurrent writers of a record (:class:`~sealtune.errors.ConflictError`),
keys that climb out of their store (``..``, absolute paths), and an artifact
swapped or damaged at rest when the reader checks it against the digest the
catalogue recorded (:func:`get_verified`).

What it does not: stores are untrusted. Someone who can write the bucket or
the database can delete or rewrite what is there (Object Lock and ledger
checkpoints make that detectable, not impossible); confidentiality comes from
sealing before :meth:`BlobStore.put_if_absent`, never from the store.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from sealtune.errors import IntegrityError, StorageError

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@=+-]{0,199}")
_MAX_KEY = 1024


def check_key(key: str, *, what: str = "key") -> str:
    """Return ``key`` if it is a safe relative name (``a/b/c``), else raise.

    Segments start with a letter or digit and hold only ``A-Z a-z 0-9 . _ @ = + -``,
    so no key is absolute, empty, hidden, or climbs out with ``..``.

    Raises:
        StorageError: the key is not of that form.
    """
    parts = key.split("/")
    if len(key) > _MAX_KEY or not all(_KEY.fullmatch(p) for p in parts):
        raise StorageError(
            f"invalid storage {what} {key[:80]!r}",
            hint="use '/'-separated names of letters, digits and . _ @ = + - "
            "(each starting with a letter or digit)",
        )
    return key


@dataclass(frozen=True)
class BlobStat:
    """What a store says about one stored blob.

    Attributes:
        key: the blob's key.
        size: its length in bytes.
        locked_until: ISO time until which the store itself refuses deletion
            (S3 Object Lock), or None.
    """

    key: str
    size: int
    locked_until: str | None = None


class BlobStore(Protocol):
    """Write-once byte strings under keys (sealed artifacts)."""

    url: str

    def put_if_absent(self, key: str, data: bytes) -> None:
        """Store ``data`` under a new ``key``.

        Raises:
            BlobExistsError: ``key`` already holds a blob (nothing was changed).
        """
        ...

    def get(self, key: str) -> bytes:
        """Return the blob under ``key``.

        Raises:
            StorageError: there is none (the message names the key).
        """
        ...

    def stat(self, key: str) -> BlobStat | None:
        """Return what the store knows of ``key``, or None if absent."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield the keys under ``prefix`` (a key or a ``dir/`` prefix), sorted."""
        ...

    def delete(self, key: str) -> None:
        """Delete a blob (retention, a revoked and purged version).

        Raises:
            PolicyViolation: the store refuses (Object Lock retention).
            StorageError: there is no such blob.
        """
        ...


@dataclass(frozen=True)
class Record:
    """One catalogue record: opaque bytes and a version that grows by one per write."""

    collection: str
    key: str
    value: bytes
    version: int


class MetaStore(Protocol):
    """Small records in named collections, updated by compare-and-set."""

    url: str

    def get(self, collection: str, key: str) -> Record | None:
        """Return the record, or None."""
        ...

    def put(self, collection: str, key: str, value: bytes, *, expect: int) -> Record:
        """Write a record if its current version is ``expect`` (0: it must not exist yet).

        Immutable records (a model version) are written once with ``expect=0``;
        mutable ones (an alias, the registry snapshot) pass the version they read.

        Raises:
            ConflictError: the record's version is not ``expect``.
        """
        ...

    def list(self, collection: str, prefix: str = "") -> list[Record]:
        """Return the records of ``collection`` whose key starts with ``prefix``, by key."""
        ...

    def delete(self, collection: str, key: str, *, expect: int) -> None:
        """Delete a record if its version is ``expect``.

        Raises:
            ConflictError: it is absent or its version is not ``expect``.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


S = TypeVar("S")
#: An adapter's opener: the URL and the workspace root (for relative local paths).
Opener = Callable[[str, Path], S]


class Adapters(Generic[S]):
    """A registry of store adapters by URL scheme that refuses duplicates."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._openers: dict[str, Opener[S]] = {}

    def register(self, scheme: str, opener: Opener[S]) -> None:
        """Register ``opener`` for URLs of ``scheme``.

        Raises:
            StorageError: ``scheme`` is already registered.
        """
        if scheme in self._openers:
            raise StorageError(f"{self.kind} adapter {scheme!r} is already registered")
        self._openers[scheme] = opener

    def schemes(self) -> list[str]:
        """The registered schemes, sorted."""
        return sorted(self._openers)

    def open(self, url: str, *, root: Path) -> S:
        """Open the store ``url`` names (relative local paths are under ``root``).

        Raises:
            ConfigError: the scheme is unknown.
        """
        from sealtune.errors import ConfigError

        scheme = urlsplit(url).scheme
        opener = self._openers.get(scheme)
        if opener is None:
            raise ConfigError(
                f"{self.kind} URL {redact_url(url)!r} has no known scheme",
                hint=f"use one of: {', '.join(s + '://' for s in self.schemes())}",
            )
        return opener(url, root)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def sha256_hex(data: bytes) -> str:
    """The SHA-256 digest of ``data`` as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def get_verified(store: BlobStore, key: str, sha256: str) -> bytes:
    """Return the blob under ``key`` if it is present and hashes to ``sha256``.

    Raises:
        IntegrityError: the blob is missing or its digest differs (names the key and store).
    """
    try:
        data = store.get(key)
    except StorageError as exc:
        raise IntegrityError(
            f"{key} is missing from {redact_url(store.url)}",
            hint="the catalogue records it: restore it from a backup or an Object Lock version",
        ) from exc
    if not hmac.compare_digest(sha256_hex(data), sha256):
        raise IntegrityError(
            f"{key} in {redact_url(store.url)} does not match its recorded digest",
            hint="the stored bytes were changed: keep the store as evidence",
        )
    return data


#: Blob store adapters by URL scheme.
BLOB_STORES: Adapters[BlobStore] = Adapters("blob store")
#: Metadata store adapters by URL scheme.
META_STORES: Adapters[MetaStore] = Adapters("metadata store")
