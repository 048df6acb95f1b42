"""A destroyed (or retired) local key stays refused when an older keyring.sealed is restored.

And the honest limit: restoring the tombstone file together with the keyring
brings the key back (a file on the host cannot shred).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sealtune.cli import main as cli_main
from sealtune.errors import KeyDestroyedError
from sealtune.keys.files import open_file, seal_file
from sealtune.keys.tombstones import TOMBSTONES
from sealtune.workspace import Workspace


def _sealed(ws: Workspace, tmp_path: Path, key: str) -> Path:
    src = tmp_path / "in"
    src.write_bytes(b"records of the customer")
    dst = tmp_path / f"{key}.sealed"
    seal_file(src, dst, keys=ws.keys, key_names=[key])
    return dst


def _reopen(ws: Workspace, passphrase: str) -> Workspace:
    ws.close()
    return Workspace.open(ws.root, passphrase=passphrase)


def test_a_restored_keyring_does_not_resurrect_a_destroyed_key(
        workspace: Workspace, tmp_path: Path, passphrase: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    sealed = _sealed(workspace, tmp_path, "k2")
    backup = tmp_path / "keyring.backup"
    shutil.copy2(workspace.keyfile_path, backup)
    workspace.keys.destroy("k2")
    shutil.copy2(backup, workspace.keyfile_path)  # the backup comes back
    ws = _reopen(workspace, passphrase)
    try:
        assert ws.keyfile.get("local", "k2")["keys"]  # the material is in the file again
        assert ws.keys.info("k2").state == "destroyed"
        with pytest.raises(KeyDestroyedError) as info:
            open_file(sealed, tmp_path / "out", keys=ws.keys)
        assert "restored from a backup" in info.value.message
        assert not (tmp_path / "out").exists()
        with pytest.raises(KeyDestroyedError):
            ws.keys.rotate("k2")
        src = tmp_path / "in"
        with pytest.raises(KeyDestroyedError):
            seal_file(src, tmp_path / "new.sealed", keys=ws.keys, key_names=["k2"])
        monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
        capsys.readouterr()
        code = cli_main(["unseal", str(sealed), str(tmp_path / "o"), "--home", str(ws.root)])
        assert code == 3 and "hint:" in capsys.readouterr().err
    finally:
        ws.close()


def test_a_restored_keyring_does_not_resurrect_a_retired_version(
        workspace: Workspace, tmp_path: Path, passphrase: str) -> None:
    sealed = _sealed(workspace, tmp_path, "k1")
    backup = tmp_path / "keyring.backup"
    shutil.copy2(workspace.keyfile_path, backup)
    workspace.keys.rotate("k1")
    workspace.keys.retire("k1", below=2)
    shutil.copy2(backup, workspace.keyfile_path)  # v1 only, as before the rotation
    ws = _reopen(workspace, passphrase)
    try:
        assert ws.keys.info("k1").versions == ()
        with pytest.raises(KeyDestroyedError, match="retired"):
            open_file(sealed, tmp_path / "out", keys=ws.keys)
        with pytest.raises(KeyDestroyedError, match="retired"):  # nor wraps under it
            seal_file(tmp_path / "in", tmp_path / "again.sealed", keys=ws.keys,
                      key_names=["k1"])
    finally:
        ws.close()


def test_restoring_the_tombstones_too_brings_the_key_back(
        workspace: Workspace, tmp_path: Path, passphrase: str) -> None:
    """The documented limit: whoever restores both files gets the key (only an HSM shreds)."""
    sealed = _sealed(workspace, tmp_path, "k2")
    tombstones = workspace.root / TOMBSTONES
    backup = tmp_path / "keyring.backup"
    shutil.copy2(workspace.keyfile_path, backup)
    assert not tombstones.exists()
    workspace.keys.destroy("k2")
    assert tombstones.is_file()
    shutil.copy2(backup, workspace.keyfile_path)
    tombstones.unlink()  # the older copy of the workspace had no tombstone file
    ws = _reopen(workspace, passphrase)
    try:
        open_file(sealed, tmp_path / "out", keys=ws.keys)
        assert (tmp_path / "out").read_bytes() == b"records of the customer"
        destroyed = list(ws.ledger.entries(action="key.destroy"))
        assert [e.resource for e in destroyed] == ["local:k2"]  # the audit log still says so
    finally:
        ws.close()
