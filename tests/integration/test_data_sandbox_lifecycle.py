"""init -> seal -> ingest (sandboxed, sealed raw input) -> train, through the CLI.

The user's path, as subprocesses: the ledger must show both sandboxes'
lifecycles, each marked with its stage, and a unique string planted in the
raw data must appear in no file the run wrote outside sealed files, in
neither the audit log nor anything the commands printed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from sealtune.train.tiny import make_tiny

SEALTUNE = [sys.executable, "-m", "sealtune"]
LIFECYCLE = ["sandbox.created", "sandbox.data_decrypted", "sandbox.outputs_sealed",
             "sandbox.destroyed"]


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run([*SEALTUNE, *args], env=env, capture_output=True, timeout=600,
                          check=False)
    assert done.returncode == 0, f"{args[:3]}: {done.stderr.decode(errors='replace')[-2000:]}"
    return done


def _unsealed_files_with(roots: list[Path], needle: bytes) -> list[Path]:
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            if data[:8] != b"SEALTUNE" and needle in data:
                found.append(path)
    return found


def test_init_ingest_sealed_raw_in_the_sandbox_then_train(tmp_path: Path) -> None:
    marker = "PLANTED-" + secrets.token_hex(8)
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    env.update({"SEALTUNE_HOME": str(home), "SEALTUNE_PASSPHRASE": "pp-" + secrets.token_hex(8),
                "SEALTUNE_UNSAFE_FAST_KDF": "1", "TMPDIR": str(tmp), "COLUMNS": "200"})
    base = make_tiny(tmp_path / "base", seed=0)
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps({"id": f"t{i}", "messages": [
        {"role": "user", "content": f"ticket {i}: where is parcel {marker}-{i}?"},
        {"role": "assistant", "content": f"Parcel {marker}-{i} arrives on day {i % 5}."}]})
        + "\n" for i in range(24)), encoding="utf-8")
    printed = [_run(env, "init")]
    printed.append(_run(env, "seal", str(raw), str(tmp_path / "raw.jsonl.sealed")))
    raw.unlink()  # from here on the raw data exists only sealed
    printed.append(_run(env, "data", "ingest", str(tmp_path / "raw.jsonl.sealed"),
                        "--name", "support"))
    printed.append(_run(env, "train", "--dataset", "support", "--base", str(base),
                        "--out-name", "m1", "--max-steps", "2", "--batch-size", "4",
                        "--max-length", "96", "--threads", "1"))
    log = _run(env, "audit", "log", "--json").stdout
    events = [json.loads(line) for line in log.splitlines() if line.strip()]
    by_stage: dict[str, list[str]] = {}
    for e in events:
        if e["action"].startswith("sandbox."):
            by_stage.setdefault(e["details"]["stage"], []).append(e["action"])
    assert by_stage == {"data": LIFECYCLE, "train": LIFECYCLE}
    data_created = next(e for e in events if e["action"] == "sandbox.created"
                        and e["details"]["stage"] == "data")
    assert data_created["resource"] == "dataset/support"
    manifest = json.loads((home / "datasets" / "support" / "dataset.json").read_text())
    assert data_created["details"]["measurement"] == manifest["sandbox"]["measurement"]
    assert [e["details"].get("sandboxed") for e in events if e["action"] == "data.read"
            and e["details"].get("part") == "sealed input"] == [True]
    needle = marker.encode()
    assert _unsealed_files_with([home, tmp, tmp_path], needle) == []
    assert not any(needle in p.stdout or needle in p.stderr for p in printed)
    assert needle not in log
