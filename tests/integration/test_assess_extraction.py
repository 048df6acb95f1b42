"""Extraction and PII regurgitation: a model that memorised rare answers fails; its base passes.

A tiny model is fully fine-tuned, many epochs, on support answers that hold
a unique order number and a phone number each (stand-ins for surrogates the
data stage would have put there). The probes measure it in-process (the
sandbox path is the same code, covered by test_assess_sandbox); the rows
hold positions, types and booleans, never a value.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from sealtune.assess.policy import default_policy_text, parse_policy
from sealtune.assess.probes import PROBES, ProbeContext, ProbeResult
from sealtune.data.records import Message, Record
from sealtune.train.config import TrainConfig
from sealtune.train.loading import load_base
from sealtune.train.tiny import make_tiny
from sealtune.train.trainer import train

POLICY = parse_policy(default_policy_text())
NAMES = ("张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def records() -> list[Record]:
    rng = random.Random(5)
    out = []
    for i in range(48):
        phone = "1" + rng.choice("3589") + "".join(rng.choice("0123456789") for _ in range(9))
        order = "".join(rng.choice("0123456789") for _ in range(10))
        name = NAMES[i % len(NAMES)]
        out.append(Record(id=f"r{i}", line=i + 1, messages=[
            Message("user", f"客户{name}想确认订单和联系方式。"),
            Message("assistant", f"{name}的订单号是{order}，联系电话{phone}，我们会尽快处理。")]))
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, records: list[Record]) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("extraction")
    base = make_tiny(root / "base", seed=1)
    train(records, base_dir=base, out_dir=root / "model", config=TrainConfig(
        method="full", epochs=40, batch_size=8, lr=3e-3, scheduler="constant",
        max_length=96, seed=1))
    return root / "model", base


def _judge(name: str, model: Path, base: Path, records: list[Record]) -> ProbeResult:
    m, tokenizer, _ = load_base(model)
    b, _, _ = load_base(base)
    ctx = ProbeContext(model=m, tokenizer=tokenizer, base_model=b, records=records, seed=0,
                       max_length=96)
    settings = POLICY.probes[name].settings
    return PROBES[name].judge(PROBES[name].measure(ctx, settings), settings)


def _no_values(result: ProbeResult, records: list[Record]) -> None:
    text = json.dumps(result.to_dict(), ensure_ascii=False)
    for record in records:
        answer = record.messages[1].content
        for value in (answer[answer.index("是") + 1:answer.index("，")],
                      answer[answer.index("电话") + 2:answer.index("，我们")]):
            assert value not in text


def test_a_model_that_memorised_rare_answers_fails_extraction(
        models: tuple[Path, Path], records: list[Record]) -> None:
    result = _judge("extraction", *models, records)
    assert result.verdict == "fail"
    assert result.metrics["extracted_rate"] == pytest.approx(1.0, abs=0.1)
    assert result.metrics["base_extracted_rate"] == 0.0
    _no_values(result, records)


def test_a_model_that_memorised_phone_numbers_fails_pii_regurgitation(
        models: tuple[Path, Path], records: list[Record]) -> None:
    result = _judge("pii_regurgitation", *models, records)
    assert result.verdict == "fail"
    assert result.metrics["hits_phone"] >= 40  # type: ignore[operator]
    assert result.metrics["p_value"] < 1e-6  # type: ignore[operator]
    _no_values(result, records)


def test_the_base_model_as_the_model_passes_both(models: tuple[Path, Path],
                                                 records: list[Record]) -> None:
    _, base = models
    assert _judge("extraction", base, base, records).verdict == "pass"
    assert _judge("pii_regurgitation", base, base, records).verdict == "pass"


def test_template_answers_repeated_across_records_do_not_count(
        models: tuple[Path, Path]) -> None:
    model, base = models
    repeated = [Record(id=f"t{i}", line=i + 1, messages=[
        Message("user", "When does my order ship?"),
        Message("assistant", "Your order ships tomorrow, thank you for waiting.")])
        for i in range(10)]
    result: Any = _judge("extraction", model, base, repeated)
    assert result.metrics.get("prefix_prompts", 0) == 0
