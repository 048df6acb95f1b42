"""kill -9 in the middle of an ingest: the build directory it leaves is sealed-only and is
removed by the next ingest, which never removes a build that is still running."""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from sealtune.data.builds import LOCK_FILE, remove_stale_builds, start_build
from sealtune.data.ingest import ingest
from sealtune.workspace import Workspace

CLI = [sys.executable, "-m", "sealtune"]
WORDS = ["refund", "parcel", "invoice", "colour", "warranty", "courier", "voucher", "battery",
         "sofa", "kettle", "jacket", "filter", "lid", "account", "password", "checkout",
         "express", "points", "gift", "store"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    env.update({"SEALTUNE_HOME": str(tmp_path / "home"),
                "SEALTUNE_PASSPHRASE": "kill-" + secrets.token_hex(8),
                "SEALTUNE_UNSAFE_FAST_KDF": "1", "TMPDIR": str(tmp_path)})
    return env


def _write(path: Path, n: int, marker: str) -> None:
    rng = random.Random(n)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            words = " ".join(rng.choice(WORDS) for _ in range(12))
            fh.write(json.dumps({"id": f"r{i}", "messages": [
                {"role": "user", "content": f"{marker} {i} {words}?"},
                {"role": "assistant", "content": f"{words} {rng.randint(0, 10**9)}."}]}) + "\n")


def _builds(root: Path) -> list[Path]:
    return sorted(p for p in root.glob(".build-*") if p.is_dir()) if root.is_dir() else []


def test_sigkill_midway_leaves_a_sealed_build_that_the_next_ingest_removes(
        tmp_path: Path) -> None:
    env = _env(tmp_path)
    subprocess.run([*CLI, "init"], env=env, check=True, capture_output=True, timeout=120)
    marker = "kill-marker-" + secrets.token_hex(6)
    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    _write(big, 6000, marker)
    _write(small, 20, marker)
    root = tmp_path / "home" / "datasets"
    proc = subprocess.Popen([*CLI, "data", "ingest", str(big), "--name", "big"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not any(any(b.rglob("data.jsonl.sealed")) for b in _builds(root)):
        assert proc.poll() is None, "the ingest finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.2)  # let it seal some records
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    [stale] = _builds(root)
    assert (stale / LOCK_FILE).exists() and not (root / "big").exists()
    for path in (p for p in stale.rglob("*") if p.is_file()):  # sealed, never plaintext
        assert marker.encode() not in path.read_bytes(), path

    done = subprocess.run([*CLI, "data", "ingest", str(small), "--name", "small"], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert _builds(root) == [] and (root / "small" / "dataset.json").is_file()
    assert not (root / "small" / LOCK_FILE).exists()
    log = subprocess.run([*CLI, "audit", "log", "--json"], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    events = [json.loads(line) for line in log.splitlines() if line.strip()]
    cleanup = [e for e in events if e["action"] == "data.cleanup"]
    assert [e["details"]["stale_builds_removed"] for e in cleanup] == [1]


def test_a_live_build_is_never_removed_and_dead_ones_are(workspace: Workspace,
                                                          tmp_path: Path) -> None:
    root = workspace.root / "datasets"
    root.mkdir()
    live = start_build(root, "live")  # as another ingest running right now would hold it
    (live.path / "data.jsonl.sealed").write_bytes(b"SEALTUNE...")
    unlocked = root / ".build-dead-00000000"  # its process died: the lock file is free
    unlocked.mkdir()
    (unlocked / LOCK_FILE).touch()
    never = root / ".build-older-11111111"  # made before locks existed
    never.mkdir()
    (never / "data.jsonl.sealed").write_bytes(b"SEALTUNE...")
    raw = tmp_path / "raw.jsonl"
    _write(raw, 10, "m")
    ingest(workspace, raw, name="meanwhile")
    assert _builds(root) == [live.path]
    assert (live.path / "data.jsonl.sealed").exists()
    assert remove_stale_builds(root) == 0  # still live
    live.finish(root / "live")
    assert (root / "live" / "data.jsonl.sealed").exists()
    assert not (root / "live" / LOCK_FILE).exists()
    event = next(e for e in workspace.ledger.entries() if e.action == "data.cleanup")
    assert event.details == {"stale_builds_removed": 2}
