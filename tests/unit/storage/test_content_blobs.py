"""Content-addressed sealed blobs with wrap generations: write-once kept through a rotation."""

from __future__ import annotations

import hashlib
import secrets
import threading
from pathlib import Path
from typing import Any

import pytest

from sealtune.errors import IntegrityError, SealtuneError, StorageError
from sealtune.keys.content import content_digest
from sealtune.keys.file_header import rewrap_file
from sealtune.keys.files import open_file, seal_file
from sealtune.storage.content import ContentBlobs
from sealtune.workspace import Workspace

HEX = hashlib.sha256(b"content").hexdigest()


def test_generations_are_added_never_overwritten_and_read_newest_first(blobs: Any) -> None:
    store, _ = blobs
    content = ContentBlobs(store, area="registry")
    assert content.put(HEX, b"wrap-1") == 1
    assert content.put(HEX, b"wrap-1 again") == 1  # stored already: not written twice
    assert content.add_generation(HEX, b"wrap-2") == 2
    assert store.get(f"registry/content-sha256/{HEX}/g1") == b"wrap-1"
    assert content.read(HEX, check=lambda data: True) == (2, b"wrap-2")
    # A newer generation the check rejects (e.g. a stale wrap planted on top) falls back.
    assert content.add_generation(HEX, b"planted") == 3
    assert content.read(HEX, check=lambda data: data != b"planted") == (2, b"wrap-2")
    with pytest.raises(IntegrityError, match="g1, g2, g3 all fail"):
        content.read(HEX, check=lambda data: False)
    assert content.prune(HEX, keep=2) == []
    assert content.generations(HEX) == [2]
    with pytest.raises(IntegrityError, match="no generation g7"):
        content.prune(HEX, keep=7)
    with pytest.raises(IntegrityError, match="missing"):
        content.read(hashlib.sha256(b"other").hexdigest(), check=lambda data: True)
    with pytest.raises(IntegrityError, match="not a content digest"):
        content.read("../" + HEX[3:], check=lambda data: True)


def test_racing_rotations_take_distinct_generations(blobs: Any) -> None:
    store, _ = blobs
    content = ContentBlobs(store, area="registry")
    content.put(HEX, b"wrap-1")
    numbers: list[int] = []
    errors: list[Exception] = []

    def rotate(i: int) -> None:
        try:
            numbers.append(content.add_generation(HEX, f"wrap-{i}".encode()))
        except StorageError as exc:  # more racers than retries: refused, never overwritten
            errors.append(exc)

    threads = [threading.Thread(target=rotate, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(numbers)) == len(numbers) and len(numbers) + len(errors) == 4
    assert content.generations(HEX) == [1, *sorted(numbers)]


def test_object_lock_keeps_pruned_generations(tmp_path: Path, s3_env: str) -> None:
    import boto3

    from sealtune.storage import open_blob_store

    bucket = f"lock-{secrets.token_hex(6)}"
    boto3.client("s3").create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    content = ContentBlobs(open_blob_store(f"s3://{bucket}/ws", root=tmp_path), area="registry")
    content.put(HEX, b"wrap-1")
    content.add_generation(HEX, b"wrap-2")
    assert content.prune(HEX, keep=2) == [f"registry/content-sha256/{HEX}/g1"]
    assert content.generations(HEX) == [1, 2]


def test_a_real_rotation_and_retirement_through_generations(
        blobs: Any, workspace: Workspace, tmp_path: Path) -> None:
    """Sealed under k1 v1, re-wrapped under v2 as g2, v1 retired: g2 opens, g1 no longer."""
    store, _ = blobs
    content = ContentBlobs(store, area="registry")
    plain, sealed = tmp_path / "weights.bin", tmp_path / "weights.sealed"
    plain.write_bytes(secrets.token_bytes(4096))
    seal_file(plain, sealed, keys=workspace.keys, key_names=["k1"])
    hexd = content_digest(sealed)
    content.put(hexd, sealed.read_bytes())

    def opens(data: bytes) -> bool:
        probe = tmp_path / f"probe-{secrets.token_hex(4)}.sealed"
        probe.write_bytes(data)
        try:
            if content_digest(probe) != hexd:
                return False
            open_file(probe, tmp_path / f"{probe.name}.out", keys=workspace.keys)
            return True
        except SealtuneError:  # any failure to open is a rejection here
            return False

    workspace.keys.rotate("k1")
    rewrap_file(sealed, keys=workspace.keys, key_name="k1")
    assert content_digest(sealed) == hexd  # the name stays true
    assert content.add_generation(hexd, sealed.read_bytes()) == 2
    workspace.keys.retire("k1", below=2)
    assert content.read(hexd, check=opens)[0] == 2
    # Planting the old-wrapped g1 again on top: it no longer opens, so g2 is still read.
    content.add_generation(hexd, store.get(f"registry/content-sha256/{hexd}/g1"))
    assert content.read(hexd, check=opens)[0] == 2
    assert content.prune(hexd, keep=2) == []
    assert content.generations(hexd) == [2]
