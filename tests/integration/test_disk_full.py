"""Running out of disk space names the file being written and leaves nothing half-written.

The fault injector is a real, small file system: a 64 KiB tmpfs mounted (as
root) over the directory a command writes to, unmounted afterwards. The
commands run as a user runs them (the CLI in a subprocess), except training,
which runs through ``run_job`` in its bubblewrap sandbox.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sealtune.errors import DiskFullError
from sealtune.keys.files import seal_file
from sealtune.train.config import TrainConfig
from sealtune.train.jobs import run_job
from sealtune.train.tiny import make_tiny
from sealtune.workspace import Workspace

SEALTUNE = [sys.executable, "-m", "sealtune"]
FULL = "No space left on device"


@pytest.fixture
def small_fs() -> Iterator[Callable[[Path], Path]]:
    """Mount a 64 KiB tmpfs over a directory (created if needed); unmounted at the end."""
    mounted: list[Path] = []

    def mount(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs",
                              str(path)], capture_output=True, text=True, check=False)
        assert res.returncode == 0, f"cannot mount a tmpfs (needs root): {res.stderr}"
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    base.update({"SEALTUNE_HOME": str(tmp_path / "home"), "SEALTUNE_UNSAFE_FAST_KDF": "1",
                 "SEALTUNE_PASSPHRASE": "disk-full-" + secrets.token_hex(8),
                 "TMPDIR": str(tmp_path)})
    subprocess.run([*SEALTUNE, "init"], env=base, check=True, capture_output=True, timeout=120)
    return base


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SEALTUNE, *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def _assert_full(res: subprocess.CompletedProcess[str], path: Path) -> None:
    assert res.returncode == 1, res.stderr
    first = res.stderr.strip().splitlines()[-2]
    assert first == f"error: {path}: {FULL}", res.stderr
    assert "internal error" not in res.stderr


def test_seal_and_unseal_name_the_output_file(env: dict[str, str], tmp_path: Path,
                                              small_fs: Callable[[Path], Path]) -> None:
    src = tmp_path / "input.bin"
    src.write_bytes(os.urandom(300_000))
    full = small_fs(tmp_path / "full")
    res = _run(env, "seal", str(src), str(full / "input.sealed"))
    _assert_full(res, full / "input.sealed")
    assert str(src) not in res.stderr  # the file written, not the file read
    assert list(full.iterdir()) == []  # no partial output, under any name
    sealed = tmp_path / "input.sealed"
    assert _run(env, "seal", str(src), str(sealed)).returncode == 0
    res = _run(env, "unseal", str(sealed), str(full / "plain.bin"))
    _assert_full(res, full / "plain.bin")
    assert list(full.iterdir()) == []


def test_ingest_names_the_dataset_file(env: dict[str, str], tmp_path: Path,
                                       small_fs: Callable[[Path], Path]) -> None:
    src = tmp_path / "chats.jsonl"
    with src.open("w") as fh:
        for i in range(2000):
            fh.write(json.dumps({"messages": [
                {"role": "user", "content": f"question {i} " + "words " * 30},
                {"role": "assistant", "content": f"answer {i}"}]}) + "\n")
    datasets = small_fs(Path(env["SEALTUNE_HOME"]) / "datasets")
    # In process, the error names the sealed file being written; from the data sandbox
    # (errors cross by class only), the build's sandbox directory it was writing into.
    for extra, named in ((["--no-sandbox"], ".sealed"), ([], "sandbox")):
        res = _run(env, "data", "ingest", str(src), "--name", "chats", *extra)
        assert res.returncode == 1 and f": {FULL}" in res.stderr, res.stderr
        line = next(x for x in res.stderr.splitlines() if x.startswith("error:"))
        written = Path(line.removeprefix("error: ").removesuffix(f": {FULL}"))
        assert written.parent.parent == datasets and written.name.endswith(named), line
        assert str(src) not in res.stderr
        # the build directory is gone; only the catalogue's lock file stays
        assert [p.name for p in datasets.iterdir()] == [".lock"]


def test_a_full_keyring_file_system_names_the_keyring(env: dict[str, str], tmp_path: Path,
                                                      small_fs: Callable[[Path], Path]) -> None:
    home = Path(env["SEALTUNE_HOME"])
    moved = tmp_path / "home-copy"
    home.rename(moved)
    small_fs(home)
    for name in ("config.toml", "keyring.sealed"):
        (home / name).write_bytes((moved / name).read_bytes())
    for name in ("ledger.db", "ledger.trust"):  # the audit log stays on the roomy disk
        (home / name).symlink_to(moved / name)
    before = (home / "keyring.sealed").read_bytes()
    filler = home / "filler"
    with filler.open("wb", buffering=0) as fh, pytest.raises(OSError):
        while True:
            fh.write(b"\0" * 4096)
    res = _run(env, "keys", "create", "k2")
    _assert_full(res, home / "keyring.sealed")
    assert (home / "keyring.sealed").read_bytes() == before  # the old one, intact
    assert sorted(p.name for p in home.iterdir()) == [
        "config.toml", "filler", "keyring.sealed", "keyring.sealed.lock", "ledger.db",
        "ledger.trust"]


def test_training_outputs_on_a_full_disk_name_the_job_directory(
        workspace: Workspace, tmp_path: Path, small_fs: Callable[[Path], Path]) -> None:
    """Sealed checkpoints and outputs are written from inside the sandbox, which reports
    by error class only: the job fails with a DiskFullError naming its output directory."""
    base = make_tiny(tmp_path / "base", seed=0)
    root = workspace.root / "datasets" / "d"
    root.mkdir(parents=True)
    plain = root / "data.jsonl"
    plain.write_text("".join(json.dumps({"id": f"r{i}", "line": i + 1, "messages": [
        {"role": "user", "content": f"ticket {i}"},
        {"role": "assistant", "content": f"done {i}"}]}) + "\n" for i in range(16)))
    seal_file(plain, root / "data.jsonl.sealed", keys=workspace.keys, key_names=["k1"])
    plain.unlink()
    from sealtune.data.store import sha256_file

    digest, size = sha256_file(root / "data.jsonl.sealed")
    (root / "dataset.json").write_text(json.dumps({
        "format": "sealtune.dataset/v1", "name": "d",
        "files": {"data": {"name": "data.jsonl.sealed", "sha256": digest, "size": size}}}))
    jobs = small_fs(workspace.root / "jobs")
    config = TrainConfig.from_dict({"epochs": 1, "batch_size": 4, "lr": 0.01, "seed": 1,
                                    "max_length": 32})
    began = time.monotonic()
    with pytest.raises(DiskFullError) as exc:
        run_job(workspace, dataset="d", base=base, config=config, out_name="m", threads=1)
    assert exc.value.message.startswith(str(jobs) + "/") and exc.value.message.endswith(FULL)
    assert "resume" in (exc.value.hint or "")
    assert not (workspace.root / "models" / "m").exists()
    assert time.monotonic() - began < 300
    failed = [e for e in workspace.ledger.entries() if e.action == "train.failed"]
    assert failed and failed[-1].details["error"] == "DiskFullError"
