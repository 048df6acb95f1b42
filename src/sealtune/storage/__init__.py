"""Where a workspace's state lives: the storage ports and their adapters.

:class:`BlobStore` holds sealed artifacts (write-once), :class:`MetaStore`
the catalogues (compare-and-set records). :func:`open_blob_store` and
:func:`open_meta_store` pick the adapter by URL scheme: ``file:`` and
``sqlite:`` (the embedded default), ``s3://`` (:mod:`sealtune.storage.s3`),
``postgresql://`` (:mod:`sealtune.storage.postgresql`). Adapters with heavy
dependencies are imported only when their scheme is used. What each protects
against and what it does not is stated in :mod:`sealtune.storage.base` and
each adapter.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from urllib.parse import urlsplit

from sealtune.storage.base import (
    BLOB_STORES,
    META_STORES,
    BlobStat,
    BlobStore,
    MetaStore,
    Record,
    check_key,
    get_verified,
    redact_url,
    sha256_hex,
)

# Adapters by scheme, imported on first use (boto3 and psycopg are optional extras).
_MODULES = {
    "file": "sealtune.storage.local",
    "sqlite": "sealtune.storage.sqlite",
    "s3": "sealtune.storage.s3",
    "postgresql": "sealtune.storage.postgresql",
}


def _load(url: str, registered: list[str]) -> None:
    scheme = urlsplit(url).scheme
    if scheme in _MODULES and scheme not in registered:
        importlib.import_module(_MODULES[scheme])


def open_blob_store(url: str, *, root: Path) -> BlobStore:
    """Open the blob store ``url`` names (relative ``file:`` paths are under ``root``).

    Raises:
        ConfigError: unknown scheme or invalid URL.
        StorageError: the store is unreachable or fails its start-up probe.
    """
    _load(url, BLOB_STORES.schemes())
    return BLOB_STORES.open(url, root=root)


def open_meta_store(url: str, *, root: Path) -> MetaStore:
    """Open the metadata store ``url`` names (relative ``sqlite:`` paths are under ``root``).

    Raises:
        ConfigError: unknown scheme, invalid URL, or a password in the URL.
        StorageError: the store is unreachable.
    """
    _load(url, META_STORES.schemes())
    return META_STORES.open(url, root=root)


__all__ = [
    "BLOB_STORES",
    "META_STORES",
    "BlobStat",
    "BlobStore",
    "MetaStore",
    "Record",
    "check_key",
    "get_verified",
    "open_blob_store",
    "open_meta_store",
    "redact_url",
    "sha256_hex",
]
