"""The release gate as a pipeline step, as a user runs it: ``sealtune run`` with ``steps.assess``.

Nothing is mocked: the example from ``sealtune pipeline init`` on a slice of
the sample (two training steps in the bubblewrap sandbox), then the gate on
the trained model in its own sandbox. A passing gate is a step like the
others: cached on the rerun, its signed report in the evidence bundle, which
``sealtune bundle verify`` checks against the pins, and
:func:`sealtune.evidence.passing_gate_report` finds for the model's digest.
A policy the model cannot meet stops the run with exit 4 and a ``gate:``
message, writes no bundle, records ``assess.failed``, and is never cached.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sealtune.assess import list_assessments, model_digest
from sealtune.cli import main as cli_main
from sealtune.errors import IntegrityError
from sealtune.evidence import layout, load_pins, passing_gate_report, verify_gate_report
from sealtune.workspace import Workspace

SEALTUNE = [sys.executable, "-m", "sealtune"]
# A quick gate for a test: fewer prompts and records per probe than the defaults.
FAST = {"max_prompts: 100": "max_prompts: 12", "max_records: 500": "max_records: 60",
        "max_records: 100": "max_records: 12", "divergence_prompts: 6": "divergence_prompts: 1",
        "max_prompts: 200": "max_prompts: 20"}


@dataclass
class Example:
    root: Path
    file: Path
    env: dict[str, str]

    def cli(self, *args: str) -> int:
        with pytest.MonkeyPatch.context() as mp:
            for key in [k for k in os.environ if k.startswith("SEALTUNE_")]:
                mp.delenv(key)
            for key, value in self.env.items():
                mp.setenv(key, value)
            return cli_main(list(args))

    def workspace(self) -> Workspace:
        return Workspace.open(Path(self.env["SEALTUNE_HOME"]),
                              passphrase=self.env["SEALTUNE_PASSPHRASE"])


def _policy(folder: Path, **changes: str) -> Path:
    from sealtune.assess import default_policy_text

    text = default_policy_text()
    for old, new in {**FAST, **changes}.items():
        assert old in text, old
        text = text.replace(old, new)
    path = folder / "gate.yaml"
    path.write_text(text, "utf-8")
    return path


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    root = tmp_path_factory.mktemp("pipeline-assess")
    res = subprocess.run([*SEALTUNE, "pipeline", "init", str(root / "ex")], capture_output=True,
                         text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    raw = root / "ex" / "data" / "conversations.jsonl"
    raw.write_text("\n".join(raw.read_text("utf-8").splitlines()[:120]) + "\n", "utf-8")
    file = root / "ex" / "pipeline.yaml"
    text = file.read_text("utf-8").replace("max_steps: 5", "max_steps: 2").split("    dp:")[0]
    _policy(root / "ex")
    file.write_text(text + "  assess:\n    policy: gate.yaml\n    report_dir: gate-report\n",
                    "utf-8")
    env = {"SEALTUNE_HOME": str(root / "ws"), "SEALTUNE_UNSAFE_FAST_KDF": "1",
           "SEALTUNE_PASSPHRASE": "pa-" + secrets.token_hex(8)}
    ex = Example(root, file, env)
    assert ex.cli("init") == 0
    yield ex


def test_a_passing_gate_is_a_cached_step_whose_signed_report_the_bundle_proves(
        example: Example, capsys: pytest.CaptureFixture[str]) -> None:
    bundle, pins = example.root / "bundle", example.root / "pins.json"
    assert example.cli("run", str(example.file), "--bundle", str(bundle)) == 0, \
        capsys.readouterr()
    report = json.loads((example.root / "ex" / "gate-report" / "report.json").read_text())
    assert report["verdict"] == "pass" and report["base"]["pinned"] is False
    assert "unpinned" not in capsys.readouterr().err  # the report says it; no warning
    assert example.cli("bundle", "keys", "--out", str(pins)) == 0
    capsys.readouterr()
    assert example.cli("bundle", "verify", str(bundle), "--key", str(pins)) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"✓ gate.{report['id']}" in out and "statement.assess" in out and "✗" not in out
    files = layout.read_dir(bundle)
    doc = verify_gate_report(files[f"gate/{report['id']}.dsse.json"],
                             load_pins([str(pins)]).evidence,
                             model_digest=report["model"]["digest"])
    assert doc == report
    ws = example.workspace()
    try:
        digest = model_digest(ws, report["model"]["name"])  # what a release looks it up by
        assert digest == report["model"]["digest"]
        found = passing_gate_report(ws, digest)
        assert found.assessment == report["id"] and found.document == report
        with pytest.raises(IntegrityError, match="no passing release-gate report"):
            passing_gate_report(ws, "sha256:" + "0" * 64)
    finally:
        ws.close()
    capsys.readouterr()
    assert example.cli("run", str(example.file), "--json") == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {e["step"] for e in events if e["event"] == "step_cached"} == {"data", "train",
                                                                         "assess"}


def test_a_failing_gate_stops_the_run_with_exit_4_and_no_bundle(
        example: Example, capsys: pytest.CaptureFixture[str]) -> None:
    # The example trains without a validation split: a policy that requires the utility
    # probe (held-out perplexity) fails the gate, as any required probe that cannot run.
    _policy(example.root / "ex", **{"  utility:\n    run: when-available":
                                    "  utility:\n    run: required"})
    bundle = example.root / "failed-bundle"
    capsys.readouterr()
    assert example.cli("run", str(example.file), "--bundle", str(bundle)) == 4
    err = capsys.readouterr().err
    assert any(line.startswith("gate: the model did not pass the release gate: utility failed")
               for line in err.splitlines()), err
    assert not bundle.exists()
    ws = example.workspace()
    try:
        newest = list_assessments(ws)[0]
        assert newest.verdict == "fail" and newest.index["failed"] == ["utility"]
        entries = list(ws.ledger.entries())[-6:]
        assert "assess.failed" in [e.action for e in entries]
        (failed,) = [e for e in entries if e.action == "pipeline.step_failed"]
        assert failed.details["error"] == "GateFailed"
        state = json.loads(next((ws.root / "pipelines").rglob("state.json")).read_text())
    finally:
        ws.close()
    # Never cached: the state keeps no record under the failing step's key (only the earlier,
    # passing policy's record, with another key, when that test ran first on this worker).
    assert state["steps"].get("assess", {}).get("key") != failed.details["key"]
    assert example.cli("run", str(example.file)) == 4
