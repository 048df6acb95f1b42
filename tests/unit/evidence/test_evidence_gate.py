"""A gate report in an evidence bundle: signed by a pinned key, for the model its step names.

A run is recorded with real ledger events (no training): a train step whose
output is the weights, then an ``assess`` step that read those weights and
names the model it assessed; the gate report is a real, schema-valid
``sealtune.gate-report/v1`` signed with the workspace's evidence key (or,
adversarially, another key). Each forgery goes through the recorder, so its
statements and manifest are validly signed: only the gate check can catch it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealtune.assess.report import render
from sealtune.evidence import (
    EvidenceRecorder,
    Pins,
    evidence_signer,
    gate_report_signer,
    layout,
    run_events,
    verify_files,
)
from sealtune.evidence.dsse import keyid, sign
from sealtune.evidence.gate import PAYLOAD_TYPE
from sealtune.workspace import Workspace

MODEL = "sha256:" + "ab" * 32
WEIGHTS = "sha256:" + "12" * 32
ID = "assess-20261207-120000-abcdef"


def _report(*, digest: str = MODEL, weights: str | None = WEIGHTS,
            verdict: str = "pass") -> bytes:
    return render({
        "format": "sealtune.gate-report/v1", "id": ID, "created": "2026-12-07T12:00:00Z",
        "sealtune": "0.1.0", "verdict": verdict,
        "failed": [] if verdict == "pass" else ["utility"],
        "model": {"name": "m1", "source": "workspace", "digest": digest, "adapter": False,
                  "weights_sha256": weights, "job": "j1"},
        "base": None, "policy": {"source": "gate.yaml", "digest": "sha256:" + "cd" * 32},
        "probes": [{"name": "utility", "verdict": verdict, "reason": "perplexity ratio",
                    "required": False, "metrics": {"ratio": 1.0}, "intervals": {},
                    "thresholds": {"max_perplexity_ratio": 1.0}, "series": {},
                    "items": []}]})


def _recorder(ws: Workspace) -> tuple[EvidenceRecorder, list[int]]:
    """A train step whose outputs are a sealed model file and its weights, with its events."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    ws.audit("train.finished", "job/j1", details={"steps": 2})
    ws.audit("assess.passed", "model/m1", details={"assessment": ID})
    rec = EvidenceRecorder(ws, "run-1", inputs={"base": "sha256:" + "34" * 32})
    rec.step("train", "train", inputs={"base": "sha256:" + "34" * 32},
             outputs={"m1/model.sealed": "sha256:" + "56" * 32, "weights": WEIGHTS},
             config={"epochs": 1}, ledger_seqs=run_events(ws.ledger, since=since,
                                                          resources=["job/j1"]))
    return rec, run_events(ws.ledger, since=since, resources=["model/m1"])


def _bundle(ws: Workspace, tmp_path: Path, envelope: bytes, *, model: str = MODEL,
            verdict: str = "pass") -> dict[str, bytes]:
    rec, seqs = _recorder(ws)
    rec.step("assess", "assess", inputs={"weights": WEIGHTS},
             outputs={"report": "sha256:" + "78" * 32, "model": model},
             config={"policy_digest": "sha256:" + "cd" * 32},
             ledger_seqs=seqs)
    rec.attach_gate_report("assess", assessment=ID, envelope=envelope, model_digest=MODEL,
                           verdict=verdict)
    out = tmp_path / f"bundle-{hashlib.sha256(envelope).hexdigest()[:8]}"
    rec.write(out)
    return layout.read_dir(out)


def _pins(ws: Workspace) -> Pins:
    return Pins(evidence=[evidence_signer(ws).public_key], ledger=[ws.ledger_verifier()])


def _checks(report: Any) -> dict[str, bool]:
    return {c.name: c.ok for c in report.checks}


def test_a_signed_passing_report_for_the_steps_model_verifies(
        workspace: Workspace, tmp_path: Path) -> None:
    envelope, _ = gate_report_signer(workspace)(_report())
    report = verify_files(_bundle(workspace, tmp_path, envelope), _pins(workspace))
    assert report.ok, [(c.name, c.explanation) for c in report.failed]
    assert _checks(report)[f"gate.{ID}"] is True


@pytest.mark.parametrize("forgery", ["other_model", "other_key", "verdict", "weights",
                                     "statement", "not_a_report"])
def test_a_forged_gate_report_fails_only_the_gate_check(
        workspace: Workspace, tmp_path: Path, forgery: str) -> None:
    signer = gate_report_signer(workspace)
    model = MODEL
    if forgery == "other_model":  # a genuine report, but of another model
        envelope, _ = signer(_report(digest="sha256:" + "ef" * 32))
    elif forgery == "other_key":  # the right content, signed by a key nobody pinned
        rogue = Ed25519PrivateKey.generate()
        envelope = sign(_report(), payload_type=PAYLOAD_TYPE, signer=rogue.sign,
                        signer_keyid=keyid(rogue.public_key()))
    elif forgery == "verdict":  # a failed report presented as a pass by its statement
        envelope, _ = signer(_report(verdict="fail"))
    elif forgery == "weights":  # the report assessed other weights than the step read
        envelope, _ = signer(_report(weights="sha256:" + "99" * 32))
    elif forgery == "statement":  # the statement's output is another model than it names
        envelope, _ = signer(_report())
        model = "sha256:" + "ef" * 32
    else:  # signed bytes that are no gate report
        envelope, _ = signer(b'{"format": "something-else"}')
    report = verify_files(_bundle(workspace, tmp_path, envelope, model=model),
                          _pins(workspace))
    failed = {c.name for c in report.failed}
    assert failed == {f"gate.{ID}"}, [(c.name, c.explanation) for c in report.failed]
