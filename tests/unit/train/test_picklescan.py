"""The pickle opcode scanner: malicious imports are caught without running anything."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from sealtune.train.picklescan import (
    UnsafePickleError,
    require_safe,
    scan_bytes,
    scan_file,
)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_os_system_reduce_is_caught_in_every_protocol(protocol: int, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    report = scan_bytes(pickle.dumps(_Evil(marker), protocol=protocol))
    assert not report.safe
    assert any("system" in r for r in report.rejected)
    assert not marker.exists()  # scanning runs nothing


def test_names_hidden_in_the_memo_are_resolved() -> None:
    # PROTO 4; push "os", MEMOIZE; push "system", MEMOIZE; GET 0; GET 1; STACK_GLOBAL; call.
    data = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93\x8c\x02id\x85R."
    assert scan_bytes(data).rejected == ["pickle: STACK_GLOBAL os.system"]


def test_unresolvable_or_extension_imports_are_refused() -> None:
    # STACK_GLOBAL whose operands are not string constants; EXT1 (copyreg registry).
    assert "unresolved" in scan_bytes(b"\x80\x04K\x01K\x02\x93.").rejected[0]
    assert "EXT1" in scan_bytes(b"\x80\x02\x82\x01.").rejected[0]
    assert "well-formed" in scan_bytes(b"\x80\x04\x8c\x05ab").rejected[0]


def test_a_plain_torch_state_dict_passes(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    torch.save({"w": torch.zeros(2, 3), "b": torch.ones(3, dtype=torch.bfloat16)}, path)
    report = require_safe(path)
    assert report.safe and report.pickles == 1
    assert ("torch._utils", "_rebuild_tensor_v2") in report.imports


def test_malicious_torch_file_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "pytorch_model.bin"
    torch.save({"w": _Evil(marker)}, path)
    with pytest.raises(UnsafePickleError, match="system"):
        require_safe(path)
    assert not marker.exists()


def test_unscannable_containers_are_refused(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafePickleError, match="legacy"):
        scan_file(legacy)
    empty_zip = tmp_path / "nopickle.bin"
    with zipfile.ZipFile(empty_zip, "w") as z:
        z.writestr("x/data/0", b"\0" * 8)
    with pytest.raises(UnsafePickleError, match="without a pickle"):
        scan_file(empty_zip)
