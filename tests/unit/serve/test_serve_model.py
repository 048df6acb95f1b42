"""Sealed model directories: opened in memory only, measured like the plain copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sealtune.errors import ConfigError, IntegrityError
from sealtune.keys.files import seal_file
from sealtune.serve.engines import Message, Sampling, make_engine
from sealtune.serve.model import PlainModelDir, SealedModelDir, model_digest, resolve_model
from sealtune.workspace import Workspace


def _tiny(tmp_path: Path) -> Path:
    from sealtune.train.tiny import make_tiny

    return make_tiny(tmp_path / "plain")


def _seal_dir(plain: Path, out: Path, ws: Workspace) -> Path:
    out.mkdir()
    for path in plain.iterdir():
        if path.suffix in (".safetensors", ".json", ".jinja"):
            seal_file(path, out / (path.name + ".sealed"), keys=ws.keys, key_names=["k1"])
        else:
            shutil.copy(path, out / path.name)
    return out


def test_sealed_model_loads_in_memory(tmp_path: Path, workspace: Workspace) -> None:
    import torch

    torch.set_num_threads(1)
    plain = _tiny(tmp_path)
    sealed_dir = _seal_dir(plain, tmp_path / "sealed", workspace)
    before = sorted(p.name for p in sealed_dir.iterdir())
    files = resolve_model(str(sealed_dir), keys=workspace.keys, workspace_root=workspace.root)
    assert isinstance(files, SealedModelDir)
    engine = make_engine("transformers", files=files, model_id="tiny")
    assert sorted(p.name for p in sealed_dir.iterdir()) == before  # nothing written
    assert not any(p.suffix == ".safetensors" for p in tmp_path.rglob("*")
                   if p.parent != plain)
    assert model_digest(files) == model_digest(PlainModelDir(plain))
    done = engine.generate([Message("user", "hi")], sampling=Sampling(max_tokens=4,
                                                                     temperature=0))
    assert done.completion_tokens <= 4
    unwraps = list(workspace.ledger.entries(action="key.unwrap"))
    assert len(unwraps) >= 3


def test_tampered_sealed_weights_refuse_to_load(tmp_path: Path, workspace: Workspace) -> None:
    sealed_dir = _seal_dir(_tiny(tmp_path), tmp_path / "sealed", workspace)
    weights = sealed_dir / "model.safetensors.sealed"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    files = SealedModelDir(sealed_dir, keys=workspace.keys)
    with pytest.raises(IntegrityError):
        files.read("model.safetensors")


def test_model_dirs_refuse_pickle_and_clear_weights(tmp_path: Path, workspace: Workspace) -> None:
    plain = tmp_path / "m"
    plain.mkdir()
    (plain / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ConfigError):
        PlainModelDir(plain)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.json.sealed").write_bytes(b"x")
    (mixed / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ConfigError):
        SealedModelDir(mixed, keys=workspace.keys)
    with pytest.raises(ConfigError):
        resolve_model("no-such-model", keys=workspace.keys, workspace_root=workspace.root)
