"""TrainConfig: every setting's checks name the key and its option; renamed keys say what to
write; the fingerprint covers every setting that changes the computation; the learning-rate
schedules against transformers' reference shapes."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
import torch
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

from sealtune.errors import ConfigError
from sealtune.train.config import OPTIONS, LoraSettings, TrainConfig
from sealtune.train.schedule import lr_lambda, warmup_steps

# (key, bad value): each must fail naming the key and its CLI option.
BAD: list[tuple[str, Any]] = [
    ("method", "qlora"), ("epochs", 0), ("epochs", 2.5), ("epochs", True), ("max_steps", 0),
    ("lr", 0), ("lr", -1e-4), ("lr", "1e-4"), ("lr", math.inf), ("lr", math.nan),
    ("weight_decay", -0.1), ("scheduler", "polynomial"), ("warmup_steps", -1),
    ("warmup_ratio", 1.0), ("warmup_ratio", -0.1), ("batch_size", 0),
    ("physical_batch_size", 0), ("max_length", 7), ("max_length", "512"), ("seed", -1),
    ("seed", 2**63), ("max_grad_norm", 0), ("checkpoint_every", -1), ("val_size", 0.6),
    ("val_size", 1.0), ("val_size", -1), ("val_size", -0.1), ("val_size", True),
    ("val_size", "0.1"), ("lora.rank", 0), ("lora.rank", 8.0), ("lora.alpha", 0),
    ("lora.dropout", 1.0), ("lora.dropout", -0.01), ("lora.target", []),
    ("lora.target", ["q_proj", "q_proj"]), ("lora.target", ["all", "q_proj"]),
    ("lora.target", ["q proj"]), ("lora.target", [""]), ("lora.target", 5),
]


@pytest.mark.parametrize(("key", "value"), BAD, ids=[f"{k}={v!r}" for k, v in BAD])
def test_each_bad_value_names_its_key_and_option(key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_flat({key: value})
    assert key in info.value.message and OPTIONS[key] in info.value.message


def test_both_warmups_is_an_error_naming_both() -> None:
    with pytest.raises(ConfigError, match=r"warmup_steps \(--warmup-steps\) and warmup_ratio "
                                          r"\(--warmup-ratio\)") as info:
        TrainConfig.from_dict({"warmup_steps": 10, "warmup_ratio": 0.1})
    assert "one of them" in (info.value.hint or "")


@pytest.mark.parametrize(("written", "instead"), [
    ({"learning_rate": 1e-4}, "lr"), ({"cutoff_len": 1024}, "max_length"),
    ({"num_train_epochs": 3}, "epochs"), ({"lr_scheduler_type": "cosine"}, "scheduler"),
    ({"allow_pickle": True}, "unsafe_allow_pickle"),
    ({"schedule": "linear"}, "scheduler"), ({"lora_rank": 8}, "lora.rank"),
    ({"lora": {"r": 8}}, "lora.rank"), ({"lora": {"target_modules": ["q_proj"]}}, "lora.target"),
    ({"val_szie": 0.1}, "val_size"), ({"dp": {"epsilom": 1.0, "epsilon": 1.0}}, "dp.epsilon"),
])
def test_unknown_keys_are_refused_with_the_key_to_write(written: dict[str, Any],
                                                         instead: str) -> None:
    with pytest.raises(ConfigError, match="unknown key") as info:
        TrainConfig.from_dict(written)
    assert f"write {instead} instead" in (info.value.hint or "")


def test_settings_round_trip_and_llama_factory_target_strings() -> None:
    config = TrainConfig.from_dict({
        "lora": {"rank": 16, "alpha": 32, "dropout": 0.0, "target": "q_proj, v_proj"},
        "lr": 1.0e-4, "scheduler": "cosine", "warmup_ratio": 0.1, "weight_decay": 0.01,
        "epochs": 3, "max_steps": 100, "batch_size": 4, "max_length": 1024, "val_size": 0.1})
    assert config.lora == LoraSettings(rank=16, alpha=32, dropout=0.0, target=("q_proj", "v_proj"))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig.from_flat({"lora.target": ["all"]}).lora.target == ("all",)
    assert TrainConfig.from_dict({"val_size": 0.0}).val_size == 0  # 0.0 and 0: no split, one
    assert TrainConfig(val_size=0.0).fingerprint() == TrainConfig().fingerprint()
    assert TrainConfig.from_dict({"val_size": 20}).val_size == 20


@pytest.mark.parametrize(("key", "value"), [
    ("lora.rank", 4), ("lora.alpha", 8), ("lora.dropout", 0.1), ("lora.target", ["q_proj"]),
    ("lr", 1e-3), ("scheduler", "cosine"), ("warmup_steps", 3), ("warmup_ratio", 0.2),
    ("weight_decay", 0.1), ("epochs", 2), ("max_steps", 7), ("batch_size", 2),
    ("physical_batch_size", 1), ("max_length", 64), ("val_size", 0.2), ("val_size", 3),
    ("seed", 1), ("max_grad_norm", 0.5), ("method", "full"),
])
def test_the_fingerprint_covers_every_setting_that_changes_training(key: str,
                                                                     value: Any) -> None:
    assert TrainConfig.from_flat({key: value}).fingerprint() != TrainConfig().fingerprint()


def test_the_fingerprint_ignores_how_often_checkpoints_are_written() -> None:
    assert TrainConfig(checkpoint_every=5).fingerprint() == TrainConfig().fingerprint()


def _config(**changes: Any) -> TrainConfig:
    return dataclasses.replace(TrainConfig(), **changes)


def _reference(factory: Any, total: int, warm: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    if factory is get_constant_schedule_with_warmup:
        scheduler = factory(optimizer, num_warmup_steps=warm)
    else:
        scheduler = factory(optimizer, num_warmup_steps=warm, num_training_steps=total)
    return [scheduler.lr_lambdas[0](step) for step in range(total)]


@pytest.mark.parametrize(("scheduler", "factory"), [
    ("cosine", get_cosine_schedule_with_warmup), ("linear", get_linear_schedule_with_warmup),
    ("constant", get_constant_schedule_with_warmup)])
@pytest.mark.parametrize(("total", "warm"), [(10, 0), (10, 3), (37, 5), (1, 0)])
def test_schedules_match_transformers_after_the_warmup(scheduler: str, factory: Any,
                                                       total: int, warm: int) -> None:
    ours = lr_lambda(_config(scheduler=scheduler, warmup_steps=warm), total)
    reference = _reference(factory, total, warm)
    for step in range(total):
        if step < warm:  # shifted by one: the first step must move the weights
            assert ours(step) == pytest.approx((step + 1) / warm)
            assert reference[step] == pytest.approx(step / warm)
        else:
            assert ours(step) == pytest.approx(reference[step], abs=1e-12)


def test_cosine_values_against_the_formula() -> None:
    # 100 steps, 10 of warm-up: half a cosine from the peak at step 10 to 0 at step 100.
    f = lr_lambda(_config(scheduler="cosine", warmup_ratio=0.1), 100)
    assert [f(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5)  # half way through the decay
    assert f(32) == pytest.approx(0.5 * (1 + math.cos(math.pi * 22 / 90)))
    assert f(99) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert 0 < f(99) < 1e-3


def test_warmup_ratio_rounds_up_over_the_planned_steps() -> None:
    assert warmup_steps(_config(warmup_ratio=0.1), 25) == 3
    assert warmup_steps(_config(warmup_ratio=0.1), 30) == 3
    assert warmup_steps(_config(warmup_steps=4), 30) == 4
    assert warmup_steps(_config(), 30) == 0
