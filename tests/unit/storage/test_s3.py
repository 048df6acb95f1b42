"""The s3 adapter's own guarantees, against moto's S3 server (a test double)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sealtune.errors import ConfigError, PolicyViolation, StorageError
from sealtune.storage import open_blob_store
from sealtune.storage.s3 import S3BlobStore


@pytest.fixture
def locked_bucket(s3_env: str) -> str:
    import boto3

    name = f"lock-{secrets.token_hex(6)}"
    boto3.client("s3").create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def test_object_lock_retains_each_blob_and_refuses_its_deletion(
        locked_bucket: str, tmp_path: Path) -> None:
    store = open_blob_store(f"s3://{locked_bucket}/p?retain_days=3", root=tmp_path)
    assert isinstance(store, S3BlobStore) and store.lock_mode == "GOVERNANCE"
    store.put_if_absent("models/bot/v1", b"sealed")
    stat = store.stat("models/bot/v1")
    assert stat is not None and stat.locked_until is not None
    until = datetime.fromisoformat(stat.locked_until)
    assert timedelta(days=2) < until - datetime.now(UTC) <= timedelta(days=3)
    with pytest.raises(PolicyViolation, match="Object Lock"):
        store.delete("models/bot/v1")
    assert store.get("models/bot/v1") == b"sealed"
    assert list(store.list()) == ["models/bot/v1"]  # the probe key is not listed


def test_a_bucket_without_object_lock_is_used_without_it(s3_bucket: str, tmp_path: Path) -> None:
    store = open_blob_store(f"s3://{s3_bucket}", root=tmp_path)
    assert isinstance(store, S3BlobStore) and store.lock_mode is None
    store.put_if_absent("a", b"1")
    assert store.stat("a").locked_until is None
    assert list(store.list()) == ["a"]  # the probe cleaned up after itself


def test_a_missing_bucket_is_a_clear_error(s3_env: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot use s3://no-such-bucket"):
        open_blob_store("s3://no-such-bucket/x", root=tmp_path)


@pytest.mark.parametrize(("url", "match"), [
    ("s3://key:secret@bucket/x", "carries credentials"),
    ("s3:///x", "not an s3://BUCKET"),
    ("s3://bucket/x?acl=public", "unknown s3 URL option"),
    ("s3://bucket/x?retain_days=ten", "retain_days must be an integer"),
    ("s3://bucket/../x", "invalid storage prefix"),
])
def test_bad_urls_are_refused_before_any_request(url: str, match: str) -> None:
    with pytest.raises((ConfigError, StorageError), match=match) as info:
        S3BlobStore(url, client=object(), probe=False)
    assert "secret" not in info.value.diagnostics()
