"""One conformance suite for every BlobStore and MetaStore adapter."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from sealtune.errors import (
    BlobExistsError,
    ConfigError,
    ConflictError,
    IntegrityError,
    StorageError,
)
from sealtune.storage import get_verified, open_blob_store, open_meta_store, sha256_hex


def test_blob_round_trip_stat_and_list(blobs: Any) -> None:
    store, _ = blobs
    store.put_if_absent("models/bot/v1/model.sealed", b"sealed-bytes")
    store.put_if_absent("models/bot/v2/model.sealed", b"x" * 70_000)
    store.put_if_absent("datasets/d1.sealed", b"d")
    assert store.get("models/bot/v1/model.sealed") == b"sealed-bytes"
    assert store.stat("models/bot/v2/model.sealed").size == 70_000
    assert store.stat("models/bot/v3/model.sealed") is None
    assert list(store.list("models/")) == ["models/bot/v1/model.sealed",
                                           "models/bot/v2/model.sealed"]
    assert list(store.list()) == ["datasets/d1.sealed", "models/bot/v1/model.sealed",
                                  "models/bot/v2/model.sealed"]


def test_a_second_write_of_a_key_is_refused_and_changes_nothing(blobs: Any) -> None:
    store, _ = blobs
    store.put_if_absent("v/1", b"first")
    with pytest.raises(BlobExistsError, match="v/1 already exists"):
        store.put_if_absent("v/1", b"second")
    assert store.get("v/1") == b"first"


def test_racing_writers_of_one_key_exactly_one_wins(blobs: Any) -> None:
    store, _ = blobs
    results: list[str] = []

    def write(i: int) -> None:
        try:
            store.put_if_absent("race/key", f"writer-{i}".encode())
            results.append(f"won-{i}")
        except BlobExistsError:
            results.append("lost")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r.startswith("won")]
    assert len(results) == 8 and len(winners) == 1
    assert store.get("race/key") == f"writer-{winners[0][4:]}".encode()


def test_delete_and_missing_keys(blobs: Any) -> None:
    store, _ = blobs
    store.put_if_absent("gone", b"1")
    store.delete("gone")
    assert store.stat("gone") is None
    with pytest.raises(StorageError, match="gone not found"):
        store.get("gone")
    with pytest.raises(StorageError, match="gone not found"):
        store.delete("gone")


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", ".hidden", "a/../b", "", "a/",
                                 "sp ace", "nul\x00"])
def test_unsafe_keys_are_refused(blobs: Any, key: str) -> None:
    store, _ = blobs
    with pytest.raises(StorageError, match="invalid storage key"):
        store.put_if_absent(key, b"x")


@pytest.mark.parametrize("offset", [0, 5, 69_999])
def test_a_flipped_byte_is_caught_against_the_recorded_digest(blobs: Any, offset: int) -> None:
    store, backdoor = blobs
    data = bytes(range(256)) * 274 + b"tail"  # 70 148 bytes
    store.put_if_absent("m/model.sealed", data)
    digest = sha256_hex(data)
    assert get_verified(store, "m/model.sealed", digest) == data
    bad = bytearray(data)
    bad[offset] ^= 0x01
    backdoor.overwrite("m/model.sealed", bytes(bad))
    with pytest.raises(IntegrityError, match=r"m/model\.sealed .* does not match"):
        get_verified(store, "m/model.sealed", digest)


def test_a_removed_object_is_caught(blobs: Any) -> None:
    store, backdoor = blobs
    store.put_if_absent("m/model.sealed", b"payload")
    backdoor.remove("m/model.sealed")
    with pytest.raises(IntegrityError, match=r"m/model\.sealed is missing"):
        get_verified(store, "m/model.sealed", sha256_hex(b"payload"))


def test_unknown_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no known scheme"):
        open_blob_store("ftp://host/x", root=tmp_path)
    with pytest.raises(ConfigError, match="no known scheme"):
        open_meta_store("mysql://host/x", root=tmp_path)


def test_meta_create_update_and_conflicts(meta: Any) -> None:
    first = meta.put("models", "bot@v1", b'{"digest":"aa"}', expect=0)
    assert first.version == 1
    with pytest.raises(ConflictError, match="models/bot@v1 is at version 1, not at version 0"):
        meta.put("models", "bot@v1", b"overwrite", expect=0)
    assert meta.put("models", "bot@v1", b"v2", expect=1).version == 2
    with pytest.raises(ConflictError):
        meta.put("models", "bot@v1", b"stale", expect=1)
    got = meta.get("models", "bot@v1")
    assert (got.value, got.version) == (b"v2", 2)
    assert meta.get("models", "nobody") is None
    assert meta.get("jobs", "bot@v1") is None  # collections are separate


def test_meta_list_by_prefix_in_key_order(meta: Any) -> None:
    for key in ("bot@v2", "bot@v10", "bot@v1", "other@v1"):
        meta.put("models", key, key.encode(), expect=0)
    meta.put("aliases", "bot", b"x", expect=0)
    assert [r.key for r in meta.list("models", "bot@")] == ["bot@v1", "bot@v10", "bot@v2"]
    assert len(meta.list("models")) == 4


def test_meta_delete_needs_the_current_version(meta: Any) -> None:
    meta.put("jobs", "j1", b"a", expect=0)
    with pytest.raises(ConflictError):
        meta.delete("jobs", "j1", expect=2)
    meta.delete("jobs", "j1", expect=1)
    assert meta.get("jobs", "j1") is None
    with pytest.raises(ConflictError, match="absent"):
        meta.delete("jobs", "j1", expect=1)


def test_racing_first_writes_from_separate_connections_one_wins(
        meta_url: str, tmp_path: Path) -> None:
    stores = [open_meta_store(meta_url, root=tmp_path) for _ in range(8)]
    won: list[int] = []

    def write(i: int) -> None:
        try:
            stores[i].put("registry", "snapshot", str(i).encode(), expect=0)
            won.append(i)
        except ConflictError:
            pass

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert stores[0].get("registry", "snapshot").value == str(won[0]).encode()
    for s in stores:
        s.close()
