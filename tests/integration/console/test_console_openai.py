"""OpenAI-compatible fine-tuning, driven by the official ``openai`` package: upload
(sealed on arrival, ingested by the data stage), create a job, poll it to
``succeeded``, read its events and checkpoints, then chat with the fine-tuned
model through ``sealtune serve``; cancel a running job (its sandbox destroyed,
nothing left behind) and restart the console (the ids are kept)."""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest

from sealtune.train import show_job
from sealtune.workspace import Workspace

RunWorkspace = Any  # conftest.RunWorkspace (conftest modules are not importable)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
            return
        except OSError:
            assert proc.poll() is None, "the server exited"
            assert time.monotonic() < deadline, f"{url} did not come up"
            time.sleep(0.5)


def test_fine_tune_with_the_openai_client_then_chat(console_url: str,
                                                    example_run: RunWorkspace) -> None:
    with openai.OpenAI(base_url=console_url + "/v1", api_key=example_run.keys["operator"],
                       max_retries=0) as ops:
        model = _fine_tune(ops, console_url, example_run)
    marker = _chat(model, example_run)
    req = urllib.request.Request(console_url + "/api/v1/audit/export?format=jsonl", headers={
        "Authorization": f"Bearer {example_run.keys['auditor']}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        exported = r.read()
    assert exported and marker.encode() not in exported  # prompts are never logged
    for name in ("ledger.db", "ledger.db-wal"):
        path = example_run.home / name
        assert not path.exists() or marker.encode() not in path.read_bytes()


def _fine_tune(ops: openai.OpenAI, console_url: str, example_run: RunWorkspace) -> str:
    data = example_run.example / "data" / "conversations.jsonl"
    with data.open("rb") as fh:
        upload = ops.files.create(file=fh, purpose="fine-tune")
    assert upload.id.startswith("file-") and upload.bytes == data.stat().st_size
    assert upload.id in [f.id for f in ops.files.list().data]
    sealed = list((example_run.home / "uploads").iterdir())
    assert sealed and all(p.read_bytes().startswith(b"SEALTUNE") for p in sealed)
    job = ops.fine_tuning.jobs.create(
        model=str(example_run.example / "tiny-base"), training_file=upload.id,
        hyperparameters={"n_epochs": 1, "batch_size": 8}, suffix="support",
        extra_body={"sealtune": {"max_steps": 2}})
    assert job.status in ("queued", "running") and job.hyperparameters.n_epochs == 1
    deadline = time.monotonic() + 300
    while job.status not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(2)
        job = ops.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model and job.fine_tuned_model.startswith("support-")
    messages = [e.message for e in ops.fine_tuning.jobs.list_events(job.id).data]
    assert "The job has successfully completed" in messages and "sandbox.created" in messages
    ckpts = ops.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.fine_tuned_model_checkpoint for c in ckpts] == [job.fine_tuned_model]
    assert job.id in [j.id for j in ops.fine_tuning.jobs.list().data]
    with pytest.raises(openai.NotFoundError):
        ops.fine_tuning.jobs.retrieve("ftjob-" + "0" * 24)
    with openai.OpenAI(base_url=console_url + "/v1", api_key=example_run.keys["consumer"],
                       max_retries=0) as consumer, pytest.raises(openai.PermissionDeniedError):
        consumer.files.list()
    return job.fine_tuned_model


def _chat(fine_tuned_model: str, example_run: RunWorkspace) -> str:
    """Serve the model, chat once with a unique marker in the prompt; return the marker."""
    port = _free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "sealtune", "serve", "--model", fine_tuned_model,
         "--port", str(port)], env=example_run.env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        _wait(f"http://127.0.0.1:{port}/healthz", serve, 120)
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1",
                           api_key=example_run.keys["consumer"], max_retries=0) as chat:
            model = chat.models.list().data[0].id
            marker = f"zqp{secrets.token_hex(6)}"
            prompt = f"hello {marker}"
            answer = chat.chat.completions.create(
                model=model, max_tokens=8, messages=[{"role": "user", "content": prompt}])
        assert answer.choices[0].message.content is not None
        assert answer.usage is not None and answer.usage.completion_tokens >= 1
        return marker
    finally:
        serve.terminate()
        serve.communicate(timeout=30)


