"""The registry's store (immutable blobs and versions) and its signed snapshots."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sealtune.errors import IntegrityError
from sealtune.registry.snapshot import SeenVersion, open_snapshot, sign_snapshot
from sealtune.registry.store import RegistryStore, VersionExists, digest_bytes


def test_a_blob_is_put_once_and_a_changed_blob_is_caught(tmp_path: Path) -> None:
    store = RegistryStore(tmp_path / "registry")
    digest = store.put_blob(b"weights")
    path = store.blob_path(digest)
    inode = path.stat().st_ino
    assert store.put_blob(b"weights") == digest == digest_bytes(b"weights")
    assert path.stat().st_ino == inode  # never rewritten
    assert store.get_blob(digest) == b"weights"
    path.chmod(0o600)
    path.write_bytes(b"weightz")
    with pytest.raises(IntegrityError, match=str(path)):
        store.get_blob(digest)
    path.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        store.get_blob(digest)


def test_a_version_cannot_be_written_twice_nor_updated_nor_deleted(tmp_path: Path) -> None:
    store = RegistryStore(tmp_path / "registry")
    with store.transaction() as db:
        store.insert_version(db, "bot", 1, "{}", "now")
    with pytest.raises(VersionExists, match="bot@v1 already exists"), store.transaction() as db:
        store.insert_version(db, "bot", 1, '{"other": 1}', "now")
    db = sqlite3.connect(store.db_path)
    for sql in ("UPDATE versions SET record = 'x'", "DELETE FROM versions"):
        with pytest.raises(sqlite3.IntegrityError, match="immutable"):
            db.execute(sql)
    assert store.versions() == [("bot", 1, "{}")]


def test_a_snapshot_is_refused_when_forged_replayed_or_expired(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    blob = sign_snapshot({"models": {}}, version=3, key=key)
    assert open_snapshot(blob, key.public_key(), what="s").version == 3
    forged = blob.replace(b'"signature":"', b'"signature":"A', 1)
    with pytest.raises(IntegrityError):
        open_snapshot(forged, key.public_key(), what="s")
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(IntegrityError, match="does not verify"):
        open_snapshot(blob, other.public_key(), what="s")
    with pytest.raises(IntegrityError, match="older than snapshot 4 already seen"):
        open_snapshot(blob, key.public_key(), what="s", min_version=4)
    old = sign_snapshot({"models": {}}, version=5, key=key,
                        now=datetime.now(UTC) - timedelta(days=8))
    with pytest.raises(IntegrityError, match="expired"):
        open_snapshot(old, key.public_key(), what="s")


def test_the_seen_version_only_moves_forward(tmp_path: Path) -> None:
    seen = SeenVersion(tmp_path / "trust.json")
    assert seen.read() == 0
    seen.advance(4)
    seen.advance(2)
    assert seen.read() == 4
