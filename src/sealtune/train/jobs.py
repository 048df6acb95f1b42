"""The parent side of a training job: keys, measurement, the sandbox, sealed outputs.

:func:`run_job` unwraps the dataset's data key in this process (the keyring
never enters the sandbox), makes fresh data keys for the outputs and the
checkpoints, measures what will run, starts :mod:`sealtune.train.worker` in a
bubblewrap :class:`~sealtune.train.sandbox.Sandbox` with the keys over the key
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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.core.envelope import make_prefix, new_data_key, read_header, suite_for, unlock_header
from sealtune.core.envelope import wrap_aad as _wrap_aad
from sealtune.errors import ConfigError, IntegrityError, SealtuneError, UsageError
from sealtune.train.distributed import MAX_NPROC
from sealtune.train.sandbox import Sandbox, SandboxEvent, SandboxSpec, build_argv, measure, probe
from sealtune.train.worker import OFFLINE_ENV, JobSpec, SealTarget

if TYPE_CHECKING:
    from sealtune.train.config import TrainConfig
    from sealtune.workspace import Workspace

__all__ = ["JobResult", "TrainingError", "list_jobs", "run_job", "show_job"]

JOBS, MODELS = "jobs", "models"
JOB_FORMAT, MODEL_FORMAT = "sealtune.job/v1", "sealtune.model/v1"
SEALED_MAGIC = b"SEALTUNE"
UNSAFE_WARNING = ("training WITHOUT the sandbox (--no-sandbox): plaintext data and weights "
                  "will exist in this process and on the host's temp dir; recorded in the "
                  "audit ledger as train.unsafe_no_sandbox")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_LEDGER = {"data_decrypted": "sandbox.data_decrypted", "training_finished": "train.finished",
           "outputs_sealed": "sandbox.outputs_sealed"}
ProgressFn = Callable[[SandboxEvent], None]


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


# -- the job catalogue ------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _proc_start(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[19].decode()
    except (OSError, IndexError):
        return None


def _status(rec: dict[str, Any]) -> str:
    """``running`` only while the recorded runner process still exists; else ``killed``."""
    runner = rec.get("runner") or {}
    if rec.get("status") == "running" and _proc_start(int(runner.get("pid", 0))) != runner.get(
            "start"):
        return "killed"
    return str(rec.get("status"))


def _write_json(path: Path, data: object) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def list_jobs(ws: Workspace) -> list[dict[str, Any]]:
    """Every job record, oldest first, with its effective status (killed runners shown so)."""
    root = ws.root / JOBS
    out = []
    for path in sorted(root.glob("*.json")) if root.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            rec = json.loads(path.read_text("utf-8"))
            if isinstance(rec, dict) and rec.get("format") == JOB_FORMAT:
                out.append({**rec, "status": _status(rec)})
    return sorted(out, key=lambda r: str(r.get("created")))


def show_job(ws: Workspace, job_id: str) -> dict[str, Any]:
    """One job record (with its effective status).

    Raises:
        UsageError: no job with that id.
    """
    if not _NAME.match(job_id) or not (ws.root / JOBS / f"{job_id}.json").is_file():
        raise UsageError(f"no job {job_id!r}", hint="list them with 'sealtune jobs list'")
    rec = json.loads((ws.root / JOBS / f"{job_id}.json").read_text("utf-8"))
    return {**rec, "status": _status(rec)}


class _Job:
    """A job record that appends to its timeline, rewrites itself and audits each event."""

    def __init__(self, ws: Workspace, rec: dict[str, Any]) -> None:
        self.ws, self.rec = ws, rec
        self.path = ws.root / JOBS / f"{rec['id']}.json"

    def save(self) -> None:
        self.rec["updated"] = _now()
        _write_json(self.path, self.rec)

    def event(self, action: str, details: Mapping[str, Any], *, at: float | None = None,
              outcome: str = "success") -> None:
        when = datetime.fromtimestamp(at if at is not None else time.time(), UTC)
        self.rec["timeline"].append({"at": when.isoformat(timespec="milliseconds"),
                                     "event": action, "outcome": outcome, **details})
        self.save()
        self.ws.audit(action, f"job/{self.rec['id']}", outcome=outcome,  # type: ignore[arg-type]
                      details=dict(details))


# -- keys ------------------------------------------------------------------------------


def _file_key(ws: Workspace, path: Path) -> bytearray:
    """Unwrap a sealed file's data key through the workspace's key service (audited)."""
    with path.open("rb") as fh:
        opened = unlock_header(read_header(fh), unwrap=lambda entry, aad: ws.keys.unwrap(
            entry, aad=aad) if ws.keys.can_unwrap(entry) else None)
    return bytearray(opened.data_key)


def _new_target(ws: Workspace) -> tuple[bytearray, SealTarget]:
    key_name = ws.config.default_key
    suite = suite_for(ws.keys.info(key_name).algorithm)
    key = new_data_key(suite)
    prefix = make_prefix(key, suite=suite)
    wrapped = ws.keys.wrap(key_name, key, aad=_wrap_aad(prefix))
    return bytearray(key), SealTarget(prefix, (wrapped,))


def _old_target(ws: Workspace, rec: dict[str, Any]) -> tuple[bytearray, SealTarget]:
    """The checkpoint key of the job being resumed, unwrapped again."""
    target = SealTarget.from_dict(rec["checkpoint"], f"job {rec['id']} checkpoint")
    key = ws.keys.unwrap(target.wrapped[0], aad=_wrap_aad(target.prefix))
    return bytearray(key), target


# -- resume ----------------------------------------------------------------------------


def _checkpoints(ws: Workspace, rec: dict[str, Any]) -> Path | None:
    path = ws.root / JOBS / str(rec["id"]) / "checkpoints"
    return path if path.is_dir() and any(path.glob("ckpt-*.sealed")) else None


def _resume_from(ws: Workspace, *, out_name: str, dataset: str, fingerprint: str,
                 resume: str | None) -> dict[str, Any] | None:
    """The job to resume: ``resume`` if given, else the newest killed one of ``out_name``."""
    if resume is not None:
        rec = show_job(ws, resume)
        if rec["status"] not in ("killed", "failed") or _checkpoints(ws, rec) is None:
            raise UsageError(f"job {resume} cannot be resumed: it is {rec['status']} and "
                             "must be killed or failed with a sealed checkpoint")
        if rec["dataset"] != dataset:
            raise UsageError(f"job {resume} trained on dataset {rec['dataset']!r}, not "
                             f"{dataset!r}")
        return rec
    found = [r for r in list_jobs(ws) if r.get("out_name") == out_name
             and r["status"] in ("killed", "failed") and not r.get("resumed_by")
             and r.get("dataset") == dataset and r.get("fingerprint") == fingerprint
             and _checkpoints(ws, r) is not None]
    return found[-1] if found else None


# -- the run ----------------------------------------------------------------------------


def _check_names(ws: Workspace, out_name: str, base: Path) -> None:
    if not _NAME.match(out_name):
        raise UsageError(f"model name {out_name!r} is not allowed",
                         hint="use 1-64 letters, digits, '.', '_' or '-'")
    if (ws.root / MODELS / out_name).exists():
        raise UsageError(f"model {out_name!r} already exists in {ws.root / MODELS}",
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


def _sandbox_flags(spec: SandboxSpec) -> dict[str, Any]:
    argv = build_argv(spec, ["entry"], bwrap="bwrap")
    isolation = {"--die-with-parent", "--new-session", "--clearenv", "--disable-userns"}
    return {"isolation": [a for a in argv if a.startswith("--unshare") or a in isolation],
            "cap_drop": "ALL", "network": "loopback only", "tmpfs_bytes": spec.tmpfs_size,
            "limits": spec.limits.as_args(), "inputs": sorted(spec.inputs),
            "hidden": [str(h) for h in spec.hidden]}


def run_job(ws: Workspace, *, dataset: str, base: Path, config: TrainConfig, out_name: str,
            sandbox: bool = True, nproc: int = 1, progress: ProgressFn | None = None,
            resume: str | None = None, threads: int | None = None, bwrap: str = "bwrap",
            tmpfs_size: int = 1 << 30, timeout: float | None = None) -> JobResult:
    """Fine-tune ``base`` on the catalogue dataset ``dataset`` in a sandbox; install the model.

    Args:
        ws: the workspace (its default key seals the outputs and checkpoints).
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

    Raises:
        SandboxUnavailableError: the sandbox cannot be created (and ``sandbox`` is True).
        UsageError, ConfigError: a bad name, config, base directory or resume target.
        TrainingError: training failed inside (by error class only).
    """
    from sealtune.data.store import show_dataset

    config.validate()
    base = base.resolve()
    _check_names(ws, out_name, base)
    _check_nproc(nproc, config=config, sandbox=sandbox)
    info = show_dataset(ws, dataset, verify=True)
    data_path = info.file("data")
    if info.intact.get(data_path.name) is False:
        raise IntegrityError(f"dataset {dataset!r}: {data_path.name} does not match its "
                             "manifest digest", hint="restore the dataset from a trusted copy")
    jobs_dir = ws.root / JOBS
    jobs_dir.mkdir(mode=0o700, exist_ok=True)
    job_id = datetime.now(UTC).strftime("job-%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    run_dir = jobs_dir / job_id
    run_dir.mkdir(mode=0o700)
    spec = SandboxSpec(output_dir=run_dir, inputs={"dataset": data_path, "base": base},
                       hidden=(ws.keyfile_path, ws.ledger_path, ws.config_path,
                               ws.root / MODELS),
                       env={**OFFLINE_ENV, "OMP_NUM_THREADS": str(
                           max(1, (threads or os.cpu_count() or 1) // nproc))},
                       tmpfs_size=tmpfs_size, bwrap=bwrap)
    if sandbox:
        try:
            probe(spec)
        except SealtuneError as exc:
            shutil.rmtree(run_dir, ignore_errors=True)
            ws.audit("train.refused", f"job/{job_id}", outcome="failure",
                     details={"reason": "sandbox unavailable", "error": type(exc).__name__})
            raise
    previous = _resume_from(ws, out_name=out_name, dataset=dataset,
                            fingerprint=config.fingerprint(), resume=resume)
    if previous is not None:
        resume_dir = _checkpoints(ws, previous)
        assert resume_dir is not None
        spec = replace(spec, inputs={**spec.inputs, "resume": resume_dir})
    job = _Job(ws, {"format": JOB_FORMAT, "id": job_id, "out_name": out_name,
                    "dataset": dataset, "base": str(base), "config": config.to_dict(),
                    "fingerprint": config.fingerprint(), "sandboxed": sandbox,
                    "status": "running", "created": _now(), "timeline": [], "metrics": {},
                    "resumed_job": None if previous is None else previous["id"],
                    "runner": {"pid": os.getpid(), "start": _proc_start(os.getpid())}})
    if nproc > 1:
        job.rec["nproc"] = nproc
    return _Run(ws, job, spec, config, previous, progress, threads, timeout,
                nproc).execute()


class _Run:
    """One job's execution (split from :func:`run_job` to keep each step small)."""

    def __init__(self, ws: Workspace, job: _Job, spec: SandboxSpec, config: TrainConfig,
                 previous: dict[str, Any] | None, progress: ProgressFn | None,
                 threads: int | None, timeout: float | None, nproc: int = 1) -> None:
        self.ws, self.job, self.spec, self.config = ws, job, spec, config
        self.previous, self.progress, self.threads, self.timeout = (previous, progress,
                                                                     threads, timeout)
        self.nproc = nproc
        self.keys: dict[str, bytearray] = {}
        self.fields: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []

    def execute(self) -> JobResult:
        rec = self.job.rec
        try:
            args = self._prepare()
            measurement = measure(code=[Path(__file__).resolve().parents[1]],
                                  config=json.dumps(rec["config"], sort_keys=True).encode(),
                                  base_model=self.spec.inputs["base"],
                                  inputs={"dataset": self.spec.inputs["dataset"]})
            rec["measurement"] = {**measurement.to_dict(), "digest": measurement.digest}
            self.job.save()
            teardown = self._sandboxed(args) if rec["sandboxed"] else self._unsandboxed(args)
            if self.errors or "outputs_sealed" not in self.fields:
                raise TrainingError(
                    "training failed inside the sandbox: "
                    + (", ".join(self.errors) or "it exited without sealing its outputs"),
                    hint="rerun to resume from the last sealed checkpoint; set "
                         "SEALTUNE_DEBUG=1 and use --no-sandbox on non-sensitive data to debug")
            model_dir = self._install()
        except BaseException as exc:
            rec["status"], rec["error"] = "failed", type(exc).__name__
            self.job.event("train.failed", {"error": type(exc).__name__}, outcome="failure")
            raise
        finally:
            for key in self.keys.values():
                key[:] = bytes(len(key))
        return self._finish(model_dir, teardown)

    def _prepare(self) -> list[str]:
        rec = self.job.rec
        if not rec["sandboxed"]:
            warnings.warn(UNSAFE_WARNING, UserWarning, stacklevel=4)
            self.job.event("train.unsafe_no_sandbox", {"out_name": rec["out_name"]})
        self.keys["dataset"] = _file_key(self.ws, self.spec.inputs["dataset"])
        self.keys["output"], output = _new_target(self.ws)
        if self.previous is not None:
            self.keys["checkpoint"], checkpoint = _old_target(self.ws, self.previous)
        else:
            self.keys["checkpoint"], checkpoint = _new_target(self.ws)
        rec["checkpoint"] = checkpoint.to_dict()
        rec["output_key"] = output.wrapped[0].kek_uri
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
            return
        self.fields[ev.name] = dict(ev.fields)
        if ev.type == "lifecycle" and ev.name == "created":
            self.job.event("sandbox.created", {
                "pid": ev.fields.get("pid"), "measurement": self.job.rec["measurement"],
                "flags": _sandbox_flags(self.spec)}, at=ev.at)
        elif ev.type == "event" and ev.name in _LEDGER:
            self.job.event(_LEDGER[ev.name], dict(ev.fields), at=ev.at)

    def _sandboxed(self, args: list[str]) -> dict[str, Any]:
        with Sandbox(self.spec) as box:
            box.start("sealtune.train.worker", args, secrets=self.keys)
            try:
                for ev in box.events(timeout=self.timeout):
                    self._handle(ev)
            finally:
                td = box.destroy()
                wiped = self.fields.get("workspace_wiped", {}).get("files")
                teardown = {"processes_left": td.processes_left,
                            "namespaces_released": td.namespaces_released,
                            "outputs_removed": td.outputs_removed, "seconds": td.seconds,
                            "tmpfs_files_wiped": wiped, "exit_code": box.exit_code}
                self.job.event("sandbox.destroyed", teardown)
        return teardown

    def _unsandboxed(self, args: list[str]) -> dict[str, Any]:
        """Run the worker in this process (``--no-sandbox``): same protocol, no isolation."""
        from sealtune.train import worker
        from sealtune.train._sandbox_child import (
            ChildContext,
            EventWriter,
            decode_event,
            wipe_tree,
        )

        work = Path(tempfile.mkdtemp(prefix="sealtune-unsafe-"))
        (work / "in").mkdir()
        (work / "tmp").mkdir()
        for name, path in self.spec.inputs.items():
            (work / "in" / name).symlink_to(path)
        read_fd, write_fd = os.pipe()
        queued: list[SandboxEvent] = []

        def reader() -> None:  # the ledger is written from the main thread only
            with os.fdopen(read_fd, "rb") as fh:
                for line in fh:
                    fields = decode_event(line)
                    ev = SandboxEvent(fields.pop("type"), str(fields.pop("name")),  # type: ignore[arg-type]
                                      fields, time.time())
                    if ev.type == "progress" and self.progress is not None:
                        self.progress(ev)
                    queued.append(ev)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        ctx = ChildContext(events=EventWriter(write_fd), keys=dict(self.keys),
                           workdir=work / "tmp", outdir=self.spec.output_dir, indir=work / "in")
        try:
            worker.main(ctx, args)
        except Exception as exc:  # reported by class only, as inside the sandbox
            self.errors.append(type(exc).__name__)
        finally:
            wiped = wipe_tree(work / "tmp")
            shutil.rmtree(work, ignore_errors=True)
            os.close(write_fd)
            thread.join()
        for ev in queued:
            if ev.type != "progress":
                self._handle(ev)
        teardown = {"tmpfs_files_wiped": wiped, "unsandboxed": True}
        self.job.event("sandbox.destroyed", teardown)
        return teardown

    def _install(self) -> Path:
        """Move the sealed outputs into ``models/<out_name>/`` with ``model.json``, atomically."""
        rec = self.job.rec
        models = self.ws.root / MODELS
        models.mkdir(mode=0o700, exist_ok=True)
        build = models / f".build-{rec['id']}"
        build.mkdir(mode=0o700)
        files: dict[str, str] = {}
        for path in sorted((self.spec.output_dir / "model").iterdir()):
            with path.open("rb") as fh:
                if not path.name.endswith(".sealed") or fh.read(8) != SEALED_MAGIC:
                    raise IntegrityError(f"sandbox output {path.name} is not a sealed file")
                fh.seek(0)
                files[path.name] = "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()
            os.replace(path, build / path.name)
        finished = self.fields.get("training_finished", {})
        measurement = rec["measurement"]
        _write_json(build / "model.json", {
            "format": MODEL_FORMAT, "name": rec["out_name"], "job": rec["id"],
            "created": _now(), "sandboxed": rec["sandboxed"],
            "dataset": {"name": rec["dataset"], "digest": measurement["inputs"]["dataset"]},
            "base": {"path": rec["base"], "digest": measurement["base_model"]},
            "config": rec["config"], "privacy": _privacy(finished),
            "measurement": measurement, "files": files,
            "key": rec["output_key"]})
        final: Path = models / str(rec["out_name"])
        os.rename(build, final)
        with contextlib.suppress(OSError):
            (self.spec.output_dir / "model").rmdir()
        return final

    def _finish(self, model_dir: Path, teardown: dict[str, Any]) -> JobResult:
        rec = self.job.rec
        finished = self.fields.get("training_finished", {})
        rec["metrics"] = {k: finished.get(k) for k in (
            "steps", "final_loss", "resumed_from", "stop", "world_size", "seconds",
            "dropped_no_assistant_tokens")}
        rec["privacy"], rec["model"], rec["status"] = _privacy(finished), str(model_dir), \
            "finished"
        self.job.event("train.model_installed", {"model": rec["out_name"]})
        for empty in (self.spec.output_dir / "checkpoints", self.spec.output_dir):
            with contextlib.suppress(OSError):  # kept when it holds the sealed final checkpoint
                empty.rmdir()
        if self.previous is not None:
            old = _Job(self.ws, {**self.previous, "resumed_by": rec["id"]})
            old.save()
        return JobResult(job_id=rec["id"], model_dir=model_dir, sandboxed=rec["sandboxed"],
                         steps=int(finished.get("steps") or 0),
                         final_loss=finished.get("final_loss"),
                         resumed_from=finished.get("resumed_from"),
                         resumed_job=rec["resumed_job"], privacy=rec["privacy"],
                         measurement=rec["measurement"], teardown=teardown,
                         timeline=list(rec["timeline"]))


def _privacy(finished: Mapping[str, Any]) -> dict[str, Any] | None:
    """The privacy figures (numbers only) from the ``training_finished`` event."""
    if not finished.get("dp"):
        return None
    return {"epsilon_spent": finished.get("epsilon"), "delta": finished.get("delta"),
            "noise_multiplier": finished.get("noise_multiplier"),
            "sample_rate": finished.get("sample_rate"), "steps": finished.get("dp_steps"),
            "unit": "example-level (one record)"}
