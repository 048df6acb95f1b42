"""What the data and training stages left in the workspace, as evidence of a step.

:func:`record_dataset` and :func:`record_training` read a dataset's manifest
and ML-BOM (:mod:`sealtune.data.store`) or a training job's record and model
manifest (:mod:`sealtune.train.jobs.records`) and record them as a step of an
:class:`~sealtune.evidence.bundle.EvidenceRecorder`, with the BOM or the
training record attached. :func:`training_record` is the job record reduced
to what may leave the workspace: ids, digests and figures (steps, loss, ε, δ).

What this protects against: the step's digests and figures copied by hand
(they are read from the stage's own records), sample text or host paths in
the bundle (the training record keeps figures only; the config keeps names
and numbers). What it does not: these records are unsigned JSON in the
workspace; whoever can write the workspace can rewrite them before the
bundle is made (the sealed files' digests and the ledger events are what an
auditor can check independently).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import IntegrityError

if TYPE_CHECKING:
    from sealtune.evidence.bundle import EvidenceRecorder
    from sealtune.workspace import Workspace

TRAINING_FORMAT = "sealtune.training-record/v1"
_FIGURES = ("steps", "final_loss", "resumed_from", "world_size", "seconds",
            "dropped_no_assistant_tokens")
_PRIVACY = ("epsilon_spent", "delta", "noise_multiplier", "sample_rate", "steps", "unit")


def _when(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def _sealed_digest(entry: Any) -> str:
    """A sealed file's digest from its manifest entry: the content digest if recorded.

    The content digest survives key rotation; manifests written before it
    existed carry only the whole file's ``sha256``.
    """
    if isinstance(entry, dict) and "content_sha256" in entry:
        return f"content-sha256:{entry['content_sha256']}"
    return f"sha256:{entry['sha256']}"


def record_dataset(recorder: EvidenceRecorder, ws: Workspace, dataset: str, *,
                   step: str = "data", ledger_seqs: Sequence[int] = ()) -> None:
    """Record the ingest of ``dataset`` as step ``step`` (kind ``data``), with its BOM.

    The raw input's digest is declared as a run input; the outputs are the
    sealed data and quarantine files (by content digest) and the BOM.

    Raises:
        UsageError: no such dataset.
        IntegrityError: its manifest lacks a digest.
    """
    from sealtune.data.store import export_bom, show_dataset

    info = show_dataset(ws, dataset, verify=False)
    manifest = info.manifest
    files = manifest.get("files", {})
    try:
        raw = "sha256:" + manifest["input"]["sha256"]
        outputs = {role: _sealed_digest(files[role]) for role in ("data", "quarantine")}
    except (KeyError, TypeError):
        raise IntegrityError(f"{info.path}/dataset.json: no input or output digests") from None
    bom = export_bom(ws, dataset).encode("utf-8")
    outputs["bom"] = "sha256:" + hashlib.sha256(bom).hexdigest()
    recorder.add_input(f"{dataset}-raw", raw)
    when = _when(manifest.get("created"))
    recorder.step(step, "data", inputs={f"{dataset}-raw": raw},
                  outputs={f"{dataset}/{k}": v for k, v in outputs.items()},
                  config={"dataset": dataset, "policy": manifest.get("policy", {}),
                          "input_format": manifest.get("input", {}).get("format"),
                          "keys": manifest.get("keys", {}).get("kek", [])},
                  ledger_seqs=ledger_seqs, started_on=when, finished_on=when)
    recorder.attach_bom(step, dataset=dataset, bom=bom)


def training_record(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A job record reduced to ids, digests and figures (see the module docstring)."""
    metrics = rec.get("metrics") or {}
    privacy = rec.get("privacy")
    return {
        "format": TRAINING_FORMAT, "job": rec["id"], "status": rec.get("status"),
        "sandboxed": bool(rec.get("sandboxed")),
        "config_fingerprint": rec.get("fingerprint"),
        "measurement_digest": (rec.get("measurement") or {}).get("digest"),
        "metrics": {k: metrics.get(k) for k in _FIGURES if k in metrics},
        "privacy": None if not privacy else {k: privacy.get(k) for k in _PRIVACY},
    }


def _model(rec: Mapping[str, Any]) -> dict[str, Any]:
    model = rec.get("model")
    if not model:
        raise IntegrityError(f"job {rec.get('id')} installed no model; nothing to record")
    manifest: dict[str, Any] = json.loads((Path(str(model)) / "model.json").read_text("utf-8"))
    return manifest


def record_training(recorder: EvidenceRecorder, ws: Workspace, job_id: str, *,
                    step: str = "train", ledger_seqs: Sequence[int] = ()) -> None:
    """Record training job ``job_id`` as step ``step`` (kind ``train``), with its record.

    Inputs are the dataset (by the content digest its model record names; it
    must be an earlier step's output) and the base model (by the measurement's
    tree digest; declared a run input), outputs the sealed model files (by
    content digest), the sandbox measurement goes into the statement, and the
    training record (with ε) is attached.

    Raises:
        UsageError: no such job, or its dataset is not an earlier output.
        IntegrityError: the job did not finish or has no measurement.
    """
    from sealtune.train.jobs.records import show_job

    rec = show_job(ws, job_id)
    measurement = rec.get("measurement") or {}
    if rec.get("status") != "finished" or "digest" not in measurement:
        raise IntegrityError(f"job {job_id} is {rec.get('status')}; only a finished job "
                             "with a sandbox measurement can be recorded")
    model = _model(rec)
    inputs = {"dataset": model["dataset"]["digest"], "base": measurement["base_model"]}
    recorder.add_input(f"{rec['out_name']}-base", inputs["base"])
    outputs = {f"{rec['out_name']}/{name}": digest
               for name, digest in sorted(model.get("files", {}).items())}
    config = {"job": job_id, "dataset": rec["dataset"], "out_name": rec["out_name"],
              "sandboxed": bool(rec.get("sandboxed")), "train": rec["config"]}
    recorder.step(step, "train", inputs=inputs, outputs=outputs, config=config,
                  measurement=measurement if rec.get("sandboxed") else None,
                  ledger_seqs=ledger_seqs, started_on=_when(rec.get("created")),
                  finished_on=_when(rec.get("updated")))
    recorder.attach_training_record(step, job=job_id, record=training_record(rec))
