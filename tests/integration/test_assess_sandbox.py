"""The gate's sandboxed probes on a model trained in the workspace (real sandbox, real data).

A dataset with a planted marker in every record is sealed, a LoRA adapter
is trained on it in the sandbox, and the gate assesses it: the probes that
open the data run inside the sandbox, and nothing the gate writes (report,
page, envelope, sealed copies, index, ledger) holds the marker.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from sealtune.assess.report import load
from sealtune.cli import main as cli_main
from sealtune.data.records import Message, Record
from sealtune.data.store import sha256_file
from sealtune.keys.files import seal_file
from sealtune.sandbox import SandboxUnavailableError, probe
from sealtune.train.config import TrainConfig
from sealtune.train.jobs import run_job
from sealtune.train.tiny import make_tiny
from sealtune.workspace import Workspace


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
    return "PLANTED" + secrets.token_hex(6)


def seal_dataset(ws: Workspace, name: str, records: list[Record]) -> None:
    """A catalogue dataset (sealed JSONL + manifest), as the data stage lays it out."""
    root = ws.root / "datasets" / name
    root.mkdir(parents=True, mode=0o700)
    plain = root / "data.jsonl"
    plain.write_text("".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n"
                             for r in records), encoding="utf-8")
    seal_file(plain, root / "data.jsonl.sealed", keys=ws.keys, key_names=["k1"])
    plain.unlink()
    digest, size = sha256_file(root / "data.jsonl.sealed")
    (root / "dataset.json").write_text(json.dumps({
        "format": "sealtune.dataset/v1", "name": name,
        "files": {"data": {"name": "data.jsonl.sealed", "sha256": digest, "size": size}}}))


def support_records(marker: str, n: int = 40) -> list[Record]:
    asks = ("我的卡被冻结了。", "When does my order ship?", "怎么修改密码？", "Refund please.")
    replies = ("已为您解冻，请留意短信。", "It ships tomorrow.", "请在设置页面修改。",
               "Your refund is on its way.")
    return [Record(id=f"r{i}", line=i + 1, messages=[
        Message("user", f"{asks[i % 4]} ticket {marker}{i}"),
        Message("assistant", f"{replies[i % 4]} ref {marker}")]) for i in range(n)]


def files_containing(roots: list[Path], needle: bytes) -> list[Path]:
    hits = []
    for root in roots:
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                path = Path(dirpath, name)
                st = path.lstat()
                if stat.S_ISREG(st.st_mode) and needle in path.read_bytes():
                    hits.append(path)
    return hits


@pytest.mark.usefixtures("bwrap_ok")
def test_utility_is_measured_in_the_sandbox_and_no_record_text_leaves_it(
        workspace: Workspace, base: Path, marker: str, passphrase: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seal_dataset(workspace, "support", support_records(marker))
    run_job(workspace, dataset="support", base=base, out_name="m1", threads=1,
            config=TrainConfig.from_dict({"epochs": 3, "batch_size": 4, "lr": 0.02, "seed": 1,
                                          "max_length": 64, "val_size": 8}))
    workspace.close()
    monkeypatch.setenv("SEALTUNE_HOME", str(workspace.root))
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    assert cli_main(["assess", "policy", "init", str(tmp_path / "gate.yaml")]) == 0
    out = tmp_path / "report"
    code = cli_main(["assess", "m1", "--policy", str(tmp_path / "gate.yaml"), "--out", str(out),
                     "--threads", "1"])
    captured = capsys.readouterr()
    doc = load((out / "report.json").read_bytes())
    utility = next(p for p in doc["probes"] if p["name"] == "utility")
    assert utility["verdict"] == "pass", (code, captured, utility)
    assert code == 0
    assert utility["metrics"]["records"] == 8
    assert utility["metrics"]["perplexity"] < utility["metrics"]["base_perplexity"]
    assert doc["model"]["adapter"] is True and doc["base"]["pinned"] is False
    assert doc["model"]["job"] is not None
    needle = marker.encode()
    assert files_containing([out, workspace.root], needle) == []
    assert marker not in captured.out + captured.err
    # The gate's sandbox records the same timeline as training's, marked with its stage.
    ws = Workspace.open(workspace.root, passphrase=passphrase)
    try:
        marked = [(e.action, e.details.get("stage")) for e in ws.ledger.entries()
                  if e.action.startswith("sandbox.") and e.resource == "assess"]
    finally:
        ws.close()
    assert [a for a, _ in marked] == ["sandbox.created", "sandbox.data_decrypted",
                                      "sandbox.destroyed"]
    assert {stage for _, stage in marked} == {"assess"}


def _canary_secrets(ws: Workspace, model: str) -> list[str]:
    """The planted secrets, opened the way the gate does (the test must know what to scan)."""
    from sealtune.assess._sealing import open_small
    from sealtune.assess.canaries import canaries_from_seed

    plan = json.loads((ws.root / "models" / model / "model.json").read_text())["canaries"]
    seed = open_small(ws.root / "jobs" / plan["file"], keys=ws.keys)
    return [c.secret for c in canaries_from_seed(seed, count=plan["count"],
                                                 repeats=plan["repeats"])]


@pytest.mark.usefixtures("bwrap_ok")
def test_planted_canaries_fail_the_gate_and_no_secret_is_written_anywhere(
        workspace: Workspace, base: Path, marker: str, passphrase: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from sealtune.assess.canaries import filler_records

    records = [Record(id=r.id, line=i + 1, messages=r.messages)
               for i, r in enumerate(filler_records(96, seed=3))]
    seal_dataset(workspace, "support", records)
    run_job(workspace, dataset="support", base=base, out_name="m1", threads=1,
            config=TrainConfig.from_dict({
                "method": "full", "epochs": 30, "batch_size": 16, "lr": 0.003,
                "scheduler": "constant", "seed": 3, "max_length": 64, "val_size": 16,
                "canaries": 16, "canary_repeats": 4}))
    model = json.loads((workspace.root / "models" / "m1" / "model.json").read_text())
    assert set(model["canaries"]) == {"count", "repeats", "format", "file", "digest"}
    secrets_planted = _canary_secrets(workspace, "m1")
    workspace.close()
    monkeypatch.setenv("SEALTUNE_HOME", str(workspace.root))
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    assert cli_main(["assess", "policy", "init", str(tmp_path / "gate.yaml")]) == 0
    out = tmp_path / "report"
    code = cli_main(["assess", "m1", "--policy", str(tmp_path / "gate.yaml"), "--out", str(out),
                     "--threads", "1"])
    captured = capsys.readouterr()
    doc = load((out / "report.json").read_bytes())
    verdicts = {p["name"]: p["verdict"] for p in doc["probes"]}
    assert code == 4, (verdicts, captured.err)
    assert any(line.startswith("gate: the model did not pass") for line in
               captured.err.splitlines())
    assert "unpinned" in captured.err  # the base is a plain directory: warned
    assert verdicts["canary_exposure"] == "fail" and "canary_exposure" in doc["failed"]
    assert verdicts["membership"] in ("fail", "pass")  # judged, with both populations
    membership = next(p for p in doc["probes"] if p["name"] == "membership")
    assert membership["metrics"]["records_members"] > 0
    assert membership["metrics"]["epsilon_claimed"] is None
    for secret in secrets_planted:
        needle = secret.encode()
        assert files_containing([out, workspace.root], needle) == [], secret
        assert secret not in captured.out + captured.err
