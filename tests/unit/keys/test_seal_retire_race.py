"""A seal that overlaps a rotation with --retire-old: never "sealed" under a dead version.

The interleavings are forced, not hoped for: a hook runs the rotation (from
a second Workspace object, i.e. its own keyring handle and its own lock file
descriptions) at the exact point between a seal's wrap and its commit, and
a barrier holds one thread inside the commit while the other rotates.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sealtune.keys.sealing.target as target_mod
import sealtune.keys.versions as versions_mod
from sealtune.errors import KeyDestroyedError
from sealtune.keys.files import describe_file, open_file, seal_file
from sealtune.keys.rotation import rotate_workspace
from sealtune.keys.sealing import SealedWriter
from sealtune.workspace import Workspace


@pytest.fixture
def other(workspace: Workspace, passphrase: str) -> Iterator[Workspace]:
    """The same workspace opened a second time (as a concurrent process would)."""
    ws = Workspace.open(workspace.root, passphrase=passphrase)
    yield ws
    ws.close()


def test_seal_file_fails_when_its_version_is_retired_before_commit(
        workspace: Workspace, other: Workspace, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = target_mod.seal_stream

    def seal_then_rotate(*args: Any, **kwargs: Any) -> Any:
        info = real(*args, **kwargs)  # wrapped under k1 v1, not yet published
        rotate_workspace(other, "k1", retire_old=True)
        return info

    monkeypatch.setattr(target_mod, "seal_stream", seal_then_rotate)
    out = tmp_path / "out"
    out.mkdir()
    src = out / "in"
    src.write_bytes(os.urandom(10_000))
    with pytest.raises(KeyDestroyedError) as info:
        seal_file(src, out / "out.sealed", keys=workspace.keys, key_names=["k1"])
    assert info.value.exit_code == 3 and "nothing was published" in info.value.message
    assert sorted(p.name for p in out.iterdir()) == ["in"]  # no file, no temp file
    assert other.keys.info("k1").versions == (2,)


def test_sealed_writer_fails_and_deletes_its_file_when_retired_meanwhile(
        workspace: Workspace, other: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "w.sealed"
    writer = SealedWriter(path, keys=workspace.keys, key_names=["k1"])
    writer.write_line(b'{"id": "r1"}\n')
    rotate_workspace(other, "k1", retire_old=True)
    with pytest.raises(KeyDestroyedError):
        writer.close()
    assert not path.exists()


def test_a_rotation_waits_for_a_commit_in_progress_and_then_rewraps_it(
        workspace: Workspace, other: Workspace, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The seal holds the lock shared at commit; the rotation runs only after it published."""
    inside, rotating, done = threading.Event(), threading.Event(), threading.Event()
    finished_during_commit: list[bool] = []
    real_check = versions_mod.check_live

    def check_and_wait(*args: Any, **kwargs: Any) -> None:
        inside.set()  # the version lock is held shared from here to the rename
        assert rotating.wait(timeout=30)
        # Give the rotation every chance to run to its end now: it must not be able to.
        finished_during_commit.append(done.wait(timeout=2))
        real_check(*args, **kwargs)

    monkeypatch.setattr(versions_mod, "check_live", check_and_wait)
    dst = workspace.root / "datasets" / "d" / "data.sealed"
    dst.parent.mkdir(parents=True)
    src = tmp_path / "in"
    src.write_bytes(os.urandom(50_000))
    errors: list[BaseException] = []

    def rotate() -> None:
        try:
            assert inside.wait(timeout=30)
            rotating.set()
            rotate_workspace(other, "k1", retire_old=True)
            done.set()
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=rotate)
    thread.start()
    seal_file(src, dst, keys=workspace.keys, key_names=["k1"])  # published under v1
    thread.join(timeout=60)
    assert not thread.is_alive() and errors == []
    assert finished_during_commit == [False]  # the exclusive lock waited for the commit
    # The rotation ran after the publish, so its re-wrap pass found the file.
    assert [(e.kek_uri, e.version) for e in describe_file(dst).entries] == [("local:k1", 2)]
    assert other.keys.info("k1").versions == (2,)
    open_file(dst, tmp_path / "out", keys=workspace.keys)
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
