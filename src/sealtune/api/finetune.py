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
  (the installed model), ``/cancel``: a queued job never starts; a running one
  is cancelled through the train stage's hook (``run_job(cancel=...)``: the
  sandbox destroyed, the job's outputs removed, ``train.cancelled`` in the
  ledger, nothing installed), and the answer comes once it has stopped.
* Files and jobs are kept in the workspace catalogue (:mod:`sealtune.api.ft_state`):
  a restarted console lists and serves the same ids.

What this protects against: plaintext uploads at rest (sealed while
streaming, then redacted by the data stage), uploads without a limit
(:data:`MAX_UPLOAD`), and job records leaking data (events carry event
names and numbers only). What it does not: resume a job its console stopped
(it is loaded as ``failed``, ``interrupted``); a cancel that arrives after the
sandbox finished does not stop the model's installation.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from sealtune.api.app import Console, caller_of
from sealtune.api.ft_state import RUNNING, FineTuning, FtJob
from sealtune.errors import SealtuneError, UsageError

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

__all__ = ["BASE_LR", "CANCEL_WAIT_S", "MAX_UPLOAD", "router"]

router = APIRouter(prefix="/v1")
MAX_UPLOAD = 256 << 20
#: How long ``POST .../cancel`` waits for a running job to stop, in seconds.
CANCEL_WAIT_S = 30.0
BASE_LR = 2e-4
UPLOADS = "uploads"


def _state(request: Request) -> tuple[Console, FineTuning]:
    console = request.app.state.console
    assert isinstance(console, Console)
    ft = getattr(request.app.state, "fine_tuning", None)
    if ft is None:  # loaded from the workspace catalogue: a restart keeps the ids
        ft = request.app.state.fine_tuning = FineTuning(console.ws.meta)
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
    root = ws.area(UPLOADS)
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
    ft.add_file(record)
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
    ft.add_job(job)
    ft.event(job, "Job created")
    threading.Thread(target=_train, args=(console, ft, job, base, config, out_name),
                     name=f"sealtune-ft-{job.id}", daemon=True).start()
    return JSONResponse(job.to_json())


def _train(console: Console, ft: FineTuning, job: FtJob, base: Path, config: Any,
           out_name: str) -> None:
    """Run the sealtune job with a workspace handle of its own (the console's stays free)."""
    from sealtune.sandbox import SandboxCancelled, SandboxEvent
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
                         progress=progress, cancel=job.cancel.is_set)
        job.sealtune_job = result.job_id
        for ev in result.timeline:  # the sandbox's lifecycle: names and outcomes only
            ft.event(job, str(ev.get("event")), level="info" if ev.get("outcome") == "success"
                     else "warn")
        job.fine_tuned_model, job.status = out_name, "succeeded"
        ft.event(job, "The job has successfully completed")
    except SandboxCancelled:  # the sandbox destroyed, its outputs removed, nothing installed
        job.sealtune_job, job.status = _sealtune_job(ws, out_name), "cancelled"
        ft.event(job, "The job was cancelled")
    except SealtuneError as exc:
        job.sealtune_job = _sealtune_job(ws, out_name)
        job.status, job.error = "failed", {"code": type(exc).__name__, "message": exc.message,
                                           "param": None}
        ft.event(job, f"The job failed: {type(exc).__name__}", level="error")
    except Exception as exc:  # a worker thread: report the class, keep serving
        job.status, job.error = "failed", {"code": type(exc).__name__,
                                           "message": "internal error", "param": None}
        ft.event(job, f"The job failed: {type(exc).__name__}", level="error")
    finally:
        job.finished_at = int(time.time())
        ft.save_job(job)
        ws.close()


def _sealtune_job(ws: Workspace, out_name: str) -> str | None:
    """The id of the sealtune job that trained (or tried to train) ``out_name``."""
    from sealtune.train import list_jobs

    ids = [str(j["id"]) for j in list_jobs(ws) if j.get("out_name") == out_name]
    return ids[-1] if ids else None


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
    """Cancel a queued or running job: its sandbox is destroyed, nothing is installed.

    Answers once the job has stopped (within :data:`CANCEL_WAIT_S`); a job that had
    already ended is returned as it is.
    """
    console, ft = _state(request)
    with ft.lock:
        job = ft.jobs.get(job_id)
    if job is None:
        return _missing(job_id)
    if job.status in RUNNING:
        job.cancel.set()
        deadline = time.monotonic() + CANCEL_WAIT_S
        while job.status in RUNNING and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        console.audit.record("api.job_cancel", actor=caller_of(request).principal.caller,
                             resource=f"ftjob/{job.id}", details={"status": job.status})
    return JSONResponse(job.to_json())


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
