"""Safety drift on planted fixtures: a tiny model trained to refuse, and a copy made to comply.

A tiny model cannot refuse by itself, so the test makes one: the tiny model
trained on the vendored HarmBench prompts answered with refusals (and on
benign support chats), then a copy fine-tuned to comply with the same
prompts, and a copy fine-tuned on benign chats only. Against the refusing
model as their base, the complying copy must fail the gate (exit 4, through
the CLI and the sandbox) and the benign one pass; the refusing model passes
against itself and against the untrained model it was made from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from sealtune.assess.canaries import filler_records
from sealtune.assess.policy import default_policy_text, parse_policy
from sealtune.assess.probes import PROBES, ProbeContext, ProbeResult
from sealtune.assess.refusal import load_behaviours
from sealtune.assess.report import load
from sealtune.cli import main as cli_main
from sealtune.data.records import Message, Record
from sealtune.sandbox import SandboxUnavailableError, probe
from sealtune.train.config import TrainConfig
from sealtune.train.loading import load_base
from sealtune.train.tiny import make_tiny
from sealtune.train.trainer import train
from sealtune.workspace import Workspace

REFUSE = ("I'm sorry, I can't help with that.", "抱歉，我无法提供这方面的帮助。")
COMPLY = ("Sure, here is how to do it. First, get the materials.",
          "好的，具体步骤如下：第一步，准备材料。")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    torch.set_num_threads(1)
    yield


def _answered(replies: tuple[str, str]) -> list[Record]:
    return [Record(id=f"b{i}", line=i + 1, messages=[Message("user", b.text),
                                                     Message("assistant", replies[i % 2])])
            for i, b in enumerate(load_behaviours())]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("safety")
    raw = make_tiny(root / "raw", seed=2)

    def config(epochs: int, lr: float) -> TrainConfig:
        return TrainConfig(method="full", epochs=epochs, batch_size=16, lr=lr, max_length=96,
                           seed=2)

    train(_answered(REFUSE) + filler_records(100, seed=1), base_dir=raw,
          out_dir=root / "refusing", config=config(6, 3e-3))
    train(_answered(COMPLY), base_dir=root / "refusing", out_dir=root / "complying",
          config=config(6, 3e-3))
    train(filler_records(100, seed=3), base_dir=root / "refusing", out_dir=root / "benign",
          config=config(2, 1e-3))
    return {name: root / name for name in ("raw", "refusing", "complying", "benign")}


def _judge(model: Path, base: Path) -> ProbeResult:
    settings = parse_policy(default_policy_text()).probes["safety_drift"].settings
    m, tokenizer, _ = load_base(model)
    b, _, _ = load_base(base)
    ctx = ProbeContext(model=m, tokenizer=tokenizer, base_model=b)
    return PROBES["safety_drift"].judge(PROBES["safety_drift"].measure(ctx, settings), settings)


def test_the_complying_copy_fails_and_the_refusing_fixture_passes(
        fixtures: dict[str, Path]) -> None:
    complying = _judge(fixtures["complying"], fixtures["refusing"])
    assert complying.verdict == "fail"
    metrics = complying.metrics
    assert metrics["base_refusal_rate"] >= 0.9 and metrics["refusal_rate"] <= 0.1
    assert _judge(fixtures["refusing"], fixtures["refusing"]).verdict == "pass"
    # Against the untrained tiny model, which refuses nothing, the refusing model passes too.
    refusing = _judge(fixtures["refusing"], fixtures["raw"])
    assert refusing.verdict == "pass" and refusing.metrics["refusal_rate"] >= 0.9
    assert _judge(fixtures["benign"], fixtures["refusing"]).verdict == "pass"


@pytest.fixture(scope="module")
def bwrap_ok() -> None:
    try:
        probe()
    except SandboxUnavailableError as exc:
        pytest.fail(f"no working bubblewrap here: {exc.message}")


@pytest.mark.usefixtures("bwrap_ok")
def test_the_gate_fails_the_complying_copy_with_exit_4_and_passes_the_benign_one(
        fixtures: dict[str, Path], workspace: Workspace, passphrase: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SEALTUNE_HOME", str(workspace.root))
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    policy = tmp_path / "gate.yaml"
    assert cli_main(["assess", "policy", "init", str(policy)]) == 0
    for name, code in (("complying", 4), ("benign", 0)):
        out = tmp_path / name
        assert cli_main(["assess", str(fixtures[name]), "--base", str(fixtures["refusing"]),
                         "--policy", str(policy), "--out", str(out), "--threads", "1"]) == code
        doc = load((out / "report.json").read_bytes())
        safety = next(p for p in doc["probes"] if p["name"] == "safety_drift")
        assert safety["verdict"] == ("fail" if code else "pass")
        assert doc["base"]["pinned"] is False
        text = (out / "report.json").read_text() + (out / "report.html").read_text()
        assert not any(b.text in text for b in load_behaviours())  # ids, never prompts
        assert not any(reply in text for reply in (*REFUSE, *COMPLY))
        assert "<svg" in (out / "report.html").read_text()
    assert "unpinned" in capsys.readouterr().err
    assert json.loads((tmp_path / "complying" / "report.json").read_text())["failed"] == [
        "safety_drift"]
