"""Held-out evaluation in real (tiny) training runs: one report per epoch, a falling eval loss
on a learnable set, determinism, exact resume with the earlier epochs kept, DP, schedules and
LoRA targets as the config says."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from sealtune.errors import ConfigError
from sealtune.train.checkpoints import MemorySink
from sealtune.train.config import TrainConfig
from sealtune.train.dp import DPConfig
from sealtune.train.jobs.run import record_epoch
from sealtune.train.metrics import EpochReport
from sealtune.train.schedule import lr_lambda
from sealtune.train.trainer import VAL_FRACTION_DP_NOTE, Progress, train


def _config(**changes: Any) -> TrainConfig:
    base = TrainConfig(lr=1e-2, epochs=3, batch_size=4, max_length=96, seed=0, val_size=0.2)
    return dataclasses.replace(base, **changes)


def test_one_eval_per_epoch_and_it_falls_on_a_learnable_set(
        tiny_dir: Path, make_records: Any, tmp_path: Path) -> None:
    seen: list[EpochReport] = []
    result = train(make_records(40), base_dir=tiny_dir, config=_config(), out_dir=tmp_path / "o",
                   on_epoch=seen.append)
    assert result.validation is not None and result.validation["examples"] == 8  # 0.2 * 40
    assert result.data["examples"] == 32 and result.steps == 24  # 8 steps an epoch
    assert list(result.epochs) == seen
    assert [(e.epoch, e.step) for e in seen] == [(1.0, 8), (2.0, 16), (3.0, 24)]
    evals = [e.eval_loss for e in seen]
    assert all(isinstance(x, float) and math.isfinite(x) for x in evals)
    assert evals[0] > evals[1] > evals[2] and evals[2] < evals[0] - 0.2
    for e in seen:
        assert e.eval_perplexity == pytest.approx(math.exp(e.eval_loss or 0))
        steps = result.loss_history[int(e.step) - 8:int(e.step)]
        assert e.train_loss == pytest.approx(sum(x for x in steps if x is not None) / 8)
    doc = json.loads((tmp_path / "o" / "training.json").read_text())
    assert [d["eval_loss"] for d in doc["epochs"]] == evals
    assert doc["config"]["val_size"] == 0.2 and doc["validation"]["examples"] == 8


def test_without_a_split_epochs_report_the_training_loss_only(
        tiny_dir: Path, make_records: Any, tmp_path: Path) -> None:
    result = train(make_records(8), base_dir=tiny_dir, out_dir=tmp_path / "o",
                   config=_config(val_size=0, epochs=2, max_steps=3))
    assert result.validation is None and result.data["examples"] == 8
    # max_steps ends the second epoch half way: a fractional last report.
    assert [(e.epoch, e.step, e.eval_loss) for e in result.epochs] == [(1.0, 2, None),
                                                                      (1.5, 3, None)]
    assert all(isinstance(e.train_loss, float) for e in result.epochs)


def test_same_seed_same_numbers(tiny_dir: Path, make_records: Any, tmp_path: Path) -> None:
    config = _config(epochs=2, val_size=5)
    a = train(make_records(20), base_dir=tiny_dir, config=config, out_dir=tmp_path / "a")
    b = train(make_records(20), base_dir=tiny_dir, config=config, out_dir=tmp_path / "b")
    assert a.epochs == b.epochs and a.loss_history == b.loss_history
    c = train(make_records(20), base_dir=tiny_dir, config=dataclasses.replace(config, seed=1),
              out_dir=tmp_path / "c")
    assert [e.eval_loss for e in c.epochs] != [e.eval_loss for e in a.epochs]


def test_resume_keeps_the_earlier_epochs_and_reaches_the_same_numbers(
        tiny_dir: Path, make_records: Any, tmp_path: Path) -> None:
    config = _config(checkpoint_every=2, epochs=3)
    records = make_records(20)
    sink = MemorySink()
    whole = train(records, base_dir=tiny_dir, config=config, out_dir=tmp_path / "a",
                  checkpoint=sink)
    sink.truncate(6)  # killed after the step-6 checkpoint, in the middle of epoch 2
    seen: list[EpochReport] = []
    resumed = train(records, base_dir=tiny_dir, config=config, out_dir=tmp_path / "b",
                    checkpoint=sink, on_epoch=seen.append)
    assert resumed.resumed_from == 6
    assert seen == list(whole.epochs)  # epoch 1 from the checkpoint, then 2 and 3 anew
    assert resumed.epochs == whole.epochs and resumed.loss_history == whole.loss_history
    a = load_file(tmp_path / "a" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
    # Another split (a different held-out set) is another run: refused.
    with pytest.raises(ConfigError, match="other settings"):
        train(records, base_dir=tiny_dir, config=dataclasses.replace(config, val_size=3),
              out_dir=tmp_path / "c", checkpoint=sink)


def test_dp_accounts_for_the_training_records_and_evaluates_every_epoch(
        tiny_dir: Path, make_records: Any, tmp_path: Path) -> None:
    config = _config(epochs=2, dp=DPConfig(epsilon=8.0, epsilon_every=100))
    result = train(make_records(20), base_dir=tiny_dir, config=config, out_dir=tmp_path / "o")
    assert result.privacy is not None and result.privacy.dataset_size == 16
    assert result.privacy.sample_rate == pytest.approx(1 / 4)
    assert [e.epoch for e in result.epochs] == [1.0, 2.0]
    assert all(isinstance(e.eval_loss, float) for e in result.epochs)
    assert VAL_FRACTION_DP_NOTE in result.notes
    counted = dataclasses.replace(config, val_size=4)
    again = train(make_records(20), base_dir=tiny_dir, config=counted, out_dir=tmp_path / "p")
    assert VAL_FRACTION_DP_NOTE not in again.notes and len(again.epochs) == 2
    # Full fine-tuning under DP uses ghost clipping: its hooks too stay out of evaluation.
    full = dataclasses.replace(counted, method="full", lr=3e-3)
    ghost = train(make_records(20), base_dir=tiny_dir, config=full, out_dir=tmp_path / "g")
    assert ghost.privacy is not None and "ghost" in ghost.privacy.clipping
    assert [e.epoch for e in ghost.epochs] == [1.0, 2.0]
    assert all(isinstance(e.eval_loss, float) for e in ghost.epochs)


def test_the_scheduler_and_warmup_set_each_steps_learning_rate(
        tiny_dir: Path, make_records: Any, tmp_path: Path) -> None:
    config = _config(scheduler="cosine", warmup_ratio=0.25, epochs=2, val_size=0)
    seen: list[Progress] = []
    train(make_records(16), base_dir=tiny_dir, config=config, out_dir=tmp_path / "o",
          progress=seen.append)
    factor = lr_lambda(config, 8)
    assert [p.lr for p in seen] == pytest.approx([1e-2 * factor(s) for s in range(8)])
    assert seen[0].lr == pytest.approx(1e-2 / 2)  # warm-up: ceil(0.25 * 8) = 2 steps


def test_lora_settings_reach_the_adapter(tiny_dir: Path, make_records: Any,
                                         tmp_path: Path) -> None:
    config = _config(val_size=0, max_steps=1, lora=dataclasses.replace(
        TrainConfig().lora, rank=4, alpha=8, target=("q_proj", "v_proj")))
    train(make_records(4), base_dir=tiny_dir, config=config, out_dir=tmp_path / "o")
    adapter = json.loads((tmp_path / "o" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]
    weights = load_file(tmp_path / "o" / "adapter_model.safetensors")
    assert {k.split(".")[-3] for k in weights} == {"q_proj", "v_proj"}
    assert all(w.shape[0] == 4 for k, w in weights.items() if "lora_A" in k)
    every = dataclasses.replace(config, lora=dataclasses.replace(config.lora, target=("all",)))
    train(make_records(4), base_dir=tiny_dir, config=every, out_dir=tmp_path / "all")
    names = {k.split(".")[-3] for k in load_file(tmp_path / "all" / "adapter_model.safetensors")}
    assert {"q_proj", "v_proj", "down_proj"} <= names and "lm_head" not in names
    missing = dataclasses.replace(config, lora=dataclasses.replace(config.lora,
                                                                   target=("c_attn",)))
    with pytest.raises(ConfigError, match=r"lora.target \(--lora-target\).*c_attn") as info:
        train(make_records(4), base_dir=tiny_dir, config=missing, out_dir=tmp_path / "x")
    assert "q_proj" in (info.value.hint or "")


def test_the_job_record_keeps_numbers_only_from_epoch_events() -> None:
    first = {"epoch": 1.0, "step": 5, "train_loss": 1.5, "eval_loss": 2.0,
             "eval_perplexity": math.exp(2.0)}
    rec: dict[str, Any] = {"epochs": []}
    record_epoch(rec, {**first, "note": "extra-field"})
    record_epoch(rec, {**first, "step": 10, "epoch": 2.0, "eval_loss": "PLANTED-text"})
    record_epoch(rec, {**first, "step": True})
    record_epoch(rec, {**first, "step": 10, "epoch": 2.0, "train_loss": False})
    record_epoch(rec, dict(first))  # reported again (a resumed job): replaces, never duplicates
    assert rec["epochs"] == [first]
