"""Stores under test, one per adapter, each with a backdoor that edits it as an attacker would.

The conformance tests run unchanged over every adapter of a port: ``file`` and
``s3`` (moto's S3 server, a test double) for blobs; ``sqlite`` and
``postgresql`` (a real throwaway cluster) for metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sealtune.storage import BlobStore, MetaStore, open_blob_store, open_meta_store


@dataclass
class Backdoor:
    """Direct access to a blob store's bytes, bypassing the adapter's checks."""

    overwrite: Callable[[str, bytes], None]
    remove: Callable[[str], None]


@pytest.fixture(params=["file", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[BlobStore, Backdoor]:
    if request.param == "file":
        store = open_blob_store("file:blobs", root=tmp_path)
        root = tmp_path / "blobs"
        return store, Backdoor(lambda k, d: (root / k).write_bytes(d),
                               lambda k: (root / k).unlink())
    import boto3

    bucket = request.getfixturevalue("s3_bucket")
    client = boto3.client("s3")
    store = open_blob_store(f"s3://{bucket}/ws1", root=tmp_path)
    return store, Backdoor(
        lambda k, d: client.put_object(Bucket=bucket, Key=f"ws1/{k}", Body=d),
        lambda k: client.delete_object(Bucket=bucket, Key=f"ws1/{k}"))


@pytest.fixture(params=["sqlite", "postgresql"])
def meta_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/meta.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def meta(meta_url: str, tmp_path: Path) -> Iterator[MetaStore]:
    store = open_meta_store(meta_url, root=tmp_path)
    yield store
    store.close()
