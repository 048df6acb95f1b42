"""The training worker inside the real bubblewrap sandbox, end to end.

A sealed dataset with a planted unique string goes in, the data keys travel
over the key pipe, DP-LoRA training runs inside, and only sealed files come
out: the events arrive, the outputs open with the workspace's key and load,
and the planted string is in no file outside the sandbox.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sealtune.core.envelope import (
    AES_256_GCM,
    make_prefix,
    new_data_key,
    read_header,
    unlock_header,
    wrap_aad,
)
from sealtune.data.records import Message, Record
from sealtune.keys.files import open_file, seal_file
from sealtune.sandbox import Sandbox, SandboxSpec, SandboxUnavailableError, probe
from sealtune.train.tiny import make_tiny
from sealtune.workspace import Workspace


@pytest.fixture(scope="module")
def bwrap_ok() -> None:
    try:
        probe()
    except SandboxUnavailableError as exc:
        pytest.fail(f"no working bubblewrap here (scripts/install installs it): {exc.message}")


def _records(marker: str) -> list[Record]:
    out = []
    for i in range(12):
        out.append(Record(id=f"r{i}", line=i + 1, messages=[
            Message("user", f"我的卡号是多少？ ticket {i} {marker}"),
            Message("assistant", f"您的编号是 {marker}-{i}，请妥善保管。")]))
    return out


def _target(workspace: Workspace, key: bytes) -> dict[str, object]:
    prefix = make_prefix(key, suite=AES_256_GCM)
    wrapped = workspace.keys.wrap("k1", key, aad=wrap_aad(prefix))
    import base64
    return {"prefix": prefix.encode().hex(),
            "wrapped": [{"kek_uri": wrapped.kek_uri, "version": wrapped.version,
                         "blob": base64.b64encode(wrapped.blob).decode()}]}


def _dataset_key(workspace: Workspace, sealed: Path) -> bytes:
    """What the job runner does: unwrap the dataset's data key in the parent."""
    with sealed.open("rb") as fh:
        opened = unlock_header(read_header(fh), unwrap=lambda e, aad: workspace.keys.unwrap(
            e, aad=aad) if workspace.keys.can_unwrap(e) else None)
    return opened.data_key


def _files_containing(roots: list[Path], needle: bytes, since: float) -> list[Path]:
    hits = []
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = Path(dirpath, name)
                try:
                    # is_file: never open a FIFO or device (a read would block)
                    if path.is_file() and path.stat().st_mtime >= since \
                            and needle in path.read_bytes():
                        hits.append(path)
                except OSError:
                    continue
    return hits


