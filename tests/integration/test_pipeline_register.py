"""``steps.register`` end to end: the example registers its model; a stage needs the gate."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

SEALTUNE = [sys.executable, "-m", "sealtune"]


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SEALTUNE, *args], env=env, capture_output=True, text=True,
                          timeout=900, check=False)


def test_the_register_step_registers_once_and_a_stage_needs_a_passing_gate(
        tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    (tmp_path / "tmp").mkdir()
    env.update({"SEALTUNE_HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp"),
                "SEALTUNE_PASSPHRASE": "pr-" + secrets.token_hex(8),
                "SEALTUNE_UNSAFE_FAST_KDF": "1", "COLUMNS": "200"})
    folder = tmp_path / "ex"
    assert _run(env, "pipeline", "init", str(folder)).returncode == 0
    assert _run(env, "init").returncode == 0
    pipeline = folder / "pipeline.yaml"
    text = pipeline.read_text()
    assert "\nsteps:\n" in text and "\n  train:\n" in text
    pipeline.write_text(text.rstrip("\n") + "\n  register:\n    name: support-bot\n")
    first = _run(env, "run", str(pipeline))
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    rows = json.loads(_run(env, "models", "list", "--json").stdout)
    assert [r["ref"] for r in rows] == ["support-bot@v1"]
    again = _run(env, "run", str(pipeline), "--json")
    events = [json.loads(line) for line in again.stdout.splitlines() if line.strip()]
    assert ("step_cached", "register") in [(e["event"], e.get("step")) for e in events]
    assert events[-1]["digests"]["register"]["signature"] == rows[0]["signature"]
    # promoting needs a passing gate report for the model's digest: none here -> exit 4
    pipeline.write_text(pipeline.read_text() + "    stage: prod\n")
    refused = _run(env, "run", str(pipeline))
    assert refused.returncode == 4, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert "gate:" in refused.stderr
    rows = json.loads(_run(env, "models", "list", "--json").stdout)
    assert [r["ref"] for r in rows] == ["support-bot@v1"] and rows[0]["stages"] == []
