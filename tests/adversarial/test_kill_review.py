"""kill -9 during ``data review --release/--drop``: the dataset is always wholly the old
revision or wholly the new one (files match the manifest), never plaintext on disk."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

CLI = [sys.executable, "-m", "sealtune"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    env.update({"SEALTUNE_HOME": str(tmp_path / "home"),
                "SEALTUNE_PASSPHRASE": "kill-" + secrets.token_hex(8),
                "SEALTUNE_UNSAFE_FAST_KDF": "1", "TMPDIR": str(tmp_path)})
    return env


def _run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _state(env: dict[str, str]) -> tuple[int, int, int]:
    """(revision, records out, quarantined), after checking every file against the manifest."""
    shown = json.loads(_run(env, "data", "show", "big", "--json"))
    assert all(shown["intact"].values()), shown["intact"]
    m = shown["manifest"]
    assert m["files"]["data"]["records"] == m["counts"]["records_out"]
    return (m.get("review", {}).get("revision", 0), m["counts"]["records_out"],
            m["counts"]["quarantined"])


def test_sigkill_during_review_leaves_old_or_new_revision(tmp_path: Path) -> None:
    env = _env(tmp_path)
    marker = "rvkill" + secrets.token_hex(6)
    raw = tmp_path / "raw.jsonl"
    with raw.open("w", encoding="utf-8") as fh:
        for i in range(3000):
            j = i % 2800  # the last 200 are exact copies: quarantined
            fh.write(json.dumps({"id": f"r{i}", "messages": [
                {"role": "user", "content": f"{marker} question {j} about item {j * 7919}"},
                {"role": "assistant", "content": f"answer {j} {j * 104729} done"}]}) + "\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nscreening:\n  exact_duplicate: quarantine\n"
                      "  near_duplicate: flag\n", "utf-8")
    _run(env, "init")
    _run(env, "data", "ingest", str(raw), "--name", "big", "--policy", str(policy))
    raw.unlink()
    old = _state(env)
    assert old[0] == 0 and old[2] == 200
    args = [*CLI, "data", "review", "big", "--release", "r2800", "--drop", "r2801"]
    start = time.monotonic()
    _run(env, "data", "show", "big")  # start-up cost of one CLI call, for the kill delays
    startup = time.monotonic() - start
    builds = tmp_path / "home" / "datasets"
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not any((b / "data.jsonl.sealed").exists() for b in builds.glob(".build-*")):
        if proc.poll() is not None:
            break
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)  # mid-build (unless it already finished)
    proc.wait(timeout=30)
    seen = {_state(env)}
    assert seen <= {old, (1, old[1] + 1, old[2] - 2)}, seen
    for k in range(3 if seen == {old} else 0):
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(startup * (0.9 + 0.3 * k))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        state = _state(env)
        assert state in (old, (1, old[1] + 1, old[2] - 2)), state
        seen.add(state)
        if state != old:
            break
    if old in seen and len(seen) == 1:  # never got through: finish it now
        _run(env, "data", "review", "big", "--release", "r2800", "--drop", "r2801")
    assert _state(env) == (1, old[1] + 1, old[2] - 2)
    root = tmp_path / "home"
    for path in root.rglob("*"):  # what a killed review leaves is sealed, never plaintext
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), path
    _run(env, "data", "review", "big", "--drop", "r2802")  # removes what a kill left behind
    assert not list((root / "datasets").glob(".build-*"))
    assert _state(env) == (2, old[1] + 1, old[2] - 3)
