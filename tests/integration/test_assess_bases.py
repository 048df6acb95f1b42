"""Registered base models: assessed once, named by training, the gate and the pipeline.

Real workspace, real CLI in-process, real training in the sandbox. A base
whose files change after it was added is refused with exit status 3.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from sealtune.assess.bases import resolve_base
from sealtune.assess.report import load
from sealtune.cli import main as cli_main
from sealtune.errors import IntegrityError
from sealtune.pipeline.schema import TrainStep
from sealtune.pipeline.steps import TrainAdapter
from sealtune.sandbox import SandboxUnavailableError, probe
from sealtune.train.config import TrainConfig
from sealtune.train.tiny import make_tiny
from sealtune.workspace import Workspace

from .test_assess_sandbox import seal_dataset, support_records


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("tiny") / "m", seed=0)


@pytest.fixture
def base(tiny: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny, tmp_path / "base"))


@pytest.fixture
def home(workspace: Workspace, passphrase: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEALTUNE_HOME", str(workspace.root))
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    monkeypatch.setenv("COLUMNS", "200")
    return workspace.root


@pytest.fixture
def policy(home: Path, tmp_path: Path) -> Path:
    assert cli_main(["assess", "policy", "init", str(tmp_path / "gate.yaml")]) == 0
    return tmp_path / "gate.yaml"


def _actions(home: Path, action: str) -> list[dict[str, object]]:
    ws = Workspace.open(home)
    try:
        return [e.details for e in ws.ledger.entries(action=action)]
    finally:
        ws.close()


def _add(base: Path, policy: Path, *, name: str = "tiny", licence: str = "MIT") -> int:
    return cli_main(["models", "base", "add", name, str(base), "--licence", licence,
                     "--policy", str(policy)])


def test_a_base_is_added_once_listed_and_recorded(home: Path, policy: Path, base: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert _add(base, policy) == 0
    capsys.readouterr()
    assert cli_main(["models", "base", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["name"] == "tiny" and listed["licence"] == "MIT" and listed["files"] == 7
    (added,) = _actions(home, "base.added")
    assert added["digest"] == listed["digest"]
    assert _add(base, policy) == 2  # a registered name is never replaced


def test_a_licence_off_the_allow_list_is_refused(home: Path, policy: Path, base: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert _add(base, policy, licence="GPL-3.0-only") == 1
    assert capsys.readouterr().err.startswith("policy: licence 'GPL-3.0-only'")
    assert not (home / "bases" / "tiny.json").exists()
    assert _actions(home, "base.refused")[0]["reason"] == "licence"


def test_a_base_that_fails_the_file_scan_is_refused_and_never_unpickled(
        home: Path, policy: Path, base: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    (base / "pytorch_model.bin").write_bytes(pickle.dumps(Evil()))
    (base / "modeling_tiny.py").write_text("import os\n")
    assert _add(base, policy) == 1
    assert not marker.exists() and not (home / "bases" / "tiny.json").exists()
    assert set(_actions(home, "base.refused")[0]["findings"]) >= {"pickle", "custom_code"}


@pytest.mark.parametrize("change", ["edit", "add", "remove"])
def test_a_changed_base_is_refused_with_exit_3(home: Path, policy: Path, base: Path,
                                               tmp_path: Path, change: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert _add(base, policy) == 0
    if change == "edit":
        weights = base / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1
        weights.write_bytes(bytes(data))
    elif change == "add":
        (base / "modeling_tiny.py").write_text("import os\n")
    else:
        (base / "generation_config.json").unlink()
    capsys.readouterr()
    code = cli_main(["train", "--dataset", "none", "--base", "tiny", "--out-name", "m"])
    err = capsys.readouterr().err
    assert code == 3 and err.strip().startswith(
        "integrity: base model 'tiny' changed since it was added")
    assert cli_main(["assess", str(base), "--base", "tiny", "--policy", str(policy),
                     "--out", str(tmp_path / "o")]) == 3
    assert _actions(home, "base.changed")


def test_the_pipeline_names_a_registered_base_and_refuses_a_changed_one(
        home: Path, policy: Path, base: Path, workspace: Workspace) -> None:
    assert _add(base, policy) == 0
    adapter = TrainAdapter(TrainStep(base="tiny", out="m", config=TrainConfig()))
    assert adapter.base(workspace) == base.resolve()
    (base / "extra.txt").write_text("x")
    with pytest.raises(IntegrityError):
        TrainAdapter(TrainStep(base="tiny", out="m", config=TrainConfig())).base(workspace)


def test_a_plain_directory_is_unpinned_warned_and_recorded(home: Path, base: Path,
                                                           workspace: Workspace) -> None:
    with pytest.warns(UserWarning, match="unpinned"):
        resolved = resolve_base(workspace, str(base))
    assert not resolved.pinned and resolved.name is None
    workspace.close()
    assert _actions(home, "base.unpinned")


@pytest.fixture(scope="module")
def bwrap_ok() -> None:
    try:
        probe()
    except SandboxUnavailableError as exc:
        pytest.fail(f"no working bubblewrap here: {exc.message}")


@pytest.mark.usefixtures("bwrap_ok")
def test_train_and_assess_name_the_registered_base(
        home: Path, policy: Path, base: Path, workspace: Workspace, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    seal_dataset(workspace, "support", support_records("x", n=16))
    workspace.close()
    assert _add(base, policy) == 0
    assert cli_main(["train", "--dataset", "support", "--base", "tiny", "--out-name", "m1",
                     "--epochs", "1", "--batch-size", "8", "--max-length", "48",
                     "--threads", "1"]) == 0
    assert "unpinned" not in capsys.readouterr().err
    model = json.loads((home / "models" / "m1" / "model.json").read_text())
    (listed,) = json.loads((lambda: (cli_main(["models", "base", "list", "--json"]),
                                     capsys.readouterr().out)[1])())
    assert model["base"]["digest"] == listed["digest"]
    out = tmp_path / "report"
    assert cli_main(["assess", "m1", "--policy", str(policy), "--out", str(out),
                     "--threads", "1"]) == 0
    doc = load((out / "report.json").read_bytes())
    assert doc["base"] == {"name": "tiny", "digest": listed["digest"], "pinned": True,
                           "licence": "MIT"}
