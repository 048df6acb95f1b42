"""Workspace rotation: every known file re-wrapped, checked retirement, links, kills, destroy.

Real workspaces, real keyrings and real sealed files; the kill is a real
SIGKILL of a child process at a chosen point of the re-wrap pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sealtune.errors import KeyDestroyedError, KeyInUseError, UsageError
from sealtune.keys.content import content_digest
from sealtune.keys.files import describe_file, open_file, seal_file
from sealtune.keys.inventory import known_files
from sealtune.keys.keyfile import KdfParams
from sealtune.keys.rotation import destroy_impact, retire_checked, rotate_workspace
from sealtune.keys.versions import LEASES, lease
from sealtune.workspace import Workspace


def seal(ws: Workspace, dst: Path, *keys: str, data: bytes = b"payload") -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    src = dst.with_name(dst.name + ".in")
    src.write_bytes(data)
    seal_file(src, dst, keys=ws.keys, key_names=list(keys) or ["k1"])
    src.unlink()
    return dst


def versions(path: Path) -> list[str]:
    return [f"{e.kek_uri}@{e.version}" for e in describe_file(path).entries]


def opens(ws: Workspace, path: Path, out: Path) -> bool:
    open_file(path, out, keys=ws.keys)
    out.unlink()
    return True


def test_rotation_rewraps_workspace_and_remembered_files_and_keeps_digests(
        workspace: Workspace, tmp_path: Path) -> None:
    ws = workspace
    inside = [seal(ws, ws.root / "datasets" / "d" / "data.jsonl.sealed"),
              seal(ws, ws.root / "models" / "m" / "w.safetensors.sealed"),
              seal(ws, ws.root / "jobs" / "job-x" / "checkpoints" / "ckpt-0000000001.sealed")]
    elsewhere = seal(ws, tmp_path / "outside" / "records.sealed")  # remembered by seal_file
    other = seal(ws, ws.root / "models" / "m" / "other.sealed", "k2")
    digests = {p: content_digest(p) for p in [*inside, elsewhere]}

    report = rotate_workspace(ws, "k1", retire_old=True)
    assert report.key.current == 2 and report.key.versions == (2,) and report.retired
    assert sorted(report.rewrapped) == sorted([*inside, elsewhere])
    assert not report.failed and not report.forced
    for path in [*inside, elsewhere]:
        assert versions(path) == ["local:k1@2"]
        assert content_digest(path) == digests[path]
        assert opens(ws, path, tmp_path / "o")
    assert versions(other) == ["local:k2@1"]
    rotated = [e for e in ws.ledger.entries(action="file.rewrap")]
    assert len(rotated) == 4


def test_retire_refuses_while_a_known_file_depends_on_an_old_version(
        workspace: Workspace, tmp_path: Path) -> None:
    ws = workspace
    stale = seal(ws, ws.root / "datasets" / "d" / "data.jsonl.sealed")
    ws.keys.rotate("k1")  # a bare rotation: nothing re-wrapped
    with pytest.raises(KeyInUseError) as info:
        retire_checked(ws, "k1", below=2)
    assert str(stale) in info.value.message and "k1 v1" in info.value.message
    assert "--force" in str(info.value.hint)
    assert ws.keys.info("k1").versions == (1, 2)  # nothing retired
    assert opens(ws, stale, tmp_path / "o")

    with pytest.warns(UserWarning, match="forced retire"):
        left = retire_checked(ws, "k1", below=2, force=True)
    assert [str(stale) in line for line in left] == [True]
    forced = list(ws.ledger.entries(action="key.unsafe_force_retire"))
    assert len(forced) == 1 and forced[0].details == {"below": 2, "dependents": 1}
    with pytest.raises(KeyDestroyedError) as gone:
        open_file(stale, tmp_path / "o", keys=ws.keys)
    assert gone.value.exit_code == 3 and "retired" in gone.value.message
    assert not (tmp_path / "o").exists()


def test_rewrap_dir_never_follows_links_out_of_it(workspace: Workspace, tmp_path: Path) -> None:
    ws = workspace
    given = tmp_path / "given"
    inner = seal(ws, given / "a.sealed")
    (given / "sub").mkdir()
    far = tmp_path / "far"
    far.mkdir()
    # Copies are files the workspace never saw (seal_file remembered the originals only).
    target = far / "target.sealed"
    target.write_bytes(inner.read_bytes())
    (far / "deep").mkdir()
    deep = far / "deep" / "deep.sealed"
    deep.write_bytes(inner.read_bytes())
    copy = given / "sub" / "copy.sealed"
    copy.write_bytes(inner.read_bytes())
    (given / "link.sealed").symlink_to(target)
    (given / "linkdir").symlink_to(far / "deep", target_is_directory=True)

    rotate_workspace(ws, "k1", dirs=[given])
    assert versions(inner) == versions(copy) == ["local:k1@2"]
    assert versions(target) == versions(deep) == ["local:k1@1"]  # behind links: untouched
    listed = {f.path for f in known_files(ws.root, given=[given])}
    assert target not in listed and deep not in listed and copy in listed
    with pytest.raises(UsageError, match="not a directory"):
        rotate_workspace(ws, "k1", dirs=[tmp_path / "missing"])


def test_a_running_job_lease_blocks_retire_and_a_stale_one_does_not(
        workspace: Workspace) -> None:
    ws = workspace
    ws.keys.rotate("k1")
    with lease(ws.root, "job job-1", ["local:k1@1"]), pytest.raises(KeyInUseError) as info:
        retire_checked(ws, "k1", below=2)
    assert "job job-1 (running" in info.value.message
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (ws.root / LEASES / "stale.json").write_text(json.dumps(
        {"label": "job dead", "pid": int(dead), "start": "1", "entries": ["local:k1@1"]}))
    retire_checked(ws, "k1", below=2)
    assert ws.keys.info("k1").versions == (2,)


_KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from sealtune.keys.rotation import rotate_workspace
    from sealtune.workspace import Workspace

    ws = Workspace.open(Path(sys.argv[1]), passphrase=sys.argv[2])
    seen = []

    def hook(path):
        seen.append(path)
        if len(seen) == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    rotate_workspace(ws, "k1", on_file=hook)
""")


