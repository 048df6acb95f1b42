"""One training job's execution: keys in, the sandboxed worker, events to the ledger, model out.

:class:`JobRun` unwraps and makes the job's data keys (:mod:`.keys`),
measures what will run, starts :mod:`sealtune.train.worker` in a
:class:`~sealtune.sandbox.process.Sandbox` with the keys over the key pipe,
relays progress, keeps each epoch's losses in the job record (``epochs``:
numbers only; a resumed job's worker reports its checkpoint's epochs again,
so the record has them all), records the security timeline
(:class:`~sealtune.sandbox.timeline.Timeline`, each ``sandbox.*`` entry
marked ``"stage": "train"``: ``sandbox.created`` with the measurement and
the isolation flags, ``sandbox.data_decrypted``, ``train.finished``,
``sandbox.outputs_sealed``, ``sandbox.destroyed`` with
the teardown result, and ``sandbox.unexpected_outputs`` naming anything the
sandbox left beyond its sealed outputs, which fails the job; ``train.cancelled``
when a cancel request destroyed the sandbox, see :mod:`.cancel`), accepts only
sealed files as outputs and installs them
into ``<workspace>/models/<out-name>/`` with a ``model.json`` manifest,
atomically (built aside, then renamed). The data keys are zeroed when the
run ends, however it ends. With ``sandbox=False`` the worker runs in this
process over the same event protocol, with a warning and a
``train.unsafe_no_sandbox`` ledger entry.

What this protects against: plaintext outputs installed as a model (each file
must carry the sealed-file magic), a model installed from a sandbox that wrote
files it should not have, a failure inside reported with sample text
(errors travel by exception class and a data-free condition code only, see
:data:`KNOWN_CODES`), a no-sandbox run that goes unrecorded.
What it does not: this is OS isolation, not a TEE (see
:mod:`sealtune.sandbox`); the keys sit in this process's memory while the
job runs; ``--no-sandbox`` offers no isolation at all (plaintext reaches this
process and the host's temp dir); ``model.json`` is unsigned plain JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.data.builds import Build, remove_stale_builds, start_build
from sealtune.errors import DiskFullError, IntegrityError, SealtuneError
from sealtune.keys.base import WrappedKey
from sealtune.keys.content import labelled_digest
from sealtune.keys.versions import CommitGuard, lease
from sealtune.sandbox.measurement import measure
from sealtune.sandbox.process import SandboxEvent
from sealtune.sandbox.spec import SandboxCancelled, SandboxSpec
from sealtune.sandbox.timeline import Timeline, exit_status, run_recorded
from sealtune.train.data import CUT_EVERY_ANSWER
from sealtune.train.jobs.canaries import prepare_canaries
from sealtune.train.jobs.cancel import clear_request, discard_outputs
from sealtune.train.jobs.keys import dataset_key, output_target, resumed_target
from sealtune.train.jobs.records import MODEL_FORMAT, MODELS, JobRecord, now, write_json
from sealtune.train.worker import JobSpec

if TYPE_CHECKING:
    from sealtune.train.config import TrainConfig
    from sealtune.workspace import Workspace

SEALED_MAGIC = b"SEALTUNE"
UNSAFE_WARNING = ("training WITHOUT the sandbox (--no-sandbox): plaintext data and weights "
                  "will exist in this process and on the host's temp dir; recorded in the "
                  "audit ledger as train.unsafe_no_sandbox")
#: The worker's own milestone beyond the sandbox's (sealtune.sandbox.timeline.MILESTONES).
MILESTONES = {"training_finished": "train.finished"}
ProgressFn = Callable[[SandboxEvent], None]
#: What this process may say of a worker error it knows by code (errors leave the sandbox
#: by class and code only): the condition and its fix, neither carrying data.
KNOWN_CODES = {
    CUT_EVERY_ANSWER: ("every training example lost its answer to truncation at max_length",
                       "raise --max-length (or shorten the system and user turns)"),
}
#: The entry module the sandbox runs.
WORKER = "sealtune.train.worker"
#: The code a job measures: the whole sealtune package (jobs -> train -> sealtune).
CODE_DIR = Path(__file__).resolve().parents[2]
#: What the worker leaves in its output directory; anything else is removed.
OUTPUTS = ("model/*.sealed", "checkpoints/ckpt-??????????.sealed")


class TrainingError(SealtuneError):
    """The training job failed inside the sandbox (reported by error class only)."""

    prefix = "train"


@dataclass(frozen=True)
class JobResult:
    """A finished job: where the model went and the figures that may leave the sandbox."""

    job_id: str
    model_dir: Path
    sandboxed: bool
    steps: int
    final_loss: float | None
    resumed_from: int | None
    resumed_job: str | None
    privacy: dict[str, Any] | None
    measurement: dict[str, Any]
    teardown: dict[str, Any] | None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    weights_sha256: str | None = None


class JobRun:
    """One job's execution, from keys in to the installed model.

    :func:`~sealtune.train.jobs.start.run_job` checks the request, makes the
    run directory, the sandbox spec and the record, then calls :meth:`execute`.
    """

    def __init__(self, ws: Workspace, job: JobRecord, spec: SandboxSpec, config: TrainConfig,
                 previous: dict[str, Any] | None, progress: ProgressFn | None,
                 threads: int | None, timeout: float | None, nproc: int = 1,
                 cancel: Callable[[], bool] | None = None) -> None:
        self.ws, self.job, self.spec, self.config = ws, job, spec, config
        self.previous, self.progress, self.threads, self.timeout = (previous, progress,
                                                                     threads, timeout)
        self.nproc = nproc
        self.cancel = cancel or (lambda: False)  # polled while the sandbox runs
        self.keys: dict[str, bytearray] = {}
        self.pending: list[WrappedKey] = []  # what the sandbox will seal under (leased)
        self.fields: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []
        self.codes: list[str] = []  # the errors' data-free condition codes
        self.timeline: Timeline | None = None  # made once the run is measured

    def execute(self) -> JobResult:
        """Run the job and install its model; its data keys are zeroed however it ends."""
        rec = self.job.rec
        try:
            args = self._prepare()
            # While it runs, a retire of a version it seals under is refused (keys.versions).
            with lease(self.ws.root, f"job {rec['id']}", self.pending):
                model_dir, teardown = self._run(rec, args)
        except SandboxCancelled:  # destroyed on request: nothing installed, nothing kept
            rec["status"] = "cancelled"
            discard_outputs(self.ws, rec["id"], self.spec.output_dir)
            self.job.event("train.cancelled", {"checkpoints_removed": True})
            raise
        except BaseException as exc:
            rec["status"], rec["error"] = "failed", type(exc).__name__
            self.job.event("train.failed", {"error": type(exc).__name__}, outcome="failure")
            raise
        finally:
            for key in self.keys.values():
                key[:] = bytes(len(key))
            clear_request(self.ws, rec["id"])  # a request that came too late is moot
        return self._finish(model_dir, teardown)

    def _run(self, rec: dict[str, Any], args: list[str]) -> tuple[Path, dict[str, Any]]:
        """Measure, run the worker (sandboxed or not), check it, install the sealed model."""
        measurement = measure(code=[CODE_DIR],
                              config=json.dumps(rec["config"], sort_keys=True).encode(),
                              base_model=self.spec.inputs["base"],
                              inputs={"dataset": self.spec.inputs["dataset"]})
        rec["measurement"] = {**measurement.to_dict(), "digest": measurement.digest}
        self.job.save()
        self.timeline = Timeline(self.spec, self.job.event, measurement=rec["measurement"],
                                 milestones=MILESTONES)
        if self.cancel():  # asked before the worker started
            raise SandboxCancelled("the job was cancelled before its worker started")
        teardown = self._sandboxed(args) if rec["sandboxed"] else self._unsandboxed(args)
        self._check(teardown)
        return self._install(), teardown

    def _check(self, teardown: Mapping[str, Any]) -> None:
        """Fail unless the worker sealed its outputs and left nothing else behind."""
        if "DiskFullError" in self.errors:  # sealing outputs or checkpoints ran out
            raise DiskFullError(self.spec.output_dir, hint=(
                "the job's sealed checkpoints and outputs are written there: free space "
                "on that file system and rerun to resume from the last sealed checkpoint"))
        known = [KNOWN_CODES[c] for c in self.codes if c in KNOWN_CODES]
        if known:  # a condition the worker named by code: say it and its fix
            raise TrainingError(
                f"training failed inside the sandbox: {', '.join(self.errors)}: {known[0][0]}",
                hint=known[0][1])
        if self.errors or "outputs_sealed" not in self.fields:
            raise TrainingError(
                "training failed inside the sandbox: "
                + (", ".join(self.errors) or "it exited without sealing its outputs "
                   f"({exit_status(teardown.get('exit_code'))})"),
                hint="rerun to resume from the last sealed checkpoint; set "
                     "SEALTUNE_DEBUG=1 and use --no-sandbox on non-sensitive data to debug")
        if teardown.get("outputs_removed"):
            raise IntegrityError(
                f"the sandbox left {teardown['outputs_removed']} unexpected file(s) or "
                "link(s) in its output directory; removed, and named in the audit log "
                "(sandbox.unexpected_outputs)",
                hint="the training code, a library or a model file misbehaved; the model "
                     "was not installed")

    def _prepare(self) -> list[str]:
        rec = self.job.rec
        if not rec["sandboxed"]:
            warnings.warn(UNSAFE_WARNING, UserWarning, stacklevel=4)
            self.job.event("train.unsafe_no_sandbox", {"out_name": rec["out_name"]})
        self.keys["dataset"] = dataset_key(self.ws, self.spec.inputs["dataset"])
        seal_keys = rec.get("seal_keys") or [self.ws.config.default_key]
        output = output_target(self.ws, seal_keys)
        checkpoint = (output_target(self.ws, seal_keys) if self.previous is None else
                      resumed_target(self.ws, self.previous, self.spec.inputs["resume"]))
        # The targets' keys go over the key pipe; the job spec carries their public halves.
        # Zeroed when the run ends, with the dataset key.
        assert output.data_key is not None and checkpoint.data_key is not None
        self.keys["output"], self.keys["checkpoint"] = output.data_key, checkpoint.data_key
        rec["checkpoint"] = checkpoint.to_dict()
        rec["output_keys"] = list(output.entries)
        seed = prepare_canaries(self.ws, rec, self.config, self.previous)
        if seed is not None:  # the release gate's canaries: the seed goes over the key pipe
            self.keys["canaries"] = seed
        self.pending = [*output.wrapped, *checkpoint.wrapped]
        threads = max(1, (self.threads or os.cpu_count() or 1) // self.nproc)
        job_spec = JobSpec(dataset="dataset", base="base", config=self.config, output=output,
                           checkpoint=checkpoint, threads=threads, nproc=self.nproc,
                           resume=None if self.previous is None else "resume")
        return ["--spec-json", json.dumps(job_spec.to_dict())]

    def _handle(self, ev: SandboxEvent) -> None:
        if ev.type == "progress":
            if self.progress is not None:
                self.progress(ev)
            return
        if ev.type == "error":
            self.errors.append(str(ev.fields.get("kind")))
            if isinstance(ev.fields.get("code"), str):
                self.codes.append(str(ev.fields["code"]))
            return
        if ev.type == "event" and ev.name == "epoch_finished":
            record_epoch(self.job.rec, ev.fields)
            self.job.save()
            return
        self.fields[ev.name] = dict(ev.fields)
        assert self.timeline is not None
        self.timeline.observe(ev)

    def _sandboxed(self, args: list[str]) -> dict[str, Any]:
        assert self.timeline is not None
        return run_recorded(self.timeline, WORKER, args, secrets=self.keys,
                            handle=self._handle, timeout=self.timeout, cancel=self.cancel)

    def _unsandboxed(self, args: list[str]) -> dict[str, Any]:
        """Run the worker in this process (``--no-sandbox``): same protocol, no isolation."""
        from sealtune.sandbox.launcher import ChildContext, wipe_tree
        from sealtune.sandbox.wire import EventWriter
        from sealtune.train import worker

        work = Path(tempfile.mkdtemp(prefix="sealtune-unsafe-"))
        (work / "in").mkdir()
        (work / "tmp").mkdir()
        for name, path in self.spec.inputs.items():
            (work / "in" / name).symlink_to(path)
        read_fd, write_fd = os.pipe()
        queued: list[SandboxEvent] = []
        thread = threading.Thread(target=_relay, args=(read_fd, self.progress, queued),
                                  daemon=True)
        thread.start()
        ctx = ChildContext(events=EventWriter(write_fd), keys=dict(self.keys),
                           workdir=work / "tmp", outdir=self.spec.output_dir, indir=work / "in")
        try:
            worker.main(ctx, args)
        except Exception as exc:  # reported by class only, as inside the sandbox
            if os.environ.get("SEALTUNE_DEBUG") == "1":  # unless debugging (the hint's way)
                raise
            self.errors.append(type(exc).__name__)
            if isinstance(getattr(exc, "code", None), str):
                self.codes.append(exc.code)  # type: ignore[attr-defined]
        finally:
            wiped = wipe_tree(work / "tmp")
            shutil.rmtree(work, ignore_errors=True)
            os.close(write_fd)
            thread.join()
        for ev in queued:
            if ev.type != "progress":
                self._handle(ev)
        assert self.timeline is not None
        return self.timeline.unsandboxed(wiped=wiped)

    def _install(self) -> Path:
        """Move the sealed outputs into ``models/<out_name>/`` with ``model.json``, atomically."""
        rec = self.job.rec
        models = self.ws.area(MODELS)
        models.mkdir(mode=0o700, exist_ok=True)
        remove_stale_builds(models)  # a run killed mid-install left its half build
        building = start_build(models, str(rec["id"]))  # locked while this process lives
        try:
            final = self._install_into(building, models)
        except BaseException:
            building.abandon()
            raise
        self.ws.publish(MODELS, str(rec["out_name"]), final)  # remote storage, if configured
        with contextlib.suppress(OSError):
            (self.spec.output_dir / "model").rmdir()
        return final

    def _install_into(self, building: Build, models: Path) -> Path:
        rec, build = self.job.rec, building.path
        files: dict[str, str] = {}
        for path in sorted((self.spec.output_dir / "model").iterdir()):
            with path.open("rb") as fh:
                if not path.name.endswith(".sealed") or fh.read(8) != SEALED_MAGIC:
                    raise IntegrityError(f"sandbox output {path.name} is not a sealed file")
            files[path.name] = labelled_digest(path)  # unchanged by key rotation
            os.replace(path, build / path.name)
        finished = self.fields.get("training_finished", {})
        measurement = rec["measurement"]
        write_json(build / "model.json", {
            "format": MODEL_FORMAT, "name": rec["out_name"], "job": rec["id"],
            "created": now(), "sandboxed": rec["sandboxed"],
            "dataset": {"name": rec["dataset"],
                        "digest": labelled_digest(self.spec.inputs["dataset"])},
            "base": {"path": rec["base"], "digest": measurement["base_model"]},
            "config": rec["config"], "privacy": _privacy(finished),
            "measurement": measurement, "files": files,
            "weights_sha256": self._weights(), "keys": rec["output_keys"],
            "canaries": rec.get("canaries")})
        final: Path = models / str(rec["out_name"])
        # Installed only while the versions it is sealed under are live (keys.versions).
        with CommitGuard(self.ws.keys, rec["output_keys"], what=f"model {rec['out_name']!r}"
                         ) as guard:
            guard.check()
            building.finish(final)
        return final

    def _finish(self, model_dir: Path, teardown: dict[str, Any]) -> JobResult:
        rec = self.job.rec
        finished = self.fields.get("training_finished", {})
        rec["metrics"] = {k: finished.get(k) for k in (
            "steps", "final_loss", "resumed_from", "stop", "world_size", "seconds",
            "dropped_no_assistant_tokens", "train_examples", "val_examples", "eval_loss")}
        rec["privacy"], rec["model"], rec["status"] = _privacy(finished), str(model_dir), \
            "finished"
        rec["weights_sha256"] = self._weights()
        self.job.event("train.model_installed", {"model": rec["out_name"]})
        for empty in (self.spec.output_dir / "checkpoints", self.spec.output_dir):
            with contextlib.suppress(OSError):  # kept when it holds the sealed final checkpoint
                empty.rmdir()
        if self.previous is not None:
            old = JobRecord(self.ws, {**self.previous, "resumed_by": rec["id"]})
            old.save()
        return JobResult(job_id=rec["id"], model_dir=model_dir, sandboxed=rec["sandboxed"],
                         steps=int(finished.get("steps") or 0),
                         final_loss=finished.get("final_loss"),
                         resumed_from=finished.get("resumed_from"),
                         resumed_job=rec["resumed_job"], privacy=rec["privacy"],
                         measurement=rec["measurement"], teardown=teardown,
                         timeline=list(rec["timeline"]), weights_sha256=self._weights())

    def _weights(self) -> str | None:
        """The sandbox's digest of the plaintext weights (``outputs_sealed``), if it sent one."""
        value = self.fields.get("outputs_sealed", {}).get("weights_sha256")
        return value if isinstance(value, str) else None


