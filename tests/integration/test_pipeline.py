"""The pipeline end to end, as a user runs it: ``sealtune pipeline init`` then ``sealtune run``
(real subprocesses, the real sandbox, SIGKILL), and in-process runs that change one thing."""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sealtune.errors import IntegrityError
from sealtune.keys.keyfile import KdfParams
from sealtune.pipeline import ensure_secret, load_pipeline, run_pipeline
from sealtune.train.jobs import list_jobs
from sealtune.workspace import Workspace

SEALTUNE = [sys.executable, "-m", "sealtune"]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sealtune pipeline init`` output, made once (the tiny model takes a few seconds)."""
    root = tmp_path_factory.mktemp("example") / "ex"
    res = subprocess.run([*SEALTUNE, "pipeline", "init", str(root)], capture_output=True,
                         text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    assert "sealtune run" in res.stdout
    return root


def _env(tmp_path: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env.update({"SEALTUNE_HOME": str(home), "SEALTUNE_PASSPHRASE": "pl-" + secrets.token_hex(8),
                "SEALTUNE_UNSAFE_FAST_KDF": "1", "TMPDIR": str(tmp_path / "tmp"),
                "COLUMNS": "200"})
    return env


def _run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([*SEALTUNE, *args], env=env, capture_output=True, text=True,
                         timeout=600, check=False)
    if check:
        assert res.returncode == 0, (args, res.stdout[-3000:], res.stderr[-3000:])
    return res


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _plant(raw: Path) -> list[str]:
    """Append conversations with unique PII and a unique plain marker; return them all."""
    rng = random.Random(secrets.randbits(32))
    values, lines = [], []
    for i in range(6):
        name = rng.choice(["欧阳", "司马", "诸葛"]) + "".join(rng.sample("震霆蔚岚秋笛云舒", 2))
        phone = f"13{rng.randint(5, 9)}{rng.randint(10**7, 10**8 - 1)}"
        email = f"{secrets.token_hex(6)}@example.org"
        marker = f"zqv{secrets.token_hex(6)}"
        values += [name, phone, email, marker]
        lines.append(json.dumps({"id": f"planted-{i}", "messages": [
            {"role": "user", "content": f"你好，我是{name}，手机{phone}，邮箱{email}，退款没到。"},
            {"role": "assistant", "content": f"您好，已登记，工单 {marker}。"}]},
            ensure_ascii=False))
    with raw.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return values


def _unsealed_hits(root: Path, values: list[str]) -> tuple[int, list[str]]:
    wanted = {v.encode(enc) for v in values for enc in ("utf-8", "utf-16-le", "utf-16-be")}
    files, hits = 0, []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue  # FIFOs and links: a read could block or leave the tree
        data = path.read_bytes()
        if data.startswith(b"SEALTUNE"):
            continue  # sealed: authenticated ciphertext
        files += 1
        hits += [f"{path}: {w[:10]!r}" for w in wanted if w in data]
    return files, hits


def test_the_example_runs_reruns_cached_refuses_tampering_and_leaks_nothing(
        example: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ex"
    shutil.copytree(example, folder)
    values = _plant(folder / "data" / "conversations.jsonl")
    env = _env(tmp_path, tmp_path / "home")
    outputs = [_run(env, "init")]
    began = time.monotonic()
    first = _run(env, "run", str(folder / "pipeline.yaml"))
    full = time.monotonic() - began
    said = " ".join(first.stdout.split())
    assert "data: done" in said and "train: done" in said and "in the sandbox" in said
    start = time.monotonic()
    again = _run(env, "run", str(folder / "pipeline.yaml"), "--json")
    elapsed = time.monotonic() - start
    events = _events(again.stdout)
    assert [(e["event"], e.get("step")) for e in events] == [
        ("run_started", None), ("step_cached", "data"), ("step_cached", "train"),
        ("run_finished", None)]
    # The target is 5 s (bench/pipeline.py measures it: 3.9 s); on a loaded machine the
    # test allows what a loaded machine takes, but a rerun must still skip the work.
    assert elapsed < max(5.0, 0.4 * full), f"an unchanged rerun took {elapsed:.1f} s " \
        f"(the full run {full:.1f} s)"
    digests = events[-1]["digests"]
    assert digests["data"]["records"].startswith("sha256:")
    assert digests["train"]["weights"].startswith("sha256:")
    sealed = next((tmp_path / "home" / "datasets").glob("support-*/data.jsonl.sealed"))
    blob = bytearray(sealed.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    sealed.write_bytes(bytes(blob))
    refused = _run(env, "run", str(folder / "pipeline.yaml"), check=False)
    assert refused.returncode == 3, refused.stderr
    assert f"step data: datasets/{sealed.parent.name}/data.jsonl.sealed changed" in refused.stderr
    outputs += [first, again, refused, _run(env, "audit", "log", "--json")]
    for res in outputs:
        assert not [v for v in values if v in res.stdout or v in res.stderr]
    files, hits = _unsealed_hits(tmp_path / "home", values)
    assert files >= 10 and hits == [], hits[:5]
    assert _unsealed_hits(tmp_path / "tmp", values)[1] == []
    raw = str(folder / "data" / "conversations.jsonl")
    assert {h.split(": ")[0] for h in _unsealed_hits(folder, values)[1]} == {raw}  # input only


def _small(tmp_path: Path, example: Path, *, records: int = 120) -> Path:
    """The example on a slice of the sample, 2 training steps without DP (for speed)."""
    folder = tmp_path / "small"
    shutil.copytree(example, folder)
    raw = folder / "data" / "conversations.jsonl"
    raw.write_text("\n".join(raw.read_text("utf-8").splitlines()[:records]) + "\n", "utf-8")
    text = (folder / "pipeline.yaml").read_text("utf-8")
    text = text.replace("max_steps: 5", "max_steps: 2").split("    dp:")[0]
    (folder / "pipeline.yaml").write_text(text, "utf-8")
    return folder


@pytest.fixture
def ws(tmp_path: Path) -> Any:
    workspace = Workspace.init(tmp_path / "ws", passphrase="pl-" + secrets.token_hex(8),
                               kdf=KdfParams.unsafe_fast())
    yield workspace
    workspace.close()


def _ran(pipeline_file: Path, ws: Workspace, **kwargs: Any) -> dict[str, str]:
    """Run; return step -> 'ran' or 'cached'."""
    seen: dict[str, str] = {}

    def record(event: dict[str, Any]) -> None:
        if event["event"] in ("step_finished", "step_cached"):
            seen[event["step"]] = "ran" if event["event"] == "step_finished" else "cached"

    run_pipeline(load_pipeline(pipeline_file), ws, on_event=record, **kwargs)
    return seen


def test_each_change_reruns_exactly_the_steps_it_affects(example: Path, tmp_path: Path,
                                                         ws: Workspace) -> None:
    folder = _small(tmp_path, example)
    file = folder / "pipeline.yaml"
    assert _ran(file, ws) == {"data": "ran", "train": "ran"}
    assert _ran(file, ws) == {"data": "cached", "train": "cached"}
    file.write_text(file.read_text().replace("lr: 0.01", "lr: 0.02"))
    assert _ran(file, ws) == {"data": "cached", "train": "ran"}
    policy = folder / "policy.yaml"
    policy.write_text(policy.read_text().replace("EMAIL: {operator: pseudonym}",
                                                 "EMAIL: {operator: tag}"))
    assert _ran(file, ws) == {"data": "ran", "train": "ran"}
    assert _ran(file, ws, force=["train"]) == {"data": "cached", "train": "ran"}
    assert _ran(file, ws) == {"data": "cached", "train": "cached"}
    # a comment in the policy file changes nothing that is computed
    policy.write_text("# reviewed\n" + policy.read_text())
    assert _ran(file, ws) == {"data": "cached", "train": "cached"}


def test_an_input_changed_between_steps_fails_the_next_step(example: Path, tmp_path: Path,
                                                            ws: Workspace) -> None:
    folder = _small(tmp_path, example)

    def tamper(event: dict[str, Any]) -> None:
        if event["event"] == "step_finished" and event["step"] == "data":
            rel = next(k for k in event["outputs"] if k.endswith("data.jsonl.sealed"))
            path = ws.root / rel
            blob = bytearray(path.read_bytes())
            blob[-50] ^= 0x01
            path.write_bytes(bytes(blob))

    with pytest.raises(IntegrityError) as info:
        run_pipeline(load_pipeline(folder / "pipeline.yaml"), ws, on_event=tamper)
    assert info.value.message.startswith("step train: its input datasets/")
    assert info.value.exit_code == 3
    assert not list(ws.root.glob("jobs/*.json"))  # the job never started


def _wait_then_kill(proc: subprocess.Popen[str], ready: Callable[[], bool],
                    timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the run ended before the kill point"
        assert time.monotonic() < deadline, "the kill point never came"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


def test_sigkill_during_data_and_during_training_then_rerun_gives_the_same_digests(
        example: Path, tmp_path: Path) -> None:
    """Two copies of one workspace (same keys, same pipeline secret): one runs uninterrupted;
    the other is killed while ingest writes its dataset, rerun, killed right after a sealed
    training checkpoint, and rerun to the end. The final digests (the dataset's records, the
    trained weights) must be equal, and the last job must have resumed from the checkpoint."""
    folder = tmp_path / "ex"
    shutil.copytree(example, folder)
    file = folder / "pipeline.yaml"
    origin = tmp_path / "w0"
    env = _env(tmp_path, origin)
    base = Workspace.init(origin, passphrase=env["SEALTUNE_PASSPHRASE"],
                          kdf=KdfParams.unsafe_fast())
    ensure_secret(load_pipeline(file), base)
    base.close()
    for name in ("w1", "w2"):
        shutil.copytree(origin, tmp_path / name)
    whole = _events(_run({**env, "SEALTUNE_HOME": str(tmp_path / "w1")}, "run", str(file),
                         "--json").stdout)[-1]["digests"]
    w2 = tmp_path / "w2"
    env2 = {**env, "SEALTUNE_HOME": str(w2)}

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen([*SEALTUNE, "run", str(file), "--json"], env=env2,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)

    _wait_then_kill(start(), lambda: any((w2 / "datasets").glob(".build-*/**/data.jsonl.sealed")))
    assert not list((w2 / "datasets").glob("support-*"))  # killed before it was published
    _wait_then_kill(start(), lambda: any(w2.glob("jobs/*/checkpoints/ckpt-*.sealed")))
    assert not list(w2.glob("models/support-model-*"))  # killed before it was installed
    final = _events(_run(env2, "run", str(file), "--json").stdout)
    assert final[-1]["digests"] == whole
    assert [e["event"] for e in final if e.get("step") == "data"] == ["step_cached"]
    ws = Workspace.open(w2, passphrase=env["SEALTUNE_PASSPHRASE"])
    try:
        jobs = list_jobs(ws)
    finally:
        ws.close()
    assert [j["status"] for j in jobs] == ["killed", "finished"]
    assert jobs[-1]["resumed_job"] == jobs[0]["id"]
    assert (jobs[-1]["metrics"] or {}).get("resumed_from") == 2
    assert not list((w2 / "datasets").glob(".build-*"))  # the killed build was cleaned up


def test_cli_refusals_name_the_fix(example: Path, tmp_path: Path) -> None:
    env = _env(tmp_path, tmp_path / "nowhere")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    res = _run(env, "pipeline", "init", str(busy), check=False)
    assert res.returncode == 2 and "not an empty directory" in res.stderr
    assert (busy / "keep.txt").read_text() == "mine"
    folder = tmp_path / "ex"
    shutil.copytree(example, folder)
    res = _run(env, "run", str(folder / "pipeline.yaml"), check=False)
    assert res.returncode == 1 and "no sealtune workspace" in res.stderr
    assert "sealtune init" in res.stderr  # the hint: fail closed, say how
    text = (folder / "pipeline.yaml").read_text()
    (folder / "pipeline.yaml").write_text(text.replace("name: support-bot",
                                                       "name: support-bot\nworkspce: ws"))
    res = subprocess.run([*SEALTUNE, "run", "pipeline.yaml"], env=env, cwd=folder,
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 1
    assert "pipeline.yaml:9:1: workspce: unknown key (did you mean 'workspace'?)" in res.stderr
    assert "allowed here: name, steps, version, workspace" in res.stderr
