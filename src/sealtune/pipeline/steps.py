"""The step adapters: the one place the pipeline calls the stages.

Each adapter names the packages that compute its step, its normalised
settings, its inputs by digest, and how to run it: :class:`DataAdapter`
calls :func:`sealtune.data.sandboxed.ingest_dataset` (in the data sandbox,
as ``sealtune data ingest`` does; its measurement, recorded in the dataset
manifest, goes into the step's record and statement) and
:func:`sealtune.data.store.show_dataset`; :class:`TrainAdapter`
calls :func:`sealtune.train.jobs.run_job` (as ``sealtune train`` does);
:class:`AssessAdapter` calls :func:`sealtune.assess.run_gate` (as
``sealtune assess`` does) on the train step's model and stops the run with
:class:`~sealtune.errors.GateFailed` (exit 4) when the gate fails.
When the stages move behind their packages' verbs, only this module changes.

Outputs are content-addressed: the data step's dataset is
``<dataset>-<first 12 hex of the step key>`` and the train step's model
``<out>-<first 12 hex>``, so a step's output is a function of its key. A run
killed after a stage published its output but before the run state was
saved finds the output on the rerun and adopts it, but only if the output
says it came from that very step key (the dataset manifest's ``pipeline``
record; the model record's dataset, base and settings), and never a forced
step's. Each output is recorded by digest (``content-sha256:`` for sealed
files, which key rotation keeps; ``sha256:`` for plain ones), plus digests
that do not depend on random data keys: the dataset's record stream
(``records``) and the trained weights (``weights``).

What this protects against: a step run on inputs other than those its key
names (inputs are digested from disk right before the step, and a dataset
that no longer matches the data step's record fails the train step), and
adopting an output some other command made, a model that failed the release
gate going on as if it passed (the run stops; the failed report is sealed and
recorded all the same). What it does not: the stages' own limits (see their
modules), and the checks are of digests recorded in the unsigned run state.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import IntegrityError, UsageError
from sealtune.keys.content import DIGEST_LABEL, labelled_digest
from sealtune.pipeline.cache import (
    ASSESS_PACKAGES,
    DATA_PACKAGES,
    TRAIN_PACKAGES,
    file_sha256,
    tree_digest,
)

if TYPE_CHECKING:
    from sealtune.assess.bases import BaseModel
    from sealtune.pipeline.schema import AssessStep, DataStep, TrainStep
    from sealtune.pipeline.state import StepRecord
    from sealtune.workspace import Workspace

__all__ = ["AssessAdapter", "DataAdapter", "Outcome", "ProgressFn", "TrainAdapter",
           "artifact_digest", "output_name"]

#: ``progress(fields)``: numbers and names only (phase, done, total; step, loss, ε).
ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Outcome:
    """What a step produced: artifacts and results by digest, and figures to show."""

    outputs: dict[str, str]
    digests: dict[str, str]
    summary: dict[str, Any]
    measurement: dict[str, Any] | None = None


def output_name(prefix: str, key: str) -> str:
    """The content-addressed name of a step's output: ``<prefix>-<12 hex of the key>``."""
    return f"{prefix}-{key.removeprefix('sha256:')[:12]}"


def artifact_digest(path: Path, like: str) -> str:
    """The digest of ``path`` in the form ``like`` was recorded in (sealed or plain)."""
    if like.startswith(DIGEST_LABEL + ":"):
        return labelled_digest(path)
    return file_sha256(path)


