"""The evidence bundle: signed statements of what a run did, checkable offline.

Public API (the pipeline runner and the CLI use only these):

* :class:`EvidenceRecorder` — record each step (inputs and outputs by digest,
  config, sandbox measurement, ledger events), attach the dataset BOM and the
  training record, ``write(out, tar=...)`` the bundle;
* :func:`record_dataset`, :func:`record_training` — record the data and
  training stages' results from the workspace;
* :func:`run_events` — a step's ledger events by time and resource;
* :func:`verify_bundle` with :func:`load_pins` — check a bundle with pinned
  keys, returning a :class:`BundleReport` of named checks;
* :func:`evidence_signer`, :func:`pin_file`, :func:`workspace_pins` — the
  workspace's evidence key and the pin file auditors keep (evidence, ledger and
  witness keys);
* :func:`gate_report_signer`, :func:`verify_gate_report`,
  :func:`passing_gate_report` — the release gate's report signed with the
  evidence key, its check for one model digest, and the newest verified
  passing report the workspace keeps for a model digest (what a release
  requires).

Each module says what it protects against and what it does not; in short, a
verified bundle shows that the holder of the pinned evidence key signed these
statements and that the ledger signed by the ledger key holds these events
(and, with pinned witnesses, that k of them cosigned that same checkpoint).
It does not prove that the host ran honest code (attestation's part).
See ``docs/evidence.md``.
"""

from sealtune.evidence.attach import record_dataset, record_training, training_record
from sealtune.evidence.bundle import EvidenceRecorder, WrittenBundle
from sealtune.evidence.gate import (
    PassingGate,
    gate_report_signer,
    passing_gate_report,
    verify_gate_report,
)
from sealtune.evidence.ledger_proofs import run_events
from sealtune.evidence.pins import Pins, load_pins, pin_file
from sealtune.evidence.report import BundleReport, Check
from sealtune.evidence.signer import evidence_signer, workspace_pins
from sealtune.evidence.verify import verify_bundle, verify_files

__all__ = [
    "BundleReport",
    "Check",
    "EvidenceRecorder",
    "PassingGate",
    "Pins",
    "WrittenBundle",
    "evidence_signer",
    "gate_report_signer",
    "load_pins",
    "passing_gate_report",
    "pin_file",
    "record_dataset",
    "record_training",
    "run_events",
    "training_record",
    "verify_bundle",
    "verify_files",
    "verify_gate_report",
    "workspace_pins",
]
