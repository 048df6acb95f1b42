"""The weights digest: what was computed, not how the file was written or sealed."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sealtune.errors import ConfigError
from sealtune.train.loading import weights_digest


def _tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {"b.weight": torch.randn(4, 3, generator=gen), "a.bias": torch.randn(5, generator=gen)}


def test_same_tensors_same_digest_whatever_the_metadata(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    save_file(_tensors(), one / "model.safetensors", metadata={"format": "pt"})
    save_file(dict(reversed(list(_tensors().items()))), two / "model.safetensors",
              metadata={"written": "elsewhere, later"})
    (two / "tokenizer.json").write_text("{}")  # other files do not count
    assert weights_digest(one) == weights_digest(two)
    assert weights_digest(one).startswith("sha256:")


def test_any_changed_value_name_or_shape_changes_it(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    save_file(_tensors(), base / "model.safetensors")
    digest = weights_digest(base)
    for i, change in enumerate((
            lambda t: t["a.bias"].__setitem__(0, t["a.bias"][0] + 1e-6),
            lambda t: t.__setitem__("c", t.pop("a.bias")),
            lambda t: t.__setitem__("b.weight", t["b.weight"].reshape(3, 4).contiguous()))):
        tensors = _tensors()
        change(tensors)
        other = tmp_path / f"o{i}"
        other.mkdir()
        save_file(tensors, other / "model.safetensors")
        assert weights_digest(other) != digest, i


@pytest.mark.parametrize("blob", [b"", b"\x01" * 7, struct.pack("<Q", 1 << 40) + b"{}",
                                  struct.pack("<Q", 2) + b"[]",
                                  struct.pack("<Q", 58) + b'{"t": {"dtype": "F32", "shape": [1],'
                                  b' "data_offsets": [0, 99]}}'])
def test_malformed_files_are_refused(tmp_path: Path, blob: bytes) -> None:
    (tmp_path / "model.safetensors").write_bytes(blob)
    with pytest.raises(ConfigError, match="safetensors"):
        weights_digest(tmp_path)
