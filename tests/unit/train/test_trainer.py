"""The training core without DP: labels, LoRA and full training, safe loading, the update
guard, and exact resume from a checkpoint."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from sealtune.data.records import Message, Record
from sealtune.errors import ConfigError, PolicyViolation, UsageError
from sealtune.train import trainer
from sealtune.train.checkpoints import MemorySink
from sealtune.train.data import encode_records
from sealtune.train.guard import UpdateCheckError, UpdateGuard
from sealtune.train.loading import UNSAFE_ALLOW_PICKLE_NOTE
from sealtune.train.picklescan import UnsafePickleError
from sealtune.train.trainer import LoraSettings, Progress, TrainConfig, example_losses, train


def _config(**changes: Any) -> TrainConfig:
    base = TrainConfig(lr=1e-2, epochs=2, batch_size=4, max_length=96, seed=0)
    return dataclasses.replace(base, **changes)


def _digest_dir(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.iterdir()):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_only_assistant_tokens_carry_loss(tiny_dir: Path, make_records: Any) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    records = make_records(4)
    records.append(Record(id="multi", line=5, messages=[
        Message("user", "第一个问题"), Message("assistant", "第一个回答"),
        Message("user", "second question"), Message("assistant", "second answer")]))
    data = encode_records(records, tok, max_length=512)
    for record, ex in zip(records, data.examples, strict=True):
        assert all(label in (-100, tid) for tid, label in zip(ex.input_ids, ex.labels,
                                                              strict=True))
        labelled = tok.decode([t for t in ex.labels if t != -100])
        replies = [m.content for m in record.messages if m.role == "assistant"]
        assert labelled == "".join(r + "<|im_end|>" for r in replies)
        unlabelled = tok.decode([t for t, lab in zip(ex.input_ids, ex.labels, strict=True)
                                 if lab == -100])
        for m in record.messages:
            if m.role != "assistant":
                assert m.content in unlabelled
    # Templates without {% generation %} markers: the offset-based mask gives the same labels.
    tok.chat_template = tok.chat_template.replace("{% generation %}", "").replace(
        "{% endgeneration %}", "")
    assert encode_records(records, tok, max_length=512).examples == data.examples
    cut = encode_records(records, tok, max_length=20)
    assert cut.truncated == len(records)
    assert cut.without_loss == 4 and cut.loss_tokens > 0  # the multi-turn one keeps a reply
    assert cut.stats()["examples"] == len(records)  # kept: N must not depend on content


def test_the_loss_ignores_everything_but_assistant_tokens(tiny_dir: Path,
                                                          make_records: Any) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    ex = encode_records(make_records(1), tok, max_length=96).examples[0]
    ids, labels = torch.tensor([ex.input_ids]), torch.tensor([ex.labels])
    with torch.no_grad():
        got = example_losses(model, ids, torch.ones_like(ids), labels)
        logits = model(ids).logits[0, :-1]
    keep = labels[0, 1:] != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], labels[0, 1:][keep])
    assert torch.allclose(got[0], expected)
    nothing = torch.full_like(labels, -100)
    with torch.no_grad():
        assert example_losses(model, ids, torch.ones_like(ids), nothing).item() == 0.0


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
def test_lora_training_lowers_the_loss_and_writes_safetensors(
        tiny_dir: Path, make_records: Any, tmp_path: Path) -> None:
    before = _digest_dir(tiny_dir)
    seen: list[Progress] = []
    out = tmp_path / "out"
    result = train(make_records(16), base_dir=tiny_dir, config=_config(epochs=4), out_dir=out,
                   progress=seen.append)
    assert result.method == "lora" and result.stop_reason == "completed"
    assert result.steps == result.planned_steps == 16
    losses = [x for x in result.loss_history if x is not None]
    assert statistics.mean(losses[-3:]) < statistics.mean(losses[:3]) - 0.3
    assert [p.step for p in seen] == list(range(1, 17))
    for p in seen:
        assert p.total == 16 and p.epsilon is None
        assert all(isinstance(v, float) for v in (p.loss, p.lr, p.grad_norm))
    names = set(result.files)
    assert {"adapter_model.safetensors", "adapter_config.json", "training.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in os.listdir(out))
    weights = load_file(out / "adapter_model.safetensors")
    assert weights and all("lora_" in k for k in weights)
    assert result.trainable_parameters < result.total_parameters / 10
    assert result.guard["trainable_changed"] >= 1
    assert result.guard["frozen_unchanged"] == 21  # every base tensor untouched
    doc = json.loads((out / "training.json").read_text())
    assert doc["config"]["method"] == "lora" and doc["privacy"] is None
    assert doc["final_loss"] == pytest.approx(result.final_loss)
    assert _digest_dir(tiny_dir) == before  # the base model is read, never written

    from peft import PeftModel
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir), out)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert not torch.allclose(tuned(ids).logits, base(ids).logits)


def test_full_fine_tuning(tiny_dir: Path, make_records: Any, tmp_path: Path) -> None:
    out = tmp_path / "full"
    result = train(make_records(16), base_dir=tiny_dir, out_dir=out,
                   config=_config(method="full", lr=3e-3, epochs=2))
    assert result.trainable_parameters == result.total_parameters
    losses = [x for x in result.loss_history if x is not None]
    assert statistics.mean(losses[-2:]) < statistics.mean(losses[:2]) - 0.5
    tuned = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert not torch.equal(tuned.lm_head.weight, base.lm_head.weight)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


def _pickle_base(tiny_dir: Path, dst: Path, payload: object | None = None) -> Path:
    shutil.copytree(tiny_dir, dst, ignore=shutil.ignore_patterns("*.safetensors"))
    state = payload if payload is not None else load_file(tiny_dir / "model.safetensors")
    torch.save(state, dst / "pytorch_model.bin")
    return dst


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_pickle_weights_are_refused_unless_allowed_and_scanned(
        tiny_dir: Path, make_records: Any, tmp_path: Path) -> None:
    base = _pickle_base(tiny_dir, tmp_path / "pickled")
    with pytest.raises(PolicyViolation, match="pickle"):
        train(make_records(4), base_dir=base, config=_config(), out_dir=tmp_path / "o1")
    assert not (tmp_path / "o1").exists()
    result = train(make_records(4), base_dir=base, out_dir=tmp_path / "o2",
                   config=_config(unsafe_allow_pickle=True, max_steps=1))
    assert UNSAFE_ALLOW_PICKLE_NOTE in result.notes
    assert UNSAFE_ALLOW_PICKLE_NOTE in json.loads((tmp_path / "o2" / "training.json").read_text())[
        "notes"]

    marker = tmp_path / "pwned"
    evil = _pickle_base(tiny_dir, tmp_path / "evil", payload={"w": _Evil(marker)})
    with pytest.raises(UnsafePickleError, match="system"):
        train(make_records(4), base_dir=evil, out_dir=tmp_path / "o3",
              config=_config(unsafe_allow_pickle=True))
    assert not marker.exists()


def test_guard_refuses_an_optimizer_over_other_tensors(
        tiny_dir: Path, make_records: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The #820 mechanism: the optimizer holds tensors that the forward pass no longer uses
    # (what a device move after building the optimizer does).
    def stale(params: list[Any], config: TrainConfig) -> Any:
        return torch.optim.AdamW([p.detach().clone().requires_grad_() for p in params],
                                 lr=config.lr)

    monkeypatch.setattr(trainer, "build_optimizer", stale)
    with pytest.raises(UpdateCheckError, match="#820"):
        train(make_records(4), base_dir=tiny_dir, config=_config(), out_dir=tmp_path / "o")


def test_guard_fires_when_lora_weights_do_not_move(
        tiny_dir: Path, make_records: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = trainer.build_optimizer
    seen: list[Progress] = []

    def freezing(params: list[Any], config: TrainConfig) -> Any:
        optimizer = real(params, config)
        for p in params[1::2]:  # peft's order: lora_A, lora_B per layer; freeze every B
            p.requires_grad_(False)
        return optimizer

    monkeypatch.setattr(trainer, "build_optimizer", freezing)
    with pytest.raises(UpdateCheckError, match="unchanged"):
        train(make_records(8), base_dir=tiny_dir, config=_config(), out_dir=tmp_path / "o",
              progress=seen.append)
    assert seen == []  # stopped at the first step, before reporting it


def test_guard_catches_a_changed_frozen_weight() -> None:
    first, second = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    model = torch.nn.Sequential(first, second)
    guard = UpdateGuard(model, trainable={"0.weight", "0.bias"}, dp=True)
    with torch.no_grad():
        first.weight.add_(1.0)
        first.bias.add_(1.0)
        second.weight.add_(1.0)  # a frozen one
    with pytest.raises(UpdateCheckError, match="frozen"):
        guard.verify()


def test_resume_gives_the_same_final_weights(tiny_dir: Path, make_records: Any,
                                             tmp_path: Path) -> None:
    config = _config(epochs=2, checkpoint_every=2, lora=LoraSettings(dropout=0.1))
    sink = MemorySink()
    records = make_records(12)
    whole = train(records, base_dir=tiny_dir, config=config, out_dir=tmp_path / "a",
                  checkpoint=sink)
    assert [s for s, _ in sink.saved] == [2, 4, 6]
    sink.truncate(2)  # killed right after the checkpoint of step 2
    resumed = train(records, base_dir=tiny_dir, config=config, out_dir=tmp_path / "b",
                    checkpoint=sink)
    assert resumed.resumed_from == 2 and resumed.steps == whole.steps
    a = load_file(tmp_path / "a" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.loss_history == whole.loss_history
    with pytest.raises(ConfigError, match="other settings"):
        train(records, base_dir=tiny_dir, config=dataclasses.replace(config, lr=0.5),
              out_dir=tmp_path / "c", checkpoint=sink)


def test_config_fails_closed(tiny_dir: Path, make_records: Any, tmp_path: Path) -> None:
    config = _config(lora=LoraSettings(rank=4, target=("q_proj",)))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="epsilom"):
        TrainConfig.from_dict({"dp": {"epsilon": 1.0, "epsilom": 2.0}})
    with pytest.raises(ConfigError, match="unknown"):
        TrainConfig.from_dict({"methd": "full"})
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig.from_dict({"lr": -1})
    out = tmp_path / "busy"
    out.mkdir()
    (out / "x").write_text("x")
    with pytest.raises(UsageError, match="not empty"):
        train(make_records(2), base_dir=tiny_dir, config=_config(), out_dir=out)