def _digests(root: Path, ws: Workspace, names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        path = root / name
        with path.open("rb") as fh:
            sealed = fh.read(8) == b"SEALTUNE"
        rel = path.relative_to(ws.root).as_posix()
        out[rel] = labelled_digest(path) if sealed else file_sha256(path)
    return out


@contextlib.contextmanager
def _replacing(target: Path, *, force: bool) -> Any:
    """With ``force``, move an existing ``target`` aside; remove it once the block succeeds."""
    aside = None
    if force and target.exists():
        aside = target.parent / f".replaced-{target.name}-{os.urandom(4).hex()}"
        os.rename(target, aside)
    try:
        yield
    except BaseException:
        if aside is not None and not target.exists():
            os.rename(aside, target)
        raise
    for old in target.parent.glob(f".replaced-{target.name}-*"):  # this one, and a killed run's
        shutil.rmtree(old, ignore_errors=True)


class DataAdapter:
    """``steps.data``: ingest the raw input as a sealed dataset."""

    name = "data"
    packages = DATA_PACKAGES

    def __init__(self, step: DataStep, *, pipeline: str, default_key: str) -> None:
        self.step = step
        self.pipeline = pipeline
        self.keys = list(step.keys) if step.keys is not None else [default_key]

    def settings(self) -> dict[str, Any]:
        """The step's normalised settings, with the KEK names resolved."""
        return {**self.step.settings(), "keys": self.keys}

    def inputs(self, ws: Workspace, done: Mapping[str, StepRecord]) -> dict[str, str]:
        """The raw input's digest (checked against ``input_sha256``) and the policy digest.

        A sealed raw input (``sealtune seal``) is named by its content digest, which a
        key rotation does not change; it is opened only by the ingest, in memory.
        """
        from sealtune.keys.sealing import is_sealed

        sealed = is_sealed(self.step.input)
        digest = labelled_digest(self.step.input) if sealed else file_sha256(self.step.input)
        pin = self.step.input_sha256
        if pin is not None and digest.split(":", 1)[1] != pin:
            raise IntegrityError(f"step data: {self.step.input} does not have the "
                                 f"{'content ' if sealed else ''}SHA-256 that "
                                 "steps.data.input_sha256 pins",
                                 hint="restore the expected input, or update the pin")
        return {"input": digest, "policy": "sha256:" + self.step.policy.digest()}

    def execute(self, ws: Workspace, *, key: str, inputs: Mapping[str, str],
                done: Mapping[str, StepRecord], force: bool, progress: ProgressFn | None,
                secret: Callable[[], bytes]) -> Outcome:
        """Ingest (or adopt the dataset a killed run published); see the module docstring."""
        from sealtune.data.redact.keys import DatasetKeys
        from sealtune.data.store import DATASETS, datasets_dir

        name = output_name(self.step.dataset, key)
        path = datasets_dir(ws) / name
        for stale in path.parent.glob(f".build-{name}-*"):  # a killed run's half build
            shutil.rmtree(stale, ignore_errors=True)
        if not force and self._adoptable(ws, name, key):
            return self._outcome(ws, name, adopted=True)
        with _replacing(path, force=force):
            self._ingest(ws, name, key, DatasetKeys.derive(secret(), key), progress)
        assert (ws.area(DATASETS) / name).is_dir()
        return self._outcome(ws, name, adopted=False)

    def _ingest(self, ws: Workspace, name: str, key: str, keys: Any,
                progress: ProgressFn | None) -> None:
        from sealtune.data.sandboxed import ingest_dataset  # numpy, datasketch: when it runs

        def relay(phase: str, done: int, total: int | None) -> None:
            if progress is not None:
                progress({"phase": phase, "done": done, "total": total})

        s = self.step
        ingest_dataset(ws, s.input, name=name, policy=s.policy, format=s.format,
                       text_field=s.text_field, on_error=s.on_error, key_names=self.keys,
                       progress=relay, dataset_keys=keys,
                       provenance={"pipeline": self.pipeline, "step": "data", "step_key": key})

    def _adoptable(self, ws: Workspace, name: str, key: str) -> bool:
        from sealtune.data.store import DATASETS, MANIFEST_FILE, show_dataset

        if not (ws.area(DATASETS) / name / MANIFEST_FILE).is_file():
            return False
        info = show_dataset(ws, name, verify=True)
        if (info.manifest.get("pipeline") or {}).get("step_key") != key:
            raise UsageError(f"dataset {name!r} exists and was not made by this pipeline step",
                             hint="remove or rename it, or rename steps.data.dataset")
        if not all(info.intact.values()):
            raise IntegrityError(f"step data: dataset {name!r} does not match its manifest",
                                 hint="rerun with --force-step data to rebuild it")
        return True

    def _outcome(self, ws: Workspace, name: str, *, adopted: bool) -> Outcome:
        from sealtune.data.store import show_dataset

        info = show_dataset(ws, name, verify=False)
        files = info.manifest["files"]
        names = [files[r]["name"] for r in ("data", "quarantine", "keys")]
        names += [files["findings"], files["bom"], "dataset.json"]
        counts = info.counts
        screening = _screening(info.path / files["findings"])
        return Outcome(
            outputs=_digests(info.path, ws, names),
            digests={"records": "sha256:" + files["data"]["plaintext_sha256"],
                     "quarantine_records": "sha256:" + files["quarantine"]["plaintext_sha256"]},
            summary={"dataset": name, "adopted": adopted, "keys": list(self.keys),
                     "policy": self.step.policy_source, **counts, **screening},
            measurement=(info.manifest.get("sandbox") or {}).get("measurement"))


def _screening(findings: Path) -> dict[str, int]:
    """Duplicates dropped and trigger records quarantined, from the findings (counts only)."""
    counts = json.loads(findings.read_text("utf-8"))["screening"]["counts"]
    dups = sum(counts.get(c, {}).get("drop", 0) for c in ("exact_duplicate", "near_duplicate"))
    return {"duplicates_dropped": dups,
            "triggers_quarantined": counts.get("trigger", {}).get("quarantine", 0)}


class TrainAdapter:
    """``steps.train``: fine-tune in the sandbox on the data step's dataset."""

    name = "train"
    packages = TRAIN_PACKAGES

    def __init__(self, step: TrainStep) -> None:
        self.step = step
        self._base: BaseModel | None = None

    def settings(self) -> dict[str, Any]:
        """The step's normalised settings (every training field, defaults included)."""
        return self.step.settings()

    def base(self, ws: Workspace) -> Path:
        """The base directory: a registered base verified (exit 3 if changed), or the path.

        An unpinned directory is not warned about here (the step's summary says
        ``base_pinned: false``, and the audit log records ``base.unpinned``).
        """
        if self._base is None:
            from sealtune.assess import resolve_base

            self._base = resolve_base(ws, self.step.base, warn=False)
        return self._base.path

    def inputs(self, ws: Workspace, done: Mapping[str, StepRecord]) -> dict[str, str]:
        """The dataset (checked against the data step's record) and the base model digests."""
        data = done["data"]
        dataset = str(data.summary["dataset"])
        rel = f"datasets/{dataset}/data.jsonl.sealed"
        recorded = data.outputs[rel]
        path = ws.area("datasets") / dataset / "data.jsonl.sealed"
        if not path.is_file() or artifact_digest(path, recorded) != recorded:
            raise IntegrityError(f"step train: its input {rel} changed after the data step "
                                 "recorded it", hint="restore the dataset, or rerun with "
                                 "--force-step data to rebuild it")
        return {"dataset": recorded, "records": data.digests["records"],
                "base": tree_digest(self.base(ws))}

    def execute(self, ws: Workspace, *, key: str, inputs: Mapping[str, str],
                done: Mapping[str, StepRecord], force: bool, progress: ProgressFn | None,
                secret: Callable[[], bytes]) -> Outcome:
        """Train (or adopt the model a killed run installed); see the module docstring."""
        from sealtune.train.jobs.records import MODELS

        dataset, base_digest = str(done["data"].summary["dataset"]), inputs["base"]
        name = output_name(self.step.out, key)
        target = ws.area(MODELS) / name
        if not force and self._adoptable(target, dataset, base_digest):
            return self._outcome(ws, target, adopted=True)
        with _replacing(target, force=force):
            self._run(ws, name, dataset, progress)
        return self._outcome(ws, target, adopted=False)

    def _run(self, ws: Workspace, name: str, dataset: str, progress: ProgressFn | None) -> None:
        from sealtune.train.jobs import run_job  # the job machinery loads only when it runs

        def relay(ev: Any) -> None:
            if progress is not None:
                progress({k: ev.fields.get(k) for k in ("step", "total", "loss", "epsilon",
                                                         "eta_s")})

        s = self.step
        run_job(ws, dataset=dataset, base=self.base(ws), config=s.config, out_name=name,
                       nproc=s.nproc, progress=relay, threads=s.threads,
                       tmpfs_size=s.tmpfs_mb << 20, timeout=s.timeout_s,
                       key_names=None if s.keys is None else list(s.keys))

    def _adoptable(self, target: Path, dataset: str, base_digest: str) -> bool:
        record = target / "model.json"
        if not record.is_file():
            return False
        model = json.loads(record.read_text("utf-8"))
        same = (model.get("dataset", {}).get("name") == dataset
                and model.get("base", {}).get("digest") == base_digest
                and model.get("config") == self.step.config.to_dict()
                and isinstance(model.get("weights_sha256"), str))
        if not same:
            raise UsageError(f"model {target.name!r} exists and was not made by this pipeline "
                             "step", hint="remove or rename it, or rename steps.train.out")
        return True

    def _outcome(self, ws: Workspace, target: Path, *, adopted: bool) -> Outcome:
        model = json.loads((target / "model.json").read_text("utf-8"))
        names = [*sorted(model["files"]), "model.json"]
        outputs = _digests(target, ws, names)
        for file, digest in model["files"].items():
            if outputs[f"{target.relative_to(ws.root).as_posix()}/{file}"] != digest:
                raise IntegrityError(f"step train: {target.name}/{file} does not match "
                                     "model.json", hint="rerun with --force-step train")
        from sealtune.train.jobs.records import show_job

        privacy = model.get("privacy") or {}
        metrics = show_job(ws, str(model["job"])).get("metrics") or {}
        summary = {"model": target.name, "adopted": adopted, "job": model["job"],
                   "sandboxed": model.get("sandboxed"), "keys": model.get("keys"),
                   "epsilon_spent": privacy.get("epsilon_spent"), "delta": privacy.get("delta"),
                   "steps": metrics.get("steps"), "final_loss": metrics.get("final_loss"),
                   "base": None if self._base is None else self._base.name,
                   "base_pinned": None if self._base is None else self._base.pinned}
        return Outcome(outputs=outputs, digests={"weights": model["weights_sha256"]},
                       summary=summary, measurement=model.get("measurement"))


class AssessAdapter:
    """``steps.assess``: the release gate on the train step's model; a failure stops the run.

    Its inputs are the model's files as the train step recorded them, its
    weights digest and the policy's; a gate that passed is cached like any
    step. A failing gate raises :class:`~sealtune.errors.GateFailed` after
    its report is written, sealed, signed and recorded (``assess.failed``),
    and is never cached: the next run assesses again.
    """

    name = "assess"
    packages = ASSESS_PACKAGES

    def __init__(self, step: AssessStep) -> None:
        self.step = step

    def settings(self) -> dict[str, Any]:
        """The step's normalised settings (the policy by its digest)."""
        return self.step.settings()

    def inputs(self, ws: Workspace, done: Mapping[str, StepRecord]) -> dict[str, str]:
        """The model's files and weights (as the train step recorded them) and the policy."""
        train = done["train"]
        return {**train.outputs, "weights": train.digests["weights"],
                "policy": self.step.policy.digest}

    def execute(self, ws: Workspace, *, key: str, inputs: Mapping[str, str],
                done: Mapping[str, StepRecord], force: bool, progress: ProgressFn | None,
                secret: Callable[[], bytes]) -> Outcome:
        """Run the gate; raise GateFailed (exit 4) unless it passes."""
        from sealtune.assess import run_gate
        from sealtune.assess.assessments import ASSESSMENTS
        from sealtune.evidence import gate_report_signer

        s, model = self.step, str(done["train"].summary["model"])
        gate = run_gate(ws, model=model, policy=s.policy, out=s.report_dir,
                        sign=gate_report_signer(ws), threads=s.threads, timeout=s.timeout_s,
                        warn=False)
        gate.raise_if_failed()
        names = ["report.json.sealed", "report.dsse.json.sealed", "assessment.json"]
        return Outcome(
            outputs=_digests(ws.area(ASSESSMENTS) / gate.id, ws, names),
            digests={"report": gate.report_sha256, "model": gate.model_digest},
            summary={"assessment": gate.id, "verdict": gate.verdict, "model": model,
                     "model_digest": gate.model_digest, "report": str(gate.report),
                     "keyid": gate.keyid,
                     "probes": {r.name: r.verdict for r in gate.results}})