@pytest.mark.usefixtures("bwrap_ok")
def test_worker_trains_inside_the_sandbox_and_seals_everything(
        workspace: Workspace, tmp_path: Path) -> None:
    began = time.time() - 1
    marker = "PLANTED-" + secrets.token_hex(8)
    base = make_tiny(tmp_path / "base", seed=0)
    plain = tmp_path / "train.jsonl"
    plain.write_text("".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n"
                             for r in _records(marker)), encoding="utf-8")
    sealed = tmp_path / "train.jsonl.sealed"
    seal_file(plain, sealed, keys=workspace.keys, key_names=["k1"])
    plain.unlink()
    keys = {"dataset": _dataset_key(workspace, sealed), "output": new_data_key(AES_256_GCM),
            "checkpoint": new_data_key(AES_256_GCM)}
    spec = {"format": "sealtune-train-job/1", "dataset": "dataset", "base": "base",
            "threads": 1, "output": _target(workspace, keys["output"]),
            "checkpoint": _target(workspace, keys["checkpoint"]),
            "config": {"epochs": 1, "batch_size": 4, "lr": 0.01, "seed": 1,
                       "checkpoint_every": 1, "max_length": 64,
                       "dp": {"epsilon": 8.0, "noise_multiplier": 1.0}}}
    job = tmp_path / "job.json"
    job.write_text(json.dumps(spec))
    out = tmp_path / "out"
    out.mkdir()
    box_spec = SandboxSpec(output_dir=out, hidden=(workspace.root,),
                           inputs={"job": job, "dataset": sealed, "base": base},
                           env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                                "TRANSFORMERS_OFFLINE": "1"},
                           tmpfs_size=512 << 20)
    with Sandbox(box_spec) as box:
        box.start("sealtune.train.worker", [], secrets=keys)
        events = list(box.events(timeout=240))
    assert box.exit_code == 0, [(e.name, dict(e.fields)) for e in events if e.type == "error"]
    names = [e.name for e in events if e.type == "event"]
    for milestone in ("data_decrypted", "training_finished", "outputs_sealed",
                      "workspace_wiped"):
        assert milestone in names
    assert names.index("data_decrypted") < names.index("training_finished") < names.index(
        "outputs_sealed")
    finished: dict[str, Any] = dict(
        next(e.fields for e in events if e.name == "training_finished"))
    assert finished["dp"] is True and 0 < finished["epsilon"] <= 8.0
    progress = [e.fields for e in events if e.type == "progress"]
    assert progress and progress[-1]["step"] == progress[-1]["total"] == finished["steps"]
    assert all(set(p) <= {"step", "total", "loss", "lr", "grad_norm", "epsilon", "eta_s"}
               for p in progress)

    sealed_out = sorted(p.name for p in (out / "model").iterdir())
    assert "adapter_model.safetensors.sealed" in sealed_out
    assert "training.json.sealed" in sealed_out
    assert [p.name for p in (out / "checkpoints").iterdir()] == [
        f"ckpt-{finished['steps']:010d}.sealed"]  # only the last one is kept
    for path in out.rglob("*"):
        if path.is_file():
            assert path.read_bytes()[:8] == b"SEALTUNE"
    # No plaintext marker anywhere outside: outputs, the test's dirs, the system temp dir.
    needle = marker.encode()
    roots = [tmp_path, Path(tempfile.gettempdir())]
    assert _files_containing(roots, needle, began) == []

    # The outputs open with the workspace key; the report carries the privacy figures.
    opened = tmp_path / "opened"
    opened.mkdir()
    open_file(out / "model" / "training.json.sealed", opened / "training.json",
              keys=workspace.keys)
    report = json.loads((opened / "training.json").read_text())
    assert report["privacy"]["epsilon_spent"] == pytest.approx(finished["epsilon"])
    assert report["privacy"]["unit"].startswith("example-level")
    open_file(out / "model" / "adapter_model.safetensors.sealed",
              opened / "adapter_model.safetensors", keys=workspace.keys)
    from safetensors.torch import load_file
    weights = load_file(opened / "adapter_model.safetensors")
    assert weights and all("lora_" in k for k in weights)

    # A new sandbox resumes from the sealed checkpoints of this one (bound read-only).
    out2, job2 = tmp_path / "out2", tmp_path / "job2.json"
    out2.mkdir()
    job2.write_text(json.dumps({**spec, "resume": "resume"}))
    resume_spec = replace(box_spec, output_dir=out2, inputs={
        **box_spec.inputs, "job": job2, "resume": out / "checkpoints"})
    with Sandbox(resume_spec) as box:
        box.start("sealtune.train.worker", [], secrets=keys)
        again = {e.name: dict(e.fields) for e in box.events(timeout=240) if e.type == "event"}
    assert box.exit_code == 0
    assert again["training_finished"]["resumed_from"] == finished["steps"]
    assert again["training_finished"]["epsilon"] == finished["epsilon"]
    assert again["outputs_sealed"]["files"] == len(sealed_out)


@pytest.mark.usefixtures("bwrap_ok")
def test_a_failure_inside_reports_the_error_class_only(workspace: Workspace,
                                                       tmp_path: Path) -> None:
    marker = "PLANTED-" + secrets.token_hex(8)
    plain = tmp_path / "train.jsonl"
    plain.write_text(json.dumps(_records(marker)[0].to_json()) + "\n")
    sealed = tmp_path / "train.jsonl.sealed"
    seal_file(plain, sealed, keys=workspace.keys, key_names=["k1"])
    plain.unlink()
    wrong = new_data_key(AES_256_GCM)
    spec = {"format": "sealtune-train-job/1", "dataset": "dataset", "base": "base",
            "output": _target(workspace, wrong), "config": {}}
    out, base = tmp_path / "out", tmp_path / "base"
    out.mkdir()
    base.mkdir()
    box_spec = SandboxSpec(output_dir=out, hidden=(workspace.root,),
                           inputs={"dataset": sealed, "base": base})
    with Sandbox(box_spec) as box:
        box.start("sealtune.train.worker", ["--spec-json", json.dumps(spec)],
                  secrets={"dataset": wrong, "output": wrong})
        events = list(box.events(timeout=60))
    errors = [dict(e.fields) for e in events if e.type == "error"]
    assert errors == [{"kind": "IntegrityError"}]
    assert "data_decrypted" not in [e.name for e in events]
    assert box.exit_code == 1
    assert list(out.iterdir()) == []