def _copy(run: RunWorkspace, home: Path) -> RunWorkspace:
    """A copy of the example run's workspace (this test's own)."""
    shutil.copytree(run.home, home, symlinks=True)
    return dataclasses.replace(run, home=home, env={**run.env, "SEALTUNE_HOME": str(home)})


def _long_job(ops: openai.OpenAI, file_id: str, *, training: bool = True) -> Any:
    """A job on the registered base ``tiny`` that would train for minutes; returned once
    its sandbox reports progress (``training``) or once its thread started."""
    job = ops.fine_tuning.jobs.create(
        model="tiny", training_file=file_id,
        hyperparameters={"n_epochs": 200, "batch_size": 8}, suffix="long")
    deadline = time.monotonic() + 120

    def started() -> bool:
        if not training:
            return ops.fine_tuning.jobs.retrieve(job.id).status == "running"
        return any(e.type == "metrics" for e in ops.fine_tuning.jobs.list_events(job.id).data)
    while not started():
        assert time.monotonic() < deadline, "the job never reported progress"
        assert ops.fine_tuning.jobs.retrieve(job.id).status in ("queued", "running")
        time.sleep(0.5)
    return job


def test_cancel_a_running_job_then_restart_the_console(
        example_run: RunWorkspace, console_process: Any, lenient_gate_policy: Path,
        tmp_path: Path) -> None:
    run = _copy(example_run, tmp_path / "ws")
    added = subprocess.run(  # 'model' names a base added with 'sealtune models base add'
        [sys.executable, "-m", "sealtune", "models", "base", "add", "tiny",
         str(run.example / "tiny-base"), "--licence", "MIT", "--policy",
         str(lenient_gate_policy)], env=run.env, capture_output=True, text=True, timeout=120,
        check=False)
    assert added.returncode == 0, added.stderr[-2000:]
    url = console_process.start(run)
    ops = openai.OpenAI(base_url=url + "/v1", api_key=run.keys["operator"], max_retries=0)
    with (run.example / "data" / "conversations.jsonl").open("rb") as fh:
        upload = ops.files.create(file=fh, purpose="fine-tune")
    job = _long_job(ops, upload.id)
    assert job.model == "tiny"
    began = time.monotonic()
    cancelled = ops.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.fine_tuned_model is None
    assert time.monotonic() - began < 15  # stopped mid-training, not run to its end
    messages = [e.message for e in ops.fine_tuning.jobs.list_events(job.id).data]
    assert messages[0] == "The job was cancelled"
    assert ops.fine_tuning.jobs.checkpoints.list(job.id).data == []
    # the train stage's view: record cancelled, sandbox destroyed with nothing left,
    # no model installed, no half-written outputs or checkpoints kept
    sealtune_job = cancelled.model_extra["sealtune"]["job"]
    ws = Workspace.open(run.home, passphrase=run.passphrase)
    try:
        assert show_job(ws, sealtune_job)["status"] == "cancelled"
        actions = {e.action: e.details for e in ws.ledger.entries(resource=f"job/{sealtune_job}")}
    finally:
        ws.close()
    assert "train.cancelled" in actions and "train.model_installed" not in actions
    assert actions["sandbox.destroyed"]["processes_left"] == 0
    models = run.home / "models"
    assert not [p for p in models.iterdir() if p.name.startswith(("long-", ".build"))]
    assert not (run.home / "jobs" / sealtune_job).exists()
    assert ops.fine_tuning.jobs.cancel(job.id).status == "cancelled"  # idempotent
    # a job still running when its console stops; then a new console on the workspace
    interrupted = _long_job(ops, upload.id, training=False)
    ops.close()
    console_process.stop(url)
    url = console_process.start(run)
    with openai.OpenAI(base_url=url + "/v1", api_key=run.keys["operator"],
                       max_retries=0) as again:
        assert upload.id in [f.id for f in again.files.list().data]
        jobs = {j.id: j for j in again.fine_tuning.jobs.list().data}
        assert jobs[job.id].status == "cancelled"
        assert jobs[interrupted.id].status == "failed"
        assert jobs[interrupted.id].error.code == "interrupted"
        assert again.fine_tuning.jobs.retrieve(job.id).training_file == upload.id
        messages = [e.message for e in again.fine_tuning.jobs.list_events(job.id).data]
        assert "The job was cancelled" in messages and "Job created" in messages
