"""Serving a LoRA adapter (the training stage's default output) over its base model."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest

from sealtune.errors import ConfigError, IntegrityError
from sealtune.keys.files import seal_file
from sealtune.sandbox import digest_tree
from sealtune.serve.engines import Message, Sampling, make_engine
from sealtune.serve.model import (
    PlainModelDir,
    adapter_digest,
    is_adapter,
    model_digest,
    resolve_base,
    resolve_model,
)
from sealtune.workspace import Workspace

PROMPT = (Message("user", "tell me about my order"),)
GREEDY = Sampling(max_tokens=12, temperature=0.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[int]]:
    """A tiny base, a LoRA adapter with large random weights, and peft's own greedy output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sealtune.train.tiny import make_tiny

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("lora")
    base = make_tiny(root / "base")
    model = AutoModelForCausalLM.from_pretrained(base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    with warnings.catch_warnings():  # peft asks a deprecated transformers property
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing",
                                category=FutureWarning)
        peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8,
                                                      target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(7)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.normal_(0.0, 0.5)  # large enough that the adapter changes the output
    adapter = root / "adapter"
    peft_model.save_pretrained(adapter, safe_serialization=True)
    tokenizer.save_pretrained(adapter)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT[0].content}], add_generation_prompt=True,
        return_tensors="pt", return_dict=True)
    peft_model.eval()
    with torch.inference_mode():
        out = peft_model.generate(**inputs, max_new_tokens=GREEDY.max_tokens, do_sample=False,
                                  pad_token_id=tokenizer.pad_token_id or 0)
    return base, adapter, out[0][inputs["input_ids"].shape[1]:].tolist()


def _text(engine: Any) -> str:
    return str(engine.generate(PROMPT, sampling=GREEDY).text)


def test_adapter_is_merged_into_its_base_and_generates_as_peft_does(
        trained: tuple[Path, Path, list[int]]) -> None:
    base, adapter, reference = trained
    files = PlainModelDir(adapter)
    assert is_adapter(files) and not is_adapter(PlainModelDir(base))
    engine = make_engine("transformers", files=files, model_id="lora",
                         base=PlainModelDir(base))
    plain = make_engine("transformers", files=PlainModelDir(base), model_id="base")
    expected = engine._tokenizer.decode(reference, skip_special_tokens=True)
    assert _text(engine) == expected  # merged weights answer as the unmerged adapter
    assert _text(plain) != expected  # and the adapter really changed the model


def test_a_sealed_workspace_adapter_uses_the_recorded_base(
        trained: tuple[Path, Path, list[int]], tmp_path: Path, workspace: Workspace) -> None:
    base, adapter, _ = trained
    model_dir = workspace.root / "models" / "support-v1"
    model_dir.mkdir(parents=True)
    for path in adapter.iterdir():
        seal_file(path, model_dir / (path.name + ".sealed"), keys=workspace.keys,
                  key_names=["k1"])
    (model_dir / "model.json").write_text(json.dumps(
        {"base": {"path": str(base), "digest": digest_tree(base)}}))
    files = resolve_model("support-v1", keys=workspace.keys, workspace_root=workspace.root)
    assert is_adapter(files)
    base_files = resolve_base(Path(files.label), base=None)
    engine = make_engine("transformers", files=files, model_id="support-v1", base=base_files)
    assert _text(engine)
    digest = adapter_digest(files, base_files)
    assert digest not in (model_digest(files), model_digest(base_files))


def test_a_changed_base_is_refused(trained: tuple[Path, Path, list[int]],
                                   tmp_path: Path) -> None:
    base, adapter, _ = trained
    model_dir = tmp_path / "model"
    shutil.copytree(adapter, model_dir)
    (model_dir / "model.json").write_text(json.dumps(
        {"base": {"path": str(base), "digest": digest_tree(base)}}))
    other = tmp_path / "other-base"
    shutil.copytree(base, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-3}))
    with pytest.raises(IntegrityError, match="not the one"):
        resolve_base(model_dir, base=other)  # --base pointing elsewhere is checked too
    assert resolve_base(model_dir, base=None).root == base


def test_an_adapter_without_a_base_or_with_missing_tensors_is_refused(
        trained: tuple[Path, Path, list[int]], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    base, adapter, _ = trained
    with pytest.raises(ConfigError, match="names no base model") as info:
        resolve_base(adapter, base=None)  # no model.json records one
    assert "--base" in str(info.value.hint)
    cut = tmp_path / "cut"
    shutil.copytree(adapter, cut)
    weights = load_file(cut / "adapter_model.safetensors")
    save_file(dict(list(weights.items())[1:]), cut / "adapter_model.safetensors")
    with pytest.raises(ConfigError, match="does not fit"):
        make_engine("transformers", files=PlainModelDir(cut), model_id="cut",
                    base=PlainModelDir(base))
    config = json.loads((adapter / "adapter_config.json").read_text())
    (cut / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "PREFIX"}))
    with pytest.raises(ConfigError, match="not a LoRA adapter"):
        make_engine("transformers", files=PlainModelDir(cut), model_id="cut",
                    base=PlainModelDir(base))


def test_the_serve_command_builds_adapters_and_refuses_a_misplaced_base(
        trained: tuple[Path, Path, list[int]], workspace: Workspace) -> None:
    from sealtune.errors import UsageError
    from sealtune.serve import load_engine

    base, adapter, _ = trained
    engine, model_id, digest = load_engine(workspace, engine="transformers", model=str(adapter),
                                           base=base)
    assert model_id == "adapter" and _text(engine)
    assert digest == adapter_digest(PlainModelDir(adapter), PlainModelDir(base))
    with pytest.raises(UsageError, match="whole model"):
        load_engine(workspace, engine="transformers", model=str(base), base=base)
    with pytest.raises(UsageError, match="transformers engine only"):
        load_engine(workspace, engine="echo", model="echo", base=base)
