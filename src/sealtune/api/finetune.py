"""OpenAI-compatible fine-tuning: ``/v1/files`` and ``/v1/fine_tuning/jobs``.

* ``POST /v1/files`` (multipart, ``purpose=fine-tune``): the upload is
  streamed into a sealed file under the workspace's default key as it
  arrives (plaintext never touches the disk), then ingested by the data stage
  (:func:`sealtune.data.ingest`: PII redaction, screening, sealing) under the
  default data policy; the file id names the dataset ``ft-<id>``.
* ``POST /v1/fine_tuning/jobs``: ``model`` names a base model added with
  ``sealtune models base add`` (verified against its manifest) or is a base
  model directory (unpinned: recorded as ``base.unpinned``);
  ``hyperparameters`` map to ours (``n_epochs`` -> ``epochs``, ``batch_size``,
  ``learning_rate_multiplier`` x 2e-4 -> ``lr``);
  sealtune's own settings go under the extension field ``sealtune``
  (``dp_epsilon``, ``max_steps``, ``method``). The job trains in the sandbox
  (:func:`sealtune.train.run_job`) on a worker thread with its own workspace
  handle; ``fine_tuned_model`` is the workspace model name, servable with
  ``sealtune serve --model NAME``.
* ``GET`` jobs, ``/events`` (the sandbox timeline's event names), ``/checkpoints``
  (the installed model), ``/cancel`` (a queued job; a running sandbox is not
  interrupted: 409).

What this protects against: plaintext uploads at rest (sealed while
streaming, then redacted by the data stage), uploads without a limit
(:data:`MAX_UPLOAD`), and job records leaking data (events carry event
names and numbers only). What it does not: job state is kept in memory (a
restarted console forgets the OpenAI job ids; the sealtune jobs remain in
``sealtune jobs list``); a running job cannot be cancelled.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from sealtune.api.app import Console, caller_of
from sealtune.errors import SealtuneError, UsageError

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

__all__ = ["BASE_LR", "MAX_UPLOAD", "FineTuning", "router"]

router = APIRouter(prefix="/v1")
MAX_UPLOAD = 256 << 20
BASE_LR = 2e-4
UPLOADS = "uploads"


@dataclass
class FtJob:
    """One OpenAI-style job and the sealtune job behind it."""

    id: str
    model: str
    training_file: str
    dataset: str
    created_at: int
    hyperparameters: dict[str, Any]
    extension: dict[str, Any]
    status: str = "queued"
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    error: dict[str, Any] | None = None
    sealtune_job: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"object": "fine_tuning.job", "id": self.id, "model": self.model,
                "created_at": self.created_at, "finished_at": self.finished_at,
                "fine_tuned_model": self.fine_tuned_model, "organization_id": "sealtune",
                "result_files": [], "status": self.status, "validation_file": None,
                "training_file": self.training_file, "hyperparameters": self.hyperparameters,
                "trained_tokens": None, "error": self.error, "seed": 0,
                "integrations": [], "estimated_finish": None,
                "sealtune": {**self.extension, "job": self.sealtune_job,
                             "dataset": self.dataset}}


class FineTuning:
    """Uploaded files and jobs of one console process."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, FtJob] = {}
        self.lock = threading.Lock()

    def event(self, job: FtJob, message: str, *, level: str = "info",
              data: dict[str, Any] | None = None, kind: str = "message") -> None:
        """Append an event (a fixed message or an event name, and numbers only)."""
        with self.lock:
            job.events.append({"object": "fine_tuning.job.event",
                               "id": f"ftevent-{secrets.token_hex(8)}",
                               "created_at": int(time.time()), "level": level,
                               "message": message, "type": kind, "data": data or {}})


def _state(request: Request) -> tuple[Console, FineTuning]:
    console = request.app.state.console
    assert isinstance(console, Console)
    ft = getattr(request.app.state, "fine_tuning", None)
    if ft is None:
        ft = request.app.state.fine_tuning = FineTuning()
    return console, ft


