"""The evidence bundle of a pipeline run (``sealtune run FILE --bundle OUT``).

:func:`write_run_bundle` turns a finished :class:`~sealtune.pipeline.RunResult`
into an evidence bundle (:mod:`sealtune.evidence`): one signed in-toto
statement per step (:meth:`~sealtune.pipeline.StepRecord.evidence`: its
inputs and outputs by digest, its settings, the sandbox measurement), the
data step's dataset ML-BOM, the train step's training record with ε, the
assess step's signed gate report (its envelope, opened from the workspace's
sealed copy), and
global inclusion proofs of the step's audit-log events against the ledger's
newest checkpoint, cosigned by the workspace's witnesses when it has a
witness policy. A step's run inputs (the raw input, the policy, the base
model) are the inputs no earlier step produced.

A **cached** step did not run in this run: its statement states the result
it reused, as recorded when it was computed (its times, its digests), and
cites the audit-log events of the run that computed it plus this run's
``pipeline.step_cached`` event. Those older events may have been pruned by
retention since; they are then proven by their kept leaf hashes
(``docs/evidence.md``).

:func:`check_bundle_path` is called before a run, so that a bundle that
cannot be written (the path exists, or its folder does not) is refused
before any step runs; an existing bundle is never replaced (it is evidence).

What this protects against: a bundle that names inputs from nowhere (each
step's inputs are run inputs or an earlier step's outputs), sample text in the
bundle (statements carry names, digests and figures; the BOM and the training
record are the stages' own figure-only records), a half-written bundle (the
recorder writes aside and renames). What it does not: the run state it reads
is unsigned (``docs/pipeline.md``): the statements are as true as the host
that signs them; the audit-log proofs and the sealed files' digests are what
an auditor can check independently.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sealtune.errors import UsageError
from sealtune.evidence import EvidenceRecorder, WrittenBundle, training_record

if TYPE_CHECKING:
    from sealtune.pipeline.runner import RunResult
    from sealtune.pipeline.state import StepRecord
    from sealtune.workspace import Workspace

__all__ = ["check_bundle_path", "is_tar_path", "write_run_bundle"]


def is_tar_path(out: Path) -> bool:
    """Whether ``out`` names a tar bundle (``.tar``) rather than a directory."""
    return out.suffix == ".tar"


def check_bundle_path(out: Path) -> None:
    """Refuse a bundle path that exists or whose folder does not (before the run starts).

    Raises:
        UsageError: naming the path and the fix.
    """
    if os.path.lexists(out):
        raise UsageError(f"--bundle {out}: already exists; an evidence bundle is never "
                         "replaced", hint="name a new path, or move the old bundle away first")
    if not out.absolute().parent.is_dir():
        raise UsageError(f"--bundle {out}: {out.absolute().parent} is not a directory",
                         hint="create it first")


def _times(record: StepRecord) -> tuple[datetime, datetime]:
    started = datetime.fromisoformat(record.started)
    return started, started + timedelta(seconds=record.seconds)


def _attach(recorder: EvidenceRecorder, ws: Workspace, record: StepRecord) -> None:
    """The stages' own records: the dataset's BOM, the training record, the gate report."""
    if record.name == "data":
        from sealtune.data import export_bom

        dataset = str(record.summary["dataset"])
        recorder.attach_bom("data", dataset=dataset, bom=export_bom(ws, dataset).encode("utf-8"))
    elif record.name == "train":
        from sealtune.train import show_job

        job = str(record.summary["job"])
        recorder.attach_training_record("train", job=job,
                                        record=training_record(show_job(ws, job)))
    elif record.name == "assess":
        from sealtune.assess import read_assessment

        gate = read_assessment(ws, str(record.summary["assessment"]))
        recorder.attach_gate_report("assess", assessment=gate.id, envelope=gate.envelope(ws),
                                    model_digest=gate.model_digest, verdict=gate.verdict)


def write_run_bundle(ws: Workspace, result: RunResult, out: Path, *,
                     tar: bool | None = None) -> WrittenBundle:
    """Write the evidence bundle of ``result`` to ``out``.

    Args:
        ws: the workspace the run ran in (its evidence key signs; its ledger proves).
        result: what :func:`~sealtune.pipeline.run_pipeline` returned.
        out: the bundle directory, or a ``.tar`` file.
        tar: force the form (default: a tar when ``out`` ends in ``.tar``).

    Raises:
        UsageError: ``out`` exists or its folder does not.
        PolicyViolation: fewer than ``k`` configured witnesses cosigned (nothing written;
            the run's steps stay recorded, so a rerun is all cached).
        IntegrityError: a witness saw a longer or different history of the ledger.
    """
    check_bundle_path(out)
    recorder = EvidenceRecorder(ws, result.run_id)
    produced: set[str] = set()
    for run in result.steps:
        step = run.record.evidence()
        for name, digest in step["inputs"].items():
            if digest not in produced:
                recorder.add_input(f"{run.record.name}/{name}", digest)
        # A cached step cites the events of the run that computed it, and its own.
        step["ledger_seqs"] = sorted({*step["ledger_seqs"], *run.ledger_seqs})
        started, finished = _times(run.record)
        recorder.step(**step, started_on=started, finished_on=finished)
        produced |= set(step["outputs"].values())
        _attach(recorder, ws, run.record)
    return recorder.write(out, tar=is_tar_path(out) if tar is None else tar)