def _relay(read_fd: int, progress: ProgressFn | None, queued: list[SandboxEvent]) -> None:
    """Read the in-process worker's events (``--no-sandbox``): progress at once, all queued.

    Runs in a thread; the ledger is written from the main thread only.
    """
    from sealtune.sandbox.wire import decode_event

    with os.fdopen(read_fd, "rb") as fh:
        for line in fh:
            fields = decode_event(line)
            ev = SandboxEvent(fields.pop("type"), str(fields.pop("name")),  # type: ignore[arg-type]
                              fields, time.time())
            if ev.type == "progress" and progress is not None:
                progress(ev)
            queued.append(ev)


#: The fields of an ``epoch_finished`` event kept in the job record (all numbers).
EPOCH_FIELDS = ("epoch", "step", "train_loss", "eval_loss", "eval_perplexity")


def record_epoch(rec: dict[str, Any], fields: Mapping[str, Any]) -> None:
    """Add one epoch's figures to ``rec["epochs"]`` (a report for the same step replaces it)."""
    entry = {k: fields.get(k) for k in EPOCH_FIELDS}
    if not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool))
               for v in entry.values()) or not isinstance(entry["step"], int):
        return  # numbers only: anything else from the sandbox is not recorded
    epochs = [e for e in rec.get("epochs", []) if e.get("step") != entry["step"]]
    rec["epochs"] = sorted([*epochs, entry], key=lambda e: int(e["step"]))


def _privacy(finished: Mapping[str, Any]) -> dict[str, Any] | None:
    """The privacy figures (numbers only) from the ``training_finished`` event."""
    if not finished.get("dp"):
        return None
    return {"epsilon_spent": finished.get("epsilon"), "delta": finished.get("delta"),
            "noise_multiplier": finished.get("noise_multiplier"),
            "sample_rate": finished.get("sample_rate"), "steps": finished.get("dp_steps"),
            "unit": "example-level (one record)"}
