"""Publishing sealed directories: write-once, resumable, and every mutation named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sealtune.errors import ConflictError, IntegrityError
from sealtune.storage.artifacts import fetch_dir, publish_dir, verify_published


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
