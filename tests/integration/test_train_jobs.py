"""Training jobs end to end: the real sandbox, the ledger timeline, kill -9 and resume.

Nothing is mocked: bubblewrap creates the sandbox (or, pointed at a missing
executable, really cannot), the workspace's keyring unwraps the dataset key,
the CLI runs as a subprocess and is killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
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

import sealtune.train.jobs.run as job_run
from sealtune.cli import main as cli_main
from sealtune.data.records import Message, Record
from sealtune.data.store import sha256_file
from sealtune.errors import UsageError
from sealtune.keys.files import seal_file
from sealtune.sandbox import SandboxUnavailableError, probe, seccomp
from sealtune.serve.engines import Message as ChatMessage
from sealtune.serve.engines import Sampling, make_engine
from sealtune.serve.model import resolve_base, resolve_model
from sealtune.train.config import TrainConfig
from sealtune.train.jobs import list_jobs, run_job, show_job
from sealtune.train.jobs.run import TrainingError
from sealtune.train.tiny import make_tiny
from sealtune.workspace import Workspace

TIMELINE = ("sandbox.created", "sandbox.data_decrypted", "train.finished",
            "sandbox.outputs_sealed", "sandbox.destroyed", "train.model_installed")


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


def _dataset(ws: Workspace, name: str, marker: str, n: int = 24) -> None:
    """A catalogue dataset (sealed JSONL of records + manifest), as the data stage lays out."""
    root = ws.root / "datasets" / name
    root.mkdir(parents=True, mode=0o700)
    plain = root / "data.jsonl"
    plain.write_text("".join(json.dumps(Record(id=f"r{i}", line=i + 1, messages=[
        Message("user", f"我的卡号是多少？ ticket {i} {marker}"),
        Message("assistant", f"您的编号是 {marker}-{i}，请妥善保管。")]).to_json(),
        ensure_ascii=False) + "\n" for i in range(n)), encoding="utf-8")
    seal_file(plain, root / "data.jsonl.sealed", keys=ws.keys, key_names=["k1"])
    plain.unlink()
    digest, size = sha256_file(root / "data.jsonl.sealed")
    (root / "dataset.json").write_text(json.dumps({
        "format": "sealtune.dataset/v1", "name": name,
        "files": {"data": {"name": "data.jsonl.sealed", "sha256": digest, "size": size}}}))


def _config(**extra: object) -> TrainConfig:
    return TrainConfig.from_dict({"epochs": 1, "batch_size": 4, "lr": 0.01, "seed": 1,
                                  "max_length": 48, **extra})


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
def test_a_sandboxed_job_records_its_timeline_and_leaves_only_sealed_files(
        workspace: Workspace, base: Path, marker: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, passphrase: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    began = time.time() - 1
    _dataset(workspace, "support", marker)
    stale = workspace.root / "models" / ".build-killedjob"  # a run killed mid-install
    stale.mkdir(parents=True)
    (stale / "adapter_model.safetensors.sealed").write_bytes(b"SEALTUNE half")
    seen: list[int] = []
    result = run_job(workspace, dataset="support", base=base, out_name="m1", threads=1,
                     config=_config(dp={"epsilon": 8.0, "noise_multiplier": 1.0}),
                     progress=lambda ev: seen.append(int(ev.fields["step"] or 0)))
    assert result.sandboxed and result.steps > 0 and seen[-1] == result.steps
    assert result.privacy is not None and 0 < result.privacy["epsilon_spent"] <= 8.0
    assert result.teardown is not None and result.teardown["processes_left"] == 0
    assert result.teardown["namespaces_released"] is True

    actions = [e.action for e in workspace.ledger.entries()
               if e.resource == f"job/{result.job_id}"]
    assert [a for a in actions if a in TIMELINE] == list(TIMELINE)
    finished = next(e for e in workspace.ledger.entries() if e.action == "train.finished")
    assert finished.details["epsilon"] == result.privacy["epsilon_spent"]
    created = next(e for e in workspace.ledger.entries() if e.action == "sandbox.created")
    assert created.details["measurement"]["inputs"]["dataset"].startswith("sha256:")
    assert "--unshare-net" in created.details["flags"]["isolation"]

    model = workspace.root / "models" / "m1"
    assert not stale.exists()
    assert not [p for p in model.parent.iterdir() if p.name.startswith(".build-")]
    names = sorted(p.name for p in model.iterdir())
    assert "model.json" in names and "adapter_model.safetensors.sealed" in names
    assert all(n == "model.json" or n.endswith(".sealed") for n in names)
    manifest = json.loads((model / "model.json").read_text())
    assert manifest["job"] == result.job_id and manifest["dataset"]["name"] == "support"
    assert manifest["privacy"]["epsilon_spent"] == result.privacy["epsilon_spent"]
    assert manifest["base"]["digest"] == result.measurement["base_model"]
    for path in (workspace.root / "jobs").rglob("*"):
        if path.is_file() and path.suffix != ".json":
            assert path.read_bytes()[:8] == b"SEALTUNE"
    # The adapter (LoRA is train's default) serves by name over its recorded base,
    # decrypted in memory only (the scan below covers this too).
    files = resolve_model("m1", keys=workspace.keys, workspace_root=workspace.root)
    engine = make_engine("transformers", files=files, model_id="m1",
                         base=resolve_base(model, base=None))
    answer = engine.generate((ChatMessage("user", f"ticket 3 {marker}"),),
                             sampling=Sampling(max_tokens=6, temperature=0.0))
    assert answer.completion_tokens > 0
    roots = [workspace.root, tmp_path, Path(tempfile.gettempdir())]
    assert _files_containing(roots, marker.encode(), began) == []

    assert [j["id"] for j in list_jobs(workspace)] == [result.job_id]
    assert show_job(workspace, result.job_id)["status"] == "finished"
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    monkeypatch.setenv("COLUMNS", "200")
    capsys.readouterr()
    assert cli_main(["jobs", "list", "--home", str(workspace.root)]) == 0
    assert result.job_id in capsys.readouterr().out
    assert cli_main(["jobs", "show", result.job_id, "--home", str(workspace.root)]) == 0
    shown = capsys.readouterr().out
    assert "sandbox.destroyed" in shown and "epsilon_spent" in shown
    assert marker not in shown


def test_training_without_the_sandbox_warns_and_is_recorded(
        workspace: Workspace, base: Path, marker: str) -> None:
    _dataset(workspace, "support", marker, n=8)
    with pytest.warns(UserWarning, match="WITHOUT the sandbox"):
        result = run_job(workspace, dataset="support", base=base, out_name="unsafe",
                         sandbox=False, threads=1, config=_config(max_steps=2))
    assert not result.sandboxed and result.steps == 2
    actions = [e.action for e in workspace.ledger.entries()]
    assert "train.unsafe_no_sandbox" in actions
    assert actions.index("train.unsafe_no_sandbox") < actions.index("train.finished")
    assert show_job(workspace, result.job_id)["sandboxed"] is False


def test_a_failure_without_the_sandbox_names_only_its_class_unless_debugging(
        workspace: Workspace, base: Path, marker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure hint says SEALTUNE_DEBUG=1 with --no-sandbox shows the error: it does."""
    _dataset(workspace, "support", marker, n=8)
    none_left = _config(max_steps=2, val_size=8)  # the split leaves nothing to train on
    with pytest.warns(UserWarning), pytest.raises(TrainingError) as plain:
        run_job(workspace, dataset="support", base=base, out_name="a", sandbox=False,
                threads=1, config=none_left)
    assert str(plain.value).endswith("UsageError") and "SEALTUNE_DEBUG" in (plain.value.hint or "")
    monkeypatch.setenv("SEALTUNE_DEBUG", "1")
    with pytest.warns(UserWarning), pytest.raises(UsageError, match="val_size"):
        run_job(workspace, dataset="support", base=base, out_name="b", sandbox=False,
                threads=1, config=none_left)