def _error(status: int, message: str, *, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error",
                                   "param": param, "code": None}}, status_code=status)


# -- files ---------------------------------------------------------------------------


async def _stream_upload(request: Request, ws: Workspace, dest: Path) -> dict[str, Any]:
    """Parse the multipart body, sealing the ``file`` part into ``dest`` as it arrives."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    from sealtune.keys import SealedWriter

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise UsageError("POST /v1/files takes multipart/form-data",
                         hint="send fields 'purpose' and 'file'")
    state: dict[str, Any] = {"fields": {}, "name": None, "filename": None, "buf": b"",
                             "bytes": 0, "header": b"", "value": b""}
    writer = SealedWriter(dest, keys=ws.keys, key_names=[ws.config.default_key])

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        if state["header"].lower() == b"content-disposition":
            _, p = parse_options_header(state["value"])
            state["name"] = p.get(b"name", b"").decode("utf-8", "replace")
            state["filename"] = p.get(b"filename", b"").decode("utf-8", "replace") or None
        state["header"], state["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if state["name"] == "file":
            state["bytes"] += len(chunk)
            if state["bytes"] > MAX_UPLOAD:
                raise UsageError("upload larger than 256 MiB", hint="split the file")
            writer.write(chunk)
        elif len(state["buf"]) < 1024:
            state["buf"] += chunk

    def on_part_end() -> None:
        if state["name"] == "file":
            state["fields"]["filename"] = state["filename"] or "upload.jsonl"
        elif state["name"]:
            state["fields"][state["name"]] = state["buf"].decode("utf-8", "replace")
        state["name"], state["buf"] = None, b""

    parser = MultipartParser(params[b"boundary"], {
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    try:
        async for chunk in request.stream():
            await _run(parser.write, chunk)
        parser.finalize()
        if "filename" not in state["fields"]:
            raise UsageError("no 'file' part in the upload", hint="send the JSONL as 'file'")
        await _run(writer.close)
    except BaseException:
        writer.abort()
        raise
    return {**state["fields"], "bytes": state["bytes"]}


async def _run(fn: Any, *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


@router.post("/files")
async def create_file(request: Request) -> JSONResponse:
    """Upload a fine-tuning file: sealed on arrival, then ingested by the data stage."""
    console, ft = _state(request)
    ws = console.ws
    file_id = f"file-{secrets.token_hex(12)}"
    root = ws.root / UPLOADS
    root.mkdir(mode=0o700, exist_ok=True)
    sealed = root / f"{file_id}.jsonl.sealed"
    fields = await _stream_upload(request, ws, sealed)
    if fields.get("purpose") != "fine-tune":
        sealed.unlink(missing_ok=True)
        return _error(400, "purpose must be 'fine-tune'", param="purpose")
    from sealtune.data import ingest_dataset

    dataset = f"ft-{file_id[5:]}"
    result = await console.call(ingest_dataset, ws, sealed, name=dataset)
    record = {"object": "file", "id": file_id, "bytes": fields["bytes"],
              "created_at": int(time.time()), "filename": fields["filename"],
              "purpose": "fine-tune", "status": "processed", "status_details": None,
              "sealtune": {"dataset": dataset,
                           "records": result.manifest.get("counts", {}).get("records_out")}}
    with ft.lock:
        ft.files[file_id] = record
    console.audit.record("api.file_uploaded", actor=caller_of(request).principal.caller,
                         resource=f"dataset/{dataset}", details={"file_id": file_id,
                                                                 "bytes": fields["bytes"]})
    return JSONResponse(record)


@router.get("/files")
async def list_files(request: Request) -> dict[str, Any]:
    """Uploaded files (this console process)."""
    _, ft = _state(request)
    with ft.lock:
        return {"object": "list", "data": list(ft.files.values()), "has_more": False}


# -- jobs ----------------------------------------------------------------------------


def _config(hyper: dict[str, Any], ext: dict[str, Any]) -> Any:
    from sealtune.train import TrainConfig
    from sealtune.train.dp import DPConfig

    def num(name: str, value: Any, kind: type) -> Any:
        if value is None or value == "auto":
            return None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise UsageError(f"hyperparameters.{name}: not a number", hint="a number or 'auto'")
        return kind(value)
    epochs = num("n_epochs", hyper.get("n_epochs"), int)
    batch = num("batch_size", hyper.get("batch_size"), int)
    mult = num("learning_rate_multiplier", hyper.get("learning_rate_multiplier"), float)
    eps = num("sealtune.dp_epsilon", ext.get("dp_epsilon"), float)
    steps = num("sealtune.max_steps", ext.get("max_steps"), int)
    method = ext.get("method", "lora")
    if method not in ("lora", "full"):
        raise UsageError("sealtune.method: use 'lora' or 'full'")
    return TrainConfig(method=method, epochs=epochs or 1, batch_size=batch or 8,
                       lr=BASE_LR * (mult or 1.0), max_steps=steps,
                       dp=DPConfig(epsilon=eps) if eps is not None else None)


@router.post("/fine_tuning/jobs")
async def create_job(request: Request) -> JSONResponse:
    """Start a fine-tuning job on an uploaded file."""
    from sealtune.core import strict_json

    console, ft = _state(request)
    body = await request.body()
    if len(body) > 65536:
        return _error(413, "request body too large")
    try:
        req = strict_json.loads(body)
    except SealtuneError:
        return _error(400, "the body is not a JSON object")
    if not isinstance(req, dict):
        return _error(400, "the body is not a JSON object")
    with ft.lock:
        upload = ft.files.get(str(req.get("training_file")))
    if upload is None:
        return _error(404, "no such training_file: upload it with POST /v1/files",
                      param="training_file")
    from sealtune.assess import resolve_base

    try:  # a name from 'sealtune models base add' (verified), or a directory (unpinned)
        base = (await console.call(resolve_base, console.ws, str(req.get("model", "")),
                                   warn=False)).path
    except SealtuneError:
        return _error(400, "model: a base model added with 'sealtune models base add', or a "
                      "base model directory on the console's host", param="model")
    hyper = req.get("hyperparameters") or {}
    ext = req.get("sealtune") or {}
    if not isinstance(hyper, dict) or not isinstance(ext, dict):
        return _error(400, "hyperparameters and sealtune are JSON objects")
    config = _config(hyper, ext)
    job = FtJob(f"ftjob-{secrets.token_hex(12)}", str(req.get("model")), upload["id"],
                upload["sealtune"]["dataset"], int(time.time()), dict(hyper), dict(ext))
    suffix = str(req.get("suffix") or "ft")[:24]
    out_name = f"{''.join(c for c in suffix if c.isalnum() or c == '-') or 'ft'}-{job.id[6:18]}"
    with ft.lock:
        ft.jobs[job.id] = job
    ft.event(job, "Job created")
    threading.Thread(target=_train, args=(console, ft, job, base, config, out_name),
                     name=f"sealtune-ft-{job.id}", daemon=True).start()
    return JSONResponse(job.to_json())


def _train(console: Console, ft: FineTuning, job: FtJob, base: Path, config: Any,
           out_name: str) -> None:
    """Run the sealtune job with a workspace handle of its own (the console's stays free)."""
    from sealtune.sandbox import SandboxEvent
    from sealtune.train import run_job
    from sealtune.workspace import Workspace

    def progress(ev: SandboxEvent) -> None:  # aggregate numbers from inside the sandbox
        ft.event(job, ev.name, kind="metrics", data={
            k: v for k, v in ev.fields.items() if isinstance(v, int | float)})

    job.status = "running"
    ft.event(job, "Fine-tuning job started")
    ws = Workspace.open(console.ws.root)
    try:
        result = run_job(ws, dataset=job.dataset, base=base, config=config, out_name=out_name,
                         progress=progress)
        job.sealtune_job = result.job_id
        for ev in result.timeline:  # the sandbox's lifecycle: names and outcomes only
            ft.event(job, str(ev.get("event")), level="info" if ev.get("outcome") == "success"
                     else "warn")
        job.fine_tuned_model, job.status = out_name, "succeeded"
        ft.event(job, "The job has successfully completed")
    except SealtuneError as exc:
        job.status, job.error = "failed", {"code": type(exc).__name__, "message": exc.message,
                                           "param": None}
        ft.event(job, f"The job failed: {type(exc).__name__}", level="error")
    except Exception as exc:  # a worker thread: report the class, keep serving
        job.status, job.error = "failed", {"code": type(exc).__name__,
                                           "message": "internal error", "param": None}
        ft.event(job, f"The job failed: {type(exc).__name__}", level="error")
    finally:
        job.finished_at = int(time.time())
        ws.close()


def _job(request: Request, job_id: str) -> tuple[FineTuning, FtJob | None]:
    _, ft = _state(request)
    with ft.lock:
        return ft, ft.jobs.get(job_id)


def _missing(job_id: str) -> JSONResponse:
    return _error(404, f"no fine-tuning job {job_id!r} (GET /v1/fine_tuning/jobs lists them)",
                  param="fine_tuning_job_id")


@router.get("/fine_tuning/jobs")
async def list_jobs(request: Request) -> dict[str, Any]:
    """Fine-tuning jobs (this console process), newest first."""
    _, ft = _state(request)
    with ft.lock:
        data = [j.to_json() for j in sorted(ft.jobs.values(), key=lambda j: -j.created_at)]
    return {"object": "list", "data": data, "has_more": False}


@router.get("/fine_tuning/jobs/{job_id}")
async def get_job(request: Request, job_id: str) -> JSONResponse:
    """One job."""
    _, job = _job(request, job_id)
    return _missing(job_id) if job is None else JSONResponse(job.to_json())


@router.get("/fine_tuning/jobs/{job_id}/events")
async def job_events(request: Request, job_id: str) -> JSONResponse:
    """The job's events, newest first (names and numbers only)."""
    ft, job = _job(request, job_id)
    if job is None:
        return _missing(job_id)
    with ft.lock:
        data = list(reversed(job.events))
    return JSONResponse({"object": "list", "data": data, "has_more": False})


@router.post("/fine_tuning/jobs/{job_id}/cancel")
async def cancel_job(request: Request, job_id: str) -> JSONResponse:
    """Cancel a queued job (a running sandbox is not interrupted: 409)."""
    _, job = _job(request, job_id)
    if job is None:
        return _missing(job_id)
    if job.status in ("succeeded", "failed", "cancelled"):
        return JSONResponse(job.to_json())
    return _error(409, "the job is running in its sandbox and cannot be interrupted; "
                  "it will finish or fail on its own")


@router.get("/fine_tuning/jobs/{job_id}/checkpoints")
async def job_checkpoints(request: Request, job_id: str) -> JSONResponse:
    """The installed model as the job's one checkpoint."""
    _, job = _job(request, job_id)
    if job is None:
        return _missing(job_id)
    data: list[dict[str, Any]] = [] if job.fine_tuned_model is None else [{
        "object": "fine_tuning.job.checkpoint", "id": f"ftckpt-{job.id[6:]}",
        "created_at": job.finished_at, "fine_tuned_model_checkpoint": job.fine_tuned_model,
        "step_number": None, "metrics": {}, "fine_tuning_job_id": job.id}]
    return JSONResponse({"object": "list", "data": data, "has_more": False,
                         "first_id": data[0]["id"] if data else None,
                         "last_id": data[-1]["id"] if data else None})
