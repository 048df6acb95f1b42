"""The model_files probe: what a model directory may hold, checked without loading anything."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from sealtune.assess.files import PlainTree
from sealtune.assess.probes import PROBES, ProbeContext, ProbeResult
from sealtune.train.tiny import make_tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("tiny") / "m", seed=0)


@pytest.fixture
def model(tiny: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny, tmp_path / "model"))


def _run(path: Path, **settings: object) -> ProbeResult:
    probe = PROBES["model_files"]
    merged = {"unsafe_allow_pickle": False, "unknown_files": "fail", **settings}
    return probe.judge(probe.measure(ProbeContext(files=PlainTree(path)), merged), merged)


def _findings(result: ProbeResult) -> set[str]:
    return {str(i["finding"]) for i in result.items if i["blocking"]}


class _Marker:
    """Unpickling this runs os.system: it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_clean_tiny_model_passes(model: Path) -> None:
    result = _run(model)
    assert result.verdict == "pass", result.items
    assert result.metrics["safetensors"] == 1 and result.metrics["tensors"] > 0


def test_a_malicious_pickle_fails_and_is_never_unpickled(model: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (model / "pytorch_model.bin").write_bytes(pickle.dumps(_Marker(marker)))
    result = _run(model)
    assert result.verdict == "fail"
    row = next(i for i in result.items if i["finding"] == "pickle")
    assert row["severity"] == 4 and row["allowlisted"] is False and row["blocking"]
    assert not marker.exists()
    # allowing pickles does not let a malicious one through
    assert _run(model, unsafe_allow_pickle=True).verdict == "fail"
    assert not marker.exists()


def test_a_malicious_pickle_inside_a_torch_zip_fails(model: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(_Marker(marker)))
    (model / "model.pt").write_bytes(buf.getvalue())
    assert _run(model, unsafe_allow_pickle=True).verdict == "fail"
    assert not marker.exists()


def test_a_plain_state_dict_pickle_is_refused_by_default_and_allowed_on_request(
        model: Path) -> None:
    torch.save(OrderedDict(w=torch.zeros(2)), model / "extra.bin")
    assert _run(model).verdict == "fail"
    allowed = _run(model, unsafe_allow_pickle=True)
    assert allowed.verdict == "pass", allowed.items


@pytest.mark.parametrize(("name", "content", "finding"), [
    ("modeling_evil.py", b"import os\n", "custom_code"),
    ("libx.so", b"\x7fELF....", "executable"),
    ("notes.bin.txt", b"hello", "unknown_file"),
])
def test_code_executables_and_unknown_files_are_flagged(model: Path, name: str,
                                                        content: bytes, finding: str) -> None:
    (model / name).write_bytes(content)
    result = _run(model)
    assert result.verdict == "fail" and finding in _findings(result)


def test_an_unknown_file_is_only_a_warning_on_request(model: Path) -> None:
    (model / "notes.txt").write_text("x")
    result = _run(model, unknown_files="warn")
    assert result.verdict == "pass"
    assert any(i["finding"] == "unknown_file" and not i["blocking"] for i in result.items)


def test_an_executable_bit_is_flagged(model: Path) -> None:
    os.chmod(model / "config.json", 0o755)
    assert "executable" in _findings(_run(model))


@pytest.mark.parametrize("key", ["auto_map", "trust_remote_code"])
def test_remote_code_in_a_config_is_flagged(model: Path, key: str) -> None:
    config = (model / "config.json").read_text()
    (model / "config.json").write_text(config.replace("{", f'{{"{key}": {{"x": "y.Z"}},', 1))
    assert "remote_code_config" in _findings(_run(model))


def test_links_and_directories_are_flagged_and_not_followed(model: Path,
                                                            tmp_path: Path) -> None:
    (model / "weights.safetensors").symlink_to(model / "model.safetensors")
    (model / "sub").mkdir()
    result = _run(model)
    assert {"link", "directory"} <= _findings(result)


def test_a_crafted_safetensors_file_fails_with_its_problem(model: Path) -> None:
    path = model / "model.safetensors"
    path.write_bytes(path.read_bytes() + b"hidden payload")
    result = _run(model)
    assert result.verdict == "fail"
    assert any(i.get("problem") == "trailing_data" for i in result.items)
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    assert any(i.get("problem") == "header_too_large" for i in _run(model).items)


def test_a_directory_without_weights_fails(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert _run(tmp_path).verdict == "fail"