@pytest.mark.parametrize("sandbox", [True, False])
def test_a_failure_known_by_code_says_what_went_wrong_and_the_fix(
        workspace: Workspace, base: Path, marker: str, sandbox: bool) -> None:
    """Every answer cut by --max-length: the worker's error code (never its text) crosses
    the sandbox, and the parent says the condition and its fix."""
    _dataset(workspace, "support", marker, n=8)
    tight = _config(max_steps=2, max_length=8)  # every assistant token lost to truncation
    with contextlib.ExitStack() as stack:
        if not sandbox:
            stack.enter_context(pytest.warns(UserWarning))
        failed = stack.enter_context(pytest.raises(TrainingError))
        run_job(workspace, dataset="support", base=base, out_name="cut", sandbox=sandbox,
                threads=1, config=tight)
    assert "UsageError: every training example lost its answer to truncation at max_length" \
        in str(failed.value)
    assert "raise --max-length" in (failed.value.hint or "")
    assert marker not in str(failed.value) + (failed.value.hint or "")


def test_training_refuses_when_the_sandbox_cannot_be_created(
        workspace: Workspace, base: Path, marker: str, tmp_path: Path) -> None:
    _dataset(workspace, "support", marker, n=8)
    with pytest.raises(SandboxUnavailableError) as info:
        run_job(workspace, dataset="support", base=base, out_name="m", threads=1,
                config=_config(max_steps=2), bwrap=str(tmp_path / "no-such-bwrap"))
    assert "--no-sandbox" in (info.value.hint or "")
    refused = [e for e in workspace.ledger.entries() if e.action == "train.refused"]
    assert len(refused) == 1 and refused[0].outcome == "failure"
    assert not (workspace.root / "models" / "m").exists() and list_jobs(workspace) == []


