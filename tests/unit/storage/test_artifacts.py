"""Publishing sealed directories: write-once, resumable, and every mutation named."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from sealtune.errors import ConflictError, IntegrityError
from sealtune.storage.artifacts import (
    current_generation,
    fetch_dir,
    generations,
    prune_generations,
    publish_dir,
    republish_dir,
    verify_published,
)


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    d = tmp_path / "work" / "m1"
    (d / "sub").mkdir(parents=True)
    (d / "model.sealed").write_bytes(b"S" * 5000)
    (d / "model.json").write_text('{"name": "m1"}')
    (d / "sub" / "tok.sealed").write_bytes(b"T" * 10)
    (d / ".lock").write_bytes(b"")  # dot-files are never published
    return d


def test_publish_verify_fetch_round_trip(blobs: Any, meta: Any, artifact: Path,
                                         tmp_path: Path) -> None:
    store, _ = blobs
    publish_dir(store, meta, collection="models", name="m1", directory=artifact)
    assert list(store.list("models/m1/")) == ["models/m1/model.json", "models/m1/model.sealed",
                                              "models/m1/sub/tok.sealed"]
    assert verify_published(store, meta, collection="models", name="m1") == []
    out = tmp_path / "restored"
    fetch_dir(store, meta, collection="models", name="m1", directory=out)
    assert (out / "sub" / "tok.sealed").read_bytes() == b"T" * 10
    assert (out / "model.sealed").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConflictError):  # a second publication of the name is refused
        publish_dir(store, meta, collection="models", name="m1", directory=artifact)


def test_an_interrupted_publication_completes_on_retry(blobs: Any, meta: Any,
                                                       artifact: Path) -> None:
    store, _ = blobs
    store.put_if_absent("models/m1/model.json", (artifact / "model.json").read_bytes())
    assert meta.get("models", "m1") is None  # cut off: blobs without a record
    publish_dir(store, meta, collection="models", name="m1", directory=artifact)
    assert verify_published(store, meta, collection="models", name="m1") == []


def test_a_foreign_blob_under_the_name_is_refused(blobs: Any, meta: Any,
                                                  artifact: Path) -> None:
    store, _ = blobs
    store.put_if_absent("models/m1/model.json", b"planted")
    with pytest.raises(IntegrityError, match="already holds other bytes"):
        publish_dir(store, meta, collection="models", name="m1", directory=artifact)
    assert meta.get("models", "m1") is None


def test_every_mutation_is_named(blobs: Any, meta: Any, artifact: Path, tmp_path: Path) -> None:
    store, backdoor = blobs
    publish_dir(store, meta, collection="models", name="m1", directory=artifact)
    data = bytearray(store.get("models/m1/model.sealed"))
    data[4321] ^= 0x80
    backdoor.overwrite("models/m1/model.sealed", bytes(data))
    backdoor.remove("models/m1/sub/tok.sealed")
    backdoor.overwrite("models/m1/extra.sealed", b"added")
    assert verify_published(store, meta, collection="models", name="m1") == [
        "models/m1/model.sealed: does not match its recorded digest",
        "models/m1/sub/tok.sealed: missing",
        "models/m1/extra.sealed: not listed in the catalogue (added)"]
    out = tmp_path / "restored"
    with pytest.raises(IntegrityError, match=r"model\.sealed: does not match .*and 2 more"):
        fetch_dir(store, meta, collection="models", name="m1", directory=out)
    assert not out.exists()  # nothing written


def test_an_edited_or_missing_record_is_an_integrity_error(blobs: Any, meta: Any,
                                                           artifact: Path) -> None:
    store, _ = blobs
    with pytest.raises(IntegrityError, match="not in the catalogue"):
        verify_published(store, meta, collection="models", name="m1")
    rec = publish_dir(store, meta, collection="models", name="m1", directory=artifact)
    meta.put("models", "m1", b"{not json", expect=rec.version)
    with pytest.raises(IntegrityError, match="malformed"):
        verify_published(store, meta, collection="models", name="m1")


def test_a_new_generation_moves_the_record_and_leaves_the_old_untouched(
        blobs: Any, meta: Any, artifact: Path, tmp_path: Path) -> None:
    store, backdoor = blobs
    first = publish_dir(store, meta, collection="models", name="m1", directory=artifact)
    assert current_generation(first) == 1
    (artifact / "model.sealed").write_bytes(b"R" * 5000)  # a re-wrapped copy
    # A cut-off earlier attempt left generation 2 half-written: it is never reused.
    store.put_if_absent("models/m1@g2/model.json", b"orphan")
    moved = republish_dir(store, meta, collection="models", name="m1", directory=artifact,
                          record=first, describe=lambda data: [f"k@{data[:1].decode()}"])
    assert current_generation(moved) == 3
    assert generations(store, collection="models", name="m1") == [1, 2, 3]
    assert store.get("models/m1/model.sealed") == b"S" * 5000  # write-once: untouched
    out = tmp_path / "restored"
    fetch_dir(store, meta, collection="models", name="m1", directory=out)
    assert (out / "model.sealed").read_bytes() == b"R" * 5000
    assert verify_published(store, meta, collection="models", name="m1") == []
    with pytest.raises(ConflictError):  # a second rotation that read the old record loses
        republish_dir(store, meta, collection="models", name="m1", directory=artifact,
                      record=first)
    # verify checks the current generation, naming its key.
    backdoor.overwrite("models/m1@g3/model.sealed", b"X" * 5000)
    assert verify_published(store, meta, collection="models", name="m1") == [
        "models/m1@g3/model.sealed: does not match its recorded digest"]
    assert prune_generations(store, meta, collection="models", name="m1") == []
    assert generations(store, collection="models", name="m1") == [3]


def test_object_lock_keeps_superseded_generations(meta: Any, artifact: Path,
                                                  tmp_path: Path, s3_env: str) -> None:
    import boto3

    from sealtune.storage import open_blob_store

    bucket = f"lock-{secrets.token_hex(6)}"
    boto3.client("s3").create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = open_blob_store(f"s3://{bucket}/ws", root=tmp_path)
    first = publish_dir(store, meta, collection="models", name="m1", directory=artifact)
    republish_dir(store, meta, collection="models", name="m1", directory=artifact,
                  record=first)
    kept = prune_generations(store, meta, collection="models", name="m1")
    assert kept == ["models/m1/model.json", "models/m1/model.sealed", "models/m1/sub/tok.sealed"]
    assert generations(store, collection="models", name="m1") == [1, 2]
    assert verify_published(store, meta, collection="models", name="m1") == []
