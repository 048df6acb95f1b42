"""The release gate end to end through the CLI: exit statuses, report, signature, ledger.

Real components: a workspace with its ledger and evidence key, the CLI
in-process, the real file scan; a malicious pickle whose unpickling would
create a marker file, which must never appear.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import struct
from pathlib import Path

import pytest

from sealtune.assess.report import load
from sealtune.cli import main as cli_main
from sealtune.errors import IntegrityError
from sealtune.evidence import evidence_signer, verify_gate_report
from sealtune.train.tiny import make_tiny
from sealtune.workspace import Workspace


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("tiny") / "m", seed=0)


@pytest.fixture
def home(workspace: Workspace, passphrase: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEALTUNE_HOME", str(workspace.root))
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    monkeypatch.setenv("COLUMNS", "200")
    return workspace.root


@pytest.fixture
def policy(home: Path, tmp_path: Path) -> Path:
    assert cli_main(["assess", "policy", "init", str(tmp_path / "gate.yaml")]) == 0
    return tmp_path / "gate.yaml"


class _Marker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _events(home: Path, action: str) -> list[dict[str, object]]:
    ws = Workspace.open(home)
    try:
        return [e.details for e in ws.ledger.entries() if e.action == action]
    finally:
        ws.close()


def _pins(home: Path) -> list[object]:
    ws = Workspace.open(home)
    try:
        return [evidence_signer(ws).public_key]
    finally:
        ws.close()


def test_a_clean_model_passes_and_its_signed_report_binds_its_digest(
        home: Path, policy: Path, tiny: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    assert cli_main(["assess", str(tiny), "--policy", str(policy), "--out", str(out)]) == 0
    raw = (out / "report.json").read_bytes()
    doc = load(raw)
    assert doc["verdict"] == "pass" and doc["model"]["source"] == "directory"
    verdicts = {p["name"]: p["verdict"] for p in doc["probes"]}
    assert verdicts["model_files"] == "pass" and verdicts["utility"] == "skipped"
    # the envelope verifies for exactly this model
    envelope = (out / "report.dsse.json").read_bytes()
    checked = verify_gate_report(envelope, _pins(home), model_digest=doc["model"]["digest"])
    assert checked == doc
    # sealed in the workspace, indexed, and its digest in the (intact) ledger
    sha = "sha256:" + hashlib.sha256(raw).hexdigest()
    (entry,) = _events(home, "assess.passed")
    assert entry["report_sha256"] == sha and entry["model_digest"] == doc["model"]["digest"]
    index = json.loads((home / "assessments" / doc["id"] / "assessment.json").read_text())
    assert index["report_sha256"] == sha
    sealed = (home / "assessments" / doc["id"] / "report.json.sealed").read_bytes()
    assert sealed.startswith(b"SEALTUNE") and raw not in sealed
    assert "pass" in capsys.readouterr().out
    assert cli_main(["audit", "verify"]) == 0


def test_a_malicious_pickle_fails_the_gate_with_exit_4_and_is_never_unpickled(
        home: Path, policy: Path, tiny: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    model = Path(shutil.copytree(tiny, tmp_path / "model"))
    marker = tmp_path / "pwned"
    (model / "pytorch_model.bin").write_bytes(pickle.dumps(_Marker(marker)))
    out = tmp_path / "report"
    code = cli_main(["assess", str(model), "--policy", str(policy), "--out", str(out)])
    assert code == 4
    assert capsys.readouterr().err.startswith("gate: ")
    assert not marker.exists()
    doc = load((out / "report.json").read_bytes())
    assert doc["verdict"] == "fail" and doc["failed"] == ["model_files"]
    (entry,) = _events(home, "assess.failed")
    assert entry["failed"] == ["model_files"]
    # a failing report is refused as release evidence
    with pytest.raises(IntegrityError, match="failed the release gate"):
        verify_gate_report((out / "report.dsse.json").read_bytes(), _pins(home),
                           model_digest=doc["model"]["digest"])


def test_a_crafted_safetensors_header_fails_the_gate(home: Path, policy: Path, tiny: Path,
                                                     tmp_path: Path) -> None:
    model = Path(shutil.copytree(tiny, tmp_path / "model"))
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    first = next(k for k in header if k != "__metadata__")
    header[first]["dtype"] = "Q8"
    raw = json.dumps(header).encode()
    weights.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length:])
    out = tmp_path / "report"
    assert cli_main(["assess", str(model), "--policy", str(policy), "--out", str(out)]) == 4
    doc = load((out / "report.json").read_bytes())
    files = next(p for p in doc["probes"] if p["name"] == "model_files")
    assert any(i.get("problem") == "bad_dtype" for i in files["items"])


def test_an_edited_report_or_another_model_is_refused(home: Path, policy: Path, tiny: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert cli_main(["assess", str(tiny), "--policy", str(policy), "--out", str(out)]) == 0
    envelope = json.loads((out / "report.dsse.json").read_bytes())
    doc = load((out / "report.json").read_bytes())
    with pytest.raises(IntegrityError, match="another model"):
        verify_gate_report(json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode(),
                           _pins(home), model_digest="sha256:" + "0" * 64)
    import base64

    payload = base64.b64decode(envelope["payload"]).replace(b'"pass"', b'"fail"', 1)
    envelope["payload"] = base64.b64encode(payload).decode()
    with pytest.raises(IntegrityError):
        verify_gate_report(json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode(),
                           _pins(home), model_digest=doc["model"]["digest"])


def test_the_gate_needs_a_policy_and_names_a_missing_model(home: Path, policy: Path,
                                                           tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    assert cli_main(["assess", str(tmp_path / "nope"), "--policy", str(policy),
                     "--out", str(tmp_path / "o")]) == 1
    assert "no workspace model or model directory" in capsys.readouterr().err
    assert cli_main(["assess", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
