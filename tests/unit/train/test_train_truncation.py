"""Examples that ``max_length`` cut before any assistant token are dropped and counted;
training refuses when none remain (it used to train on them with a silent loss of 0)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from sealtune.data.records import Message, Record
from sealtune.errors import UsageError
from sealtune.train.data import encode_records
from sealtune.train.trainer import TRAINING_JSON, TrainConfig, train

LONG_PROMPT = "please read all of this carefully " * 12


def _records(short: int, long: int) -> list[Record]:
    out = [Record(id=f"s{i}", line=i + 1, messages=[
        Message("user", f"hi #{i}"), Message("assistant", "hello there")]) for i in range(short)]
    out += [Record(id=f"l{i}", line=short + i + 1, messages=[
        Message("user", f"{LONG_PROMPT} #{i}"), Message("assistant", "ok")])
        for i in range(long)]
    return out


def _config(**extra: object) -> TrainConfig:
    return TrainConfig.from_dict({"epochs": 1, "batch_size": 2, "lr": 0.01, "seed": 0,
                                  "max_length": 24, "max_steps": 2, **extra})


def test_with_loss_only_drops_and_counts(tiny_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    data = encode_records(_records(3, 2), tok, max_length=24)
    assert data.without_loss == 2  # what encode_records alone reports (kept, no loss)
    kept = data.with_loss_only()
    assert len(kept.examples) == 3 and kept.dropped_no_assistant_tokens == 2
    assert all(ex.loss_tokens > 0 for ex in kept.examples)
    assert kept.stats()["dropped_no_assistant_tokens"] == 2


def test_training_drops_truncated_examples_and_records_the_count(
        tiny_dir: Path, tmp_path: Path) -> None:
    result = train(_records(4, 4), base_dir=tiny_dir, config=_config(), out_dir=tmp_path / "o")
    assert result.dropped_no_assistant_tokens == 4 and result.data["examples"] == 4
    assert result.final_loss is not None and result.final_loss > 0
    assert all(loss is not None and loss > 0 for loss in result.loss_history)
    doc = json.loads((tmp_path / "o" / TRAINING_JSON).read_text())
    assert doc["dropped_no_assistant_tokens"] == 4
    assert any("dropped" in note for note in doc["notes"])


@pytest.mark.parametrize("dp", [None, {"epsilon": 8.0, "noise_multiplier": 1.0}])
def test_training_refuses_when_every_example_was_cut(
        tiny_dir: Path, tmp_path: Path, dp: dict[str, float] | None) -> None:
    config = _config(**({"dp": dp} if dp else {}))
    with pytest.raises(UsageError, match="max_length") as info:
        train(_records(0, 3), base_dir=tiny_dir, config=config, out_dir=tmp_path / "o")
    assert "--max-length" in (info.value.hint or "")
    assert LONG_PROMPT.strip() not in str(info.value)
    assert not (tmp_path / "o").exists()