def _processes_mentioning(text: str, settle: float = 5.0) -> list[int]:
    deadline = time.monotonic() + settle
    while True:
        found = []
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                state = Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0]
            except (OSError, IndexError):
                continue
            if text.encode() in cmdline and state != b"Z":
                found.append(int(pid))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.mark.usefixtures("bwrap_ok")
def test_kill_9_leaves_no_plaintext_and_the_next_run_resumes(
        workspace: Workspace, base: Path, marker: str, tmp_path: Path,
        passphrase: str) -> None:
    began = time.time() - 1
    _dataset(workspace, "support", marker, n=48)
    env = {**os.environ, "SEALTUNE_PASSPHRASE": passphrase,
           "SEALTUNE_HOME": str(workspace.root)}
    argv = [sys.executable, "-m", "sealtune", "train", "--dataset", "support", "--base",
            str(base), "--out-name", "killed", "--epochs", "3", "--max-steps", "30",
            "--batch-size", "4",
            "--max-length", "48", "--lr", "0.01", "--checkpoint-every", "2", "--threads", "1"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    jobs = workspace.root / "jobs"
    deadline = time.monotonic() + 120
    while not list(jobs.glob("*/checkpoints/ckpt-*.sealed")):
        assert proc.poll() is None, "the job ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert _processes_mentioning(str(jobs)) == []  # --die-with-parent: the sandbox went too
    [killed] = list_jobs(workspace)
    assert killed["status"] == "killed"
    assert not (workspace.root / "models" / "killed").exists()
    roots = [workspace.root, tmp_path, Path(tempfile.gettempdir())]
    assert _files_containing(roots, marker.encode(), began) == []

    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from step" in done.stdout
    latest = list_jobs(workspace)[-1]
    assert latest["status"] == "finished" and latest["resumed_job"] == killed["id"]
    assert latest["metrics"]["resumed_from"] > 0 and latest["metrics"]["steps"] == 30
    assert show_job(workspace, killed["id"])["resumed_by"] == latest["id"]
    assert _files_containing(roots, marker.encode(), began) == []


@pytest.mark.usefixtures("bwrap_ok")
def test_jobs_cancel_stops_a_running_job_from_another_process(
        workspace: Workspace, base: Path, marker: str, passphrase: str) -> None:
    _dataset(workspace, "support", marker, n=48)
    env = {**os.environ, "SEALTUNE_PASSPHRASE": passphrase,
           "SEALTUNE_HOME": str(workspace.root)}
    argv = [sys.executable, "-m", "sealtune", "train", "--dataset", "support", "--base",
            str(base), "--out-name", "stopped", "--epochs", "50", "--batch-size", "4",
            "--max-length", "48", "--lr", "0.01", "--checkpoint-every", "2", "--threads", "1"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    jobs = workspace.root / "jobs"
    deadline = time.monotonic() + 120
    while not list(jobs.glob("*/checkpoints/ckpt-*.sealed")):  # training, mid-way
        assert proc.poll() is None, "the job ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    cancel = [sys.executable, "-m", "sealtune", "jobs", "cancel", "latest"]
    res = subprocess.run(cancel, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "cancel requested" in res.stdout, res.stderr
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "\ncancelled: the run was cancelled" in err, err[-500:]
    [job] = list_jobs(workspace)
    assert job["status"] == "cancelled"
    assert [e["event"] for e in job["timeline"]][-2:] == ["sandbox.destroyed", "train.cancelled"]
    assert _processes_mentioning(str(jobs)) == []
    # nothing installed, no checkpoint or marker left: nothing for a later run to resume
    assert not (workspace.root / "models" / "stopped").exists()
    assert sorted(p.name for p in jobs.iterdir()) == [f"{job['id']}.json"]
    actions = [e.action for e in workspace.ledger.entries(resource=f"job/{job['id']}")]
    assert actions.index("train.cancel_requested") < actions.index("train.cancelled")
    again = subprocess.run(cancel, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "cancelled, not running" in again.stderr


@pytest.mark.usefixtures("bwrap_ok")
def test_a_job_whose_sandbox_leaves_stray_files_fails_and_the_audit_log_names_them(
        workspace: Workspace, base: Path, marker: str, tmp_path: Path, passphrase: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    began = time.time() - 1
    _dataset(workspace, "support", marker, n=8)
    pin = "pin-" + secrets.token_hex(10)
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    monkeypatch.setenv("SEALTUNE_PKCS11_PIN", pin)
    # The sandboxed code misbehaves: the real worker trains and seals, then litters.
    monkeypatch.setattr(job_run, "WORKER", "sealtune.train._probe_worker")
    code = cli_main(["train", "--dataset", "support", "--base", str(base), "--out-name", "m2",
                     "--max-steps", "2", "--batch-size", "4", "--max-length", "48",
                     "--threads", "1", "--home", str(workspace.root)])
    assert code == 3  # IntegrityError
    [job] = list_jobs(workspace)
    assert job["status"] == "failed" and job["error"] == "IntegrityError"
    assert not (workspace.root / "models" / "m2").exists()
    entries = [e for e in workspace.ledger.entries() if e.resource == f"job/{job['id']}"]
    [stray] = [e for e in entries if e.action == "sandbox.unexpected_outputs"]
    assert stray.outcome == "failure" and stray.details["count"] == 5
    assert sorted(stray.details["names"]) == [
        "checkpoints/ckpt-0000009999.sealed", "extra", "model/notes.txt", "model/pipe.sealed",
        "stray.txt"]
    run_dir = workspace.root / "jobs" / job["id"]
    for path in run_dir.rglob("*"):  # only the sealed outputs the worker is meant to write
        assert not path.is_symlink()
        assert path.is_dir() or path.read_bytes()[:8] == b"SEALTUNE", path
    created = next(e for e in entries if e.action == "sandbox.created")
    flags = created.details["flags"]
    assert "--as-pid-1" in flags["isolation"]
    assert flags["seccomp"]["program"] == seccomp.digest(os.uname().machine)
    assert not any(name.startswith("SEALTUNE_") for name in flags["env"])
    roots = [workspace.root, tmp_path, Path(tempfile.gettempdir())]
    for planted in (marker, passphrase, pin):
        assert _files_containing(roots, planted.encode(), began) == []
