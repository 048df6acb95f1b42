"""Opening the keyring file with an already-derived key (the ``sealtune unlock`` path)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from sealtune.errors import IntegrityError
from sealtune.keys.keyfile import KdfParams, KeyFile

FAST = KdfParams.unsafe_fast()


@pytest.fixture
def keyfile(tmp_path: Path, passphrase: str) -> KeyFile:
    kf = KeyFile.create(tmp_path / "keyring.sealed", passphrase, kdf=FAST)
    kf.put("local", "k", {"v": 1})
    return kf


def test_the_derived_key_opens_it_and_writes_stay_readable(
        keyfile: KeyFile, tmp_path: Path, passphrase: str) -> None:
    path = tmp_path / "keyring.sealed"
    asked: list[str] = []
    key = keyfile.master_key()
    opened = KeyFile.open_with_key(path, lambda kdf_id: asked.append(kdf_id) or key)
    assert opened is not None and asked == [keyfile.kdf_id]
    assert opened.get("local", "k") == {"v": 1}
    opened.put("local", "k2", {"v": 2})
    assert KeyFile.open(path, passphrase).get("local", "k2") == {"v": 2}
    assert passphrase.encode() not in key and len(key) == 32


def test_no_key_is_none_and_a_wrong_key_fails_closed(keyfile: KeyFile, tmp_path: Path) -> None:
    path = tmp_path / "keyring.sealed"
    assert KeyFile.open_with_key(path, lambda kdf_id: None) is None
    with pytest.raises(IntegrityError, match="wrong passphrase or the file was tampered"):
        KeyFile.open_with_key(path, lambda kdf_id: secrets.token_bytes(32))
    for size in (0, 5, 16, 33):  # garbage of any length fails the same way, never a crash
        with pytest.raises(IntegrityError):
            KeyFile.open_with_key(path, lambda kdf_id, n=size: b"\x01" * n)


def test_the_kdf_id_follows_salt_and_parameters(keyfile: KeyFile, tmp_path: Path,
                                                passphrase: str) -> None:
    again = KeyFile.open(tmp_path / "keyring.sealed", passphrase)
    assert again.kdf_id == keyfile.kdf_id and len(keyfile.kdf_id) == 32
    other = KeyFile.create(tmp_path / "other.sealed", passphrase, kdf=FAST)
    assert other.kdf_id != keyfile.kdf_id  # same passphrase, new salt
    assert other.master_key() != keyfile.master_key()
    # The id is computed from the header, which is authenticated: an edited
    # header asks for another key and the right key then fails closed.
    path = tmp_path / "keyring.sealed"
    body = json.loads(path.read_text())
    body["header"]["kdf"]["iterations"] += 1
    path.write_text(json.dumps(body))
    asked: list[str] = []
    with pytest.raises(IntegrityError):
        KeyFile.open_with_key(path, lambda k: asked.append(k) or keyfile.master_key())
    assert asked and asked[0] != keyfile.kdf_id
