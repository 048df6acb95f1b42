"""The tiny demo model: loadable with from_pretrained, safetensors only, deterministic."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from sealtune.cli.models import app
from sealtune.errors import UsageError
from sealtune.train.tiny import SPECIAL_TOKENS, TINY_ARCH, make_tiny


def _digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def test_loads_with_auto_classes(tiny_dir: Path) -> None:
    names = {p.name for p in tiny_dir.iterdir()}
    assert "model.safetensors" in names and "tokenizer.json" in names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    assert model.config.model_type == "llama"
    assert model.config.hidden_size == TINY_ARCH["hidden_size"]
    assert model.config.num_hidden_layers == TINY_ARCH["num_hidden_layers"]
    assert not model.config.tie_word_embeddings  # ghost clipping cannot handle tied weights
    assert 2048 <= len(tok) <= 4096 and model.config.vocab_size == len(tok)
    assert all(t in tok.get_vocab() for t in SPECIAL_TOKENS)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|pad|>"
    ids = tok("你好 hello", return_tensors="pt").input_ids
    with torch.no_grad():
        assert model(ids).logits.shape == (1, ids.shape[1], len(tok))


def test_tokenizer_round_trips_mixed_text_and_marks_assistant_tokens(tiny_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    text = "您好，订单 20240601 已发货。Your parcel ships today! 😀"
    assert tok.decode(tok(text).input_ids) == text
    assert len(tok("您好，已为您提交申请").input_ids) <= 10  # common characters are merged
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "您好"}]
    out: Any = tok.apply_chat_template(messages, tokenize=True, return_dict=True,
                                       return_assistant_tokens_mask=True)
    marked = [t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tok.decode(marked) == "您好<|im_end|>"


def test_deterministic_given_the_seed(tmp_path: Path, tiny_dir: Path) -> None:
    again = _digests(make_tiny(tmp_path / "again", seed=0))
    assert again == _digests(tiny_dir)
    other = _digests(make_tiny(tmp_path / "other", seed=1))
    assert other["model.safetensors"] != again["model.safetensors"]
    assert other["tokenizer.json"] == again["tokenizer.json"]  # the tokenizer is seed-free


def test_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("x")
    with pytest.raises(UsageError, match="not an empty directory"):
        make_tiny(tmp_path)


def test_cli_make_tiny(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["make-tiny", str(tmp_path / "m"), "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert "seed 2" in " ".join(result.output.split())
    assert "Writing" not in result.output  # no progress bar noise
