"""Training settings and held-out evaluation through the CLI, in the real sandbox.

``sealtune train`` with the new options runs a sandboxed job; ``sealtune jobs show`` prints
one entry per epoch (``--json``: numbers only) and no record text reaches the job record, the
audit log or any file. A job killed with SIGKILL after its first evaluated epoch is resumed
and keeps that epoch's numbers.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from sealtune.cli import main as cli_main
from sealtune.data.records import Message, Record
from sealtune.data.store import sha256_file
from sealtune.errors import UsageError
from sealtune.keys.files import seal_file
from sealtune.sandbox import SandboxUnavailableError, probe
from sealtune.train.config import TrainConfig
from sealtune.train.jobs import list_jobs, run_job, show_job
from sealtune.train.tiny import make_tiny
from sealtune.workspace import Workspace

_REPLIES = ("您好，已为您提交申请。", "Your order ships tomorrow.", "请在设置页面修改密码。")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def bwrap_ok() -> None:
    try:
        probe()
    except SandboxUnavailableError as exc:
        pytest.fail(f"no working bubblewrap here (scripts/install installs it): {exc.message}")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("tiny") / "base", seed=0)


@pytest.fixture
def marker() -> str:
    return "PLANTED-" + secrets.token_hex(8)


def _dataset(ws: Workspace, name: str, marker: str, n: int, *, counted: bool = False) -> None:
    """A catalogue dataset whose every record carries ``marker`` (sealed, plaintext removed)."""
    root = ws.root / "datasets" / name
    root.mkdir(parents=True, mode=0o700)
    plain = root / "data.jsonl"
    plain.write_text("".join(json.dumps(Record(id=f"r{i}", line=i + 1, messages=[
        Message("user", f"ticket {i} {marker} 请问？"),
        Message("assistant", f"{_REPLIES[i % 3]} {marker}")]).to_json(),
        ensure_ascii=False) + "\n" for i in range(n)), encoding="utf-8")
    seal_file(plain, root / "data.jsonl.sealed", keys=ws.keys, key_names=["k1"])
    plain.unlink()
    digest, size = sha256_file(root / "data.jsonl.sealed")
    (root / "dataset.json").write_text(json.dumps({
        "format": "sealtune.dataset/v1", "name": name,
        "files": {"data": {"name": "data.jsonl.sealed", "sha256": digest, "size": size}},
        **({"counts": {"records_out": n}} if counted else {})}))


def _files_containing(roots: list[Path], needle: bytes, since: float) -> list[Path]:
    hits = []
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = Path(dirpath, name)
                try:
                    st = path.lstat()  # regular files only: a FIFO in /tmp would block
                    if (stat.S_ISREG(st.st_mode) and st.st_mtime >= since
                            and needle in path.read_bytes()):
                        hits.append(path)
                except OSError:
                    continue
    return hits


@pytest.mark.usefixtures("bwrap_ok")
def test_train_with_settings_and_a_split_then_jobs_show_has_an_eval_per_epoch(
        workspace: Workspace, base: Path, marker: str, tmp_path: Path, passphrase: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    began = time.time() - 1
    _dataset(workspace, "support", marker, n=24)
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    monkeypatch.setenv("COLUMNS", "200")
    home = ["--home", str(workspace.root)]
    assert cli_main(["train", "--dataset", "support", "--base", str(base), "--out-name", "m",
                     "--val-size", "0.2", "--epochs", "2", "--batch-size", "4",
                     "--cutoff-len", "48", "--lr", "0.01", "--lora-r", "4",
                     "--lora-alpha", "8", "--lora-target", "q_proj,v_proj",
                     "--lora-dropout", "0", "--scheduler", "cosine", "--warmup-ratio", "0.1",
                     "--weight-decay", "0.01", "--threads", "1", *home]) == 0
    [job] = list_jobs(workspace)
    assert job["status"] == "finished"
    assert job["config"]["lora"] == {"rank": 4, "alpha": 8, "dropout": 0.0,
                                     "target": ["q_proj", "v_proj"]}
    assert (job["config"]["scheduler"], job["config"]["warmup_ratio"],
            job["config"]["val_size"], job["config"]["max_length"]) == ("cosine", 0.1, 0.2, 48)
    capsys.readouterr()
    assert cli_main(["jobs", "show", job["id"], "--json", *home]) == 0
    shown = json.loads(capsys.readouterr().out)
    epochs = shown["epochs"]
    assert [(e["epoch"], e["step"]) for e in epochs] == [(1.0, 5), (2.0, 10)]  # 19 train, 5 held
    for e in epochs:
        assert set(e) == {"epoch", "step", "train_loss", "eval_loss", "eval_perplexity"}
        assert all(isinstance(v, int | float) for v in e.values())
        assert e["eval_perplexity"] == pytest.approx(math.exp(e["eval_loss"]))
    assert shown["metrics"]["val_examples"] == 5 and shown["metrics"]["train_examples"] == 19
    assert shown["metrics"]["eval_loss"] == epochs[-1]["eval_loss"]
    finished = next(e for e in workspace.ledger.entries() if e.action == "train.finished")
    assert finished.details["val_examples"] == 5
    assert finished.details["eval_loss"] == epochs[-1]["eval_loss"]
    assert cli_main(["jobs", "show", job["id"], *home]) == 0
    table = capsys.readouterr().out
    assert "eval perplexity" in table and f"{epochs[1]['eval_loss']:.4g}" in table
    # No record text anywhere: the job record, the audit log, the shown output, any file.
    for text in (json.dumps(shown, ensure_ascii=False), table,
                 (workspace.root / "jobs" / f"{job['id']}.json").read_text("utf-8"),
                 json.dumps([e.details for e in workspace.ledger.entries()], ensure_ascii=False)):
        assert marker not in text and "请问" not in text and _REPLIES[1] not in text
    roots = [workspace.root, tmp_path, Path(tempfile.gettempdir())]
    assert _files_containing(roots, marker.encode(), began) == []


@pytest.mark.usefixtures("bwrap_ok")
def test_a_job_killed_after_an_epoch_resumes_with_that_epochs_numbers(
        workspace: Workspace, base: Path, marker: str, tmp_path: Path, passphrase: str) -> None:
    began = time.time() - 1
    _dataset(workspace, "support", marker, n=48)
    env = {**os.environ, "SEALTUNE_PASSPHRASE": passphrase,
           "SEALTUNE_HOME": str(workspace.root)}
    argv = [sys.executable, "-m", "sealtune", "train", "--dataset", "support", "--base",
            str(base), "--out-name", "resumed", "--epochs", "4", "--val-size", "8",
            "--batch-size", "4", "--max-length", "48", "--lr", "0.01",
            "--checkpoint-every", "2", "--threads", "1"]  # 40 train: 10 steps an epoch
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    jobs = workspace.root / "jobs"
    deadline = time.monotonic() + 180
    while True:  # until epoch 1 is recorded and a checkpoint after it is sealed
        assert proc.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline, "no evaluated epoch within 180 s"
        steps = [int(p.name[5:15]) for p in jobs.glob("*/checkpoints/ckpt-*.sealed")]
        records = list(jobs.glob("*.json"))
        if steps and max(steps) >= 10 and records and json.loads(
                records[0].read_text("utf-8")).get("epochs"):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    [killed] = list_jobs(workspace)
    assert killed["status"] == "killed" and killed["epochs"][0]["step"] == 10
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    latest = list_jobs(workspace)[-1]
    assert latest["resumed_job"] == killed["id"] and latest["metrics"]["resumed_from"] >= 10
    assert [e["epoch"] for e in latest["epochs"]] == [1.0, 2.0, 3.0, 4.0]
    for before in killed["epochs"]:  # reported again from the checkpoint, or recomputed
        assert before in latest["epochs"]
    assert show_job(workspace, killed["id"])["resumed_by"] == latest["id"]
    roots = [workspace.root, tmp_path, Path(tempfile.gettempdir())]
    assert _files_containing(roots, marker.encode(), began) == []


@pytest.mark.usefixtures("bwrap_ok")
def test_two_ranks_evaluate_the_held_out_records_as_one_process(
        workspace: Workspace, base: Path, marker: str) -> None:
    _dataset(workspace, "support", marker, n=24)
    config = TrainConfig.from_dict({"epochs": 2, "batch_size": 4, "lr": 0.01, "seed": 3,
                                    "max_length": 48, "max_steps": 6, "val_size": 7,
                                    "lora": {"dropout": 0.0}})  # 17 train: 5 steps an epoch
    two = run_job(workspace, dataset="support", base=base, out_name="two", threads=2,
                  nproc=2, config=config)
    one = run_job(workspace, dataset="support", base=base, out_name="one", threads=1,
                  config=config)
    a, b = (show_job(workspace, r.job_id)["epochs"] for r in (two, one))
    assert [(e["epoch"], e["step"]) for e in a] == [(1.0, 5), (1.2, 6)] == [
        (e["epoch"], e["step"]) for e in b]
    for x, y in zip(a, b, strict=True):  # each rank evaluates its share; the sums are added
        assert x["eval_loss"] == pytest.approx(y["eval_loss"], rel=1e-4)


def test_a_split_larger_than_the_dataset_is_refused_before_any_sandbox(
        workspace: Workspace, base: Path, marker: str) -> None:
    _dataset(workspace, "counted", marker, n=6, counted=True)
    with pytest.raises(UsageError, match=r"val_size \(--val-size\) holds out 6 of the "
                                         r"dataset's 6 records"):
        run_job(workspace, dataset="counted", base=base, out_name="m", threads=1,
                config=TrainConfig.from_dict({"val_size": 6}))
    with pytest.raises(UsageError, match="holds out 60 of"):
        run_job(workspace, dataset="counted", base=base, out_name="m", threads=1,
                config=TrainConfig.from_dict({"val_size": 60}))
    assert list_jobs(workspace) == [] and not (workspace.root / "jobs").exists()