def test_a_rotation_killed_midway_leaves_every_file_open_and_a_rerun_finishes_it(
        workspace: Workspace, tmp_path: Path, passphrase: str) -> None:
    ws = workspace
    files = [seal(ws, ws.root / "datasets" / "d" / f"f{i}.sealed", data=os.urandom(3000))
             for i in range(5)]
    digests = [content_digest(p) for p in files]
    child = subprocess.run([sys.executable, "-c", _KILLER, str(ws.root), passphrase],
                           capture_output=True, timeout=120, check=False)
    assert child.returncode == -9, child.stderr
    states = sorted(versions(p)[0] for p in files)
    assert states[0] == "local:k1@1" and states[-1] == "local:k1@2"  # killed midway
    for path in files:
        assert opens(ws, path, tmp_path / "o")

    report = rotate_workspace(ws, "k1", retire_old=True)
    assert report.resumed and report.key.current == 2  # finished, no third version
    assert report.key.versions == (2,)
    assert [versions(p) for p in files] == [["local:k1@2"]] * 5
    assert [content_digest(p) for p in files] == digests
    again = rotate_workspace(ws, "k1")
    assert not again.resumed and again.key.current == 3  # completed: a new rotation


def test_destroy_impact_lists_what_another_key_still_opens(workspace: Workspace) -> None:
    ws = workspace
    only = seal(ws, ws.root / "datasets" / "d" / "only.sealed", "k2")
    both = seal(ws, ws.root / "datasets" / "d" / "both.sealed", "k2", "k1")
    seal(ws, ws.root / "datasets" / "d" / "none.sealed", "k1")
    impact = destroy_impact(ws, "k2")
    assert impact.shredded == (only,)
    assert impact.still_open == ((both, ("local:k1",)),)


def test_rotating_a_destroyed_key_fails_with_exit_3(workspace: Workspace) -> None:
    workspace.keys.destroy("k2")
    with pytest.raises(KeyDestroyedError) as info:
        rotate_workspace(workspace, "k2")
    assert info.value.exit_code == 3 and info.value.hint


def test_other_workspace_passphrase_unused(tmp_path: Path) -> None:
    """A fresh workspace with no sealed file rotates and retires cleanly (nothing to list)."""
    ws = Workspace.init(tmp_path / "w2", passphrase="pp", kdf=KdfParams.unsafe_fast())
    try:
        report = rotate_workspace(ws, "platform", retire_old=True)
        assert report.rewrapped == [] and report.key.versions == (2,)
    finally:
        ws.close()
