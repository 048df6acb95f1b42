"""The parent side of a training job: keys, measurement, the sandbox, sealed outputs.

:func:`run_job` unwraps the dataset's data key in this process (the keyring
never enters the sandbox), makes fresh data keys for the outputs and the
checkpoints, measures what will run, starts :mod:`sealtune.train.worker` in a
bubblewrap :class:`~sealtune.sandbox.process.Sandbox` with the keys over the key
pipe, relays progress, records the security timeline in the audit ledger
(``sandbox.created`` with the measurement, ``sandbox.data_decrypted``,
``train.finished`` with the privacy figures, ``sandbox.outputs_sealed``,
``sandbox.destroyed`` with the teardown result) and installs the sealed
outputs into ``<workspace>/models/<out-name>/`` with a ``model.json``
manifest, atomically.

Job records live in ``<workspace>/jobs/<job-id>.json`` (status, timeline,
metrics: numbers and digests, never data) and the sandbox's output directory
in ``<workspace>/jobs/<job-id>/`` (sealed checkpoints only, once the model is
installed). A runner killed outright leaves its record ``running`` with a
dead pid, shown as ``killed``; the next job with the same out-name (or
``resume=JOB``) binds that job's sealed checkpoints read-only and resumes.

What this protects against: plaintext data or weights on the host's disks
(only the sandbox's tmpfs ever holds them; a kill leaves sealed checkpoints
only), keys in files or environment variables, a training run that weakens
isolation silently (``sandbox=False`` warns and is recorded as
``train.unsafe_no_sandbox``). What it does not: see the sandbox's module
docstring (OS isolation, not a TEE); the data keys sit in this process's
memory while the job runs; the job record and ``model.json`` are unsigned
plain JSON (the registry signs what links to them).

This module holds :func:`run_job` and its checks; the rest of the job
machinery is beside it: :mod:`.records` (the job catalogue: records,
status, resume selection), :mod:`.keys` (the job's data keys and sealing
targets) and :mod:`.run` (one job's execution, from keys in to the
installed model).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import ConfigError, IntegrityError, SealtuneError, UsageError
from sealtune.sandbox.selfcheck import probe
from sealtune.sandbox.spec import SandboxSpec
from sealtune.train.distributed import MAX_NPROC
from sealtune.train.jobs.cancel import cancel_check
from sealtune.train.jobs.keys import check_job_keys, dataset_keks
from sealtune.train.jobs.records import (
    JOB_FORMAT,
    JOBS,
    MODELS,
    NAME_RE,
    JobRecord,
    checkpoint_dir,
    now,
    process_start,
    resume_from,
)
from sealtune.train.jobs.run import OUTPUTS, JobResult, JobRun, ProgressFn
from sealtune.train.split import val_count
from sealtune.train.worker import OFFLINE_ENV

if TYPE_CHECKING:
    from sealtune.train.config import TrainConfig
    from sealtune.workspace import Workspace

__all__ = ["run_job"]


def _check_names(ws: Workspace, out_name: str, base: Path) -> None:
    if not NAME_RE.match(out_name):
        raise UsageError(f"model name {out_name!r} is not allowed",
                         hint="use 1-64 letters, digits, '.', '_' or '-'")
    if (ws.area(MODELS) / out_name).exists():
        raise UsageError(f"model {out_name!r} already exists in {ws.area(MODELS)}",
                         hint="choose another --out-name")
    if not base.is_dir():
        raise UsageError(f"base model directory {base} does not exist")


def _check_nproc(nproc: int, *, config: TrainConfig, sandbox: bool) -> None:
    if isinstance(nproc, bool) or not isinstance(nproc, int) or not 1 <= nproc <= MAX_NPROC:
        raise ConfigError(f"--nproc must be an integer from 1 to {MAX_NPROC}")
    if nproc == 1:
        return
    if config.dp is not None:
        raise ConfigError("--nproc > 1 with differential privacy is not available: "
                          "distributed Poisson sampling and its accounting are not wired in",
                          hint="train with --dp-epsilon at --nproc 1")
    if not sandbox:
        raise ConfigError("--nproc > 1 runs only inside the sandbox",
                          hint="drop --no-sandbox, or use --nproc 1")


def run_job(ws: Workspace, *, dataset: str, base: Path, config: TrainConfig, out_name: str,
            sandbox: bool = True, nproc: int = 1, progress: ProgressFn | None = None,
            resume: str | None = None, threads: int | None = None, bwrap: str = "bwrap",
            tmpfs_size: int = 1 << 30, timeout: float | None = None,
            key_names: Sequence[str] | None = None,
            cancel: Callable[[], bool] | None = None) -> JobResult:
    """Fine-tune ``base`` on the catalogue dataset ``dataset`` in a sandbox; install the model.

    Args:
        ws: the workspace.
        dataset: a dataset name in ``<workspace>/datasets``.
        base: the base model directory (safetensors).
        config: the training settings (validated here).
        out_name: the model name: outputs go to ``<workspace>/models/<out_name>/``.
        sandbox: ``False`` trains in this process without isolation (unsafe: warns,
            and is recorded in the ledger as ``train.unsafe_no_sandbox``).
        nproc: training processes inside the sandbox (data parallel, gloo over loopback;
            rank 0 alone reports and seals). Not with DP, not with ``sandbox=False``.
        progress: called with every progress event (aggregate numbers only).
        resume: a killed or failed job to resume; by default the newest killed job with
            the same ``out_name``, dataset and config is resumed if it left a checkpoint.
        threads: torch threads inside, in all (default: all cores), split over the ranks.
        bwrap: the bubblewrap executable.
        tmpfs_size: bytes of the sandbox's private tmpfs workspace.
        timeout: seconds after which the sandbox is destroyed and the job fails.
        key_names: the KEKs that seal the checkpoints and the model (default: the live
            KEKs the dataset is sealed under, so destroying the dataset's key also
            shreds the weights trained on it).
        cancel: polled while the sandbox runs (e.g. ``threading.Event.is_set``); when it
            returns true, or :func:`~sealtune.train.jobs.cancel.request_cancel` was called
            for this job from any process, the sandbox is destroyed, the job's outputs
            removed and :class:`~sealtune.sandbox.SandboxCancelled` raised (the record
            ``cancelled``, ``train.cancelled`` in the ledger).

    Raises:
        SandboxUnavailableError: the sandbox cannot be created (and ``sandbox`` is True).
        UsageError, ConfigError: a bad name, config, base directory or resume target.
        TrainingError: training failed inside (by error class only).
        SandboxCancelled: the job was cancelled (see ``cancel``).
    """
    config.validate()
    base = base.resolve()
    _check_names(ws, out_name, base)
    _check_nproc(nproc, config=config, sandbox=sandbox)
    data_path = _dataset_file(ws, dataset, val_size=config.val_size)
    seal_keys = dataset_keks(ws, data_path) if key_names is None else check_job_keys(key_names)
    for name in seal_keys:
        ws.keys.info(name)  # a missing key fails here, before any sandbox starts
    job_id, run_dir = _new_run_dir(ws)
    spec = _job_spec(ws, run_dir=run_dir, data_path=data_path, base=base, threads=threads,
                     nproc=nproc, tmpfs_size=tmpfs_size, bwrap=bwrap)
    if sandbox:
        _probe_or_refuse(ws, spec, job_id=job_id, run_dir=run_dir)
    previous = resume_from(ws, out_name=out_name, dataset=dataset,
                            fingerprint=config.fingerprint(), resume=resume)
    if previous is not None:
        resume_dir = checkpoint_dir(ws, previous)
        assert resume_dir is not None
        spec = replace(spec, inputs={**spec.inputs, "resume": resume_dir})
    job = JobRecord(ws, _new_record(job_id, out_name=out_name, dataset=dataset, base=base,
                               config=config, sandbox=sandbox, previous=previous, nproc=nproc,
                               seal_keys=seal_keys))
    # Called from here, so that the no-sandbox warning's stacklevel names our caller.
    return JobRun(ws, job, spec, config, previous, progress, threads, timeout, nproc,
                  cancel=cancel_check(ws, job_id, cancel)).execute()


def _dataset_file(ws: Workspace, dataset: str, *, val_size: int | float = 0) -> Path:
    """The dataset's sealed data file, refused if it does not match its manifest digest.

    The manifest binds the content digest, so a dataset whose key was rotated
    (its header re-wrapped) still matches. Where the manifest counts the records,
    a validation split that would leave none to train on is refused here, with its
    numbers (inside the sandbox an error reaches us by class name only).
    """
    from sealtune.data.store import show_dataset

    info = show_dataset(ws, dataset, verify=True)
    data_path = info.file("data")
    if info.intact.get(data_path.name) is False:
        raise IntegrityError(f"dataset {dataset!r}: {data_path.name} does not match its "
                             "manifest digest", hint="restore the dataset from a trusted copy")
    records = info.counts.get("records_out")
    if isinstance(records, int) and not isinstance(records, bool):
        val_count(val_size, records)
    return data_path


def _new_run_dir(ws: Workspace) -> tuple[str, Path]:
    """A fresh job id and its private output directory ``<workspace>/jobs/<job-id>/``."""
    jobs_dir = ws.area(JOBS)
    jobs_dir.mkdir(mode=0o700, exist_ok=True)
    job_id = datetime.now(UTC).strftime("job-%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    run_dir = jobs_dir / job_id
    run_dir.mkdir(mode=0o700)
    return job_id, run_dir


def _job_spec(ws: Workspace, *, run_dir: Path, data_path: Path, base: Path,
              threads: int | None, nproc: int, tmpfs_size: int, bwrap: str) -> SandboxSpec:
    """The sandbox for a job: dataset and base in, the run dir out, the keyring hidden."""
    return SandboxSpec(output_dir=run_dir, inputs={"dataset": data_path, "base": base},
                       hidden=(ws.keyfile_path, ws.ledger_path, ws.config_path,
                               ws.area(MODELS)),
                       env={**OFFLINE_ENV, "OMP_NUM_THREADS": str(
                           max(1, (threads or os.cpu_count() or 1) // nproc))},
                       tmpfs_size=tmpfs_size, bwrap=bwrap, outputs=OUTPUTS, stage="train")


def _probe_or_refuse(ws: Workspace, spec: SandboxSpec, *, job_id: str, run_dir: Path) -> None:
    """Self-check the sandbox; if it fails, remove the run dir and audit the refusal."""
    try:
        probe(spec)
    except SealtuneError as exc:
        shutil.rmtree(run_dir, ignore_errors=True)
        ws.audit("train.refused", f"job/{job_id}", outcome="failure",
                 details={"reason": "sandbox unavailable", "error": type(exc).__name__})
        raise


def _new_record(job_id: str, *, out_name: str, dataset: str, base: Path, config: TrainConfig,
                sandbox: bool, previous: dict[str, Any] | None, nproc: int,
                seal_keys: Sequence[str]) -> dict[str, Any]:
    """A new job record, ``running`` under this process (pid and start time)."""
    rec: dict[str, Any] = {
        "format": JOB_FORMAT, "id": job_id, "out_name": out_name,
        "dataset": dataset, "base": str(base), "config": config.to_dict(),
        "fingerprint": config.fingerprint(), "sandboxed": sandbox,
        "status": "running", "created": now(), "timeline": [], "metrics": {}, "epochs": [],
        "resumed_job": None if previous is None else previous["id"],
        "seal_keys": list(seal_keys),
        "runner": {"pid": os.getpid(), "start": process_start(os.getpid())}}
    if nproc > 1:
        rec["nproc"] = nproc
    return rec
