"""``sealtune train``'s options map 1:1 onto TrainConfig keys, fail as usage errors naming the
option, and docs/training.md lists every key with its option and default."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import typer

from sealtune.cli import app
from sealtune.cli import main as cli_main
from sealtune.cli.train import config_from_options
from sealtune.errors import UsageError
from sealtune.train.config import OPTIONS, TrainConfig
from sealtune.train.dp import DPConfig

DOCS = Path(__file__).resolve().parents[3] / "docs" / "training.md"
#: Keys with no `sealtune train` option (set them in the YAML or the job spec).
NO_OPTION = {"unsafe_allow_pickle", "dp.secure_mode", "dp.accountant", "dp.noise_multiplier",
             "dp.epsilon_every", "dp.grad_sample_mode"}


def _keys() -> set[str]:
    top = {f.name for f in dataclasses.fields(TrainConfig)} - {"lora", "dp"}
    lora = {f"lora.{f.name}" for f in dataclasses.fields(TrainConfig().lora)}
    dp = {f"dp.{f.name}" for f in dataclasses.fields(DPConfig)}
    return top | lora | dp


def _train_command() -> Any:
    group: Any = typer.main.get_command(app)  # typer's own click: not click.Group
    return group.commands["train"]


def test_every_key_has_its_option_and_every_option_its_key() -> None:
    assert set(OPTIONS) | NO_OPTION == _keys() and not set(OPTIONS) & NO_OPTION
    params = {p.name: p for p in _train_command().params}
    for key, option in OPTIONS.items():
        name = "max_grad_norm" if key == "dp.max_grad_norm" else key.replace(".", "_")
        assert params[name].opts[0] == option, key  # the option is the key, spelt with dashes
    assert "--lora-r" in params["lora_rank"].opts and "--cutoff-len" in params["max_length"].opts


def test_options_build_the_same_config_as_the_yaml_keys() -> None:
    yaml = {"method": "lora", "lora": {"rank": 16, "alpha": 32, "dropout": 0.1,
                                       "target": ["q_proj", "v_proj"]},
            "epochs": 3, "max_steps": 50, "lr": 1e-4, "scheduler": "cosine",
            "warmup_ratio": 0.1, "weight_decay": 0.01, "batch_size": 4,
            "physical_batch_size": 2, "max_length": 256, "val_size": 0.1, "seed": 7,
            "max_grad_norm": 0.5, "checkpoint_every": 5}
    flat = {"method": "lora", "lora.rank": 16, "lora.alpha": 32, "lora.dropout": 0.1,
            "lora.target": ["q_proj", "v_proj"], "epochs": 3, "max_steps": 50, "lr": 1e-4,
            "scheduler": "cosine", "warmup_steps": None, "warmup_ratio": 0.1,
            "weight_decay": 0.01, "batch_size": 4, "physical_batch_size": 2,
            "max_length": 256, "val_size": 0.1, "seed": 7, "max_grad_norm": 0.5,
            "checkpoint_every": 5, "dp.epsilon": None, "dp.delta": None}
    assert config_from_options(flat) == TrainConfig.from_dict(yaml)
    assert config_from_options({}) == TrainConfig()  # the defaults live in TrainConfig only
    dp = config_from_options({"dp.epsilon": 4.0, "max_grad_norm": 0.5})
    assert dp.dp == DPConfig(epsilon=4.0, max_grad_norm=0.5) and dp.max_grad_norm == 1.0
    with pytest.raises(UsageError, match="--dp-delta needs --dp-epsilon"):
        config_from_options({"dp.delta": 1e-6})


BASE = ["train", "--dataset", "d", "--base", "/nonexistent", "--out-name", "m"]


@pytest.mark.parametrize(("args", "named"), [
    (["--lora-rank", "0"], "--lora-rank"), (["--lora-r", "-2"], "--lora-rank"),
    (["--lora-alpha", "0"], "--lora-alpha"), (["--lora-dropout", "1"], "--lora-dropout"),
    (["--lora-target", "q_proj,,v_proj"], "--lora-target"),
    (["--lora-target", "all", "--lora-target", "q_proj"], "--lora-target"),
    (["--lr", "0"], "--lr"), (["--scheduler", "step"], "--scheduler"),
    (["--warmup-steps", "-1"], "--warmup-steps"), (["--warmup-ratio", "1.5"], "--warmup-ratio"),
    (["--warmup-steps", "3", "--warmup-ratio", "0.1"], "--warmup-ratio"),
    (["--weight-decay", "-1"], "--weight-decay"), (["--epochs", "0"], "--epochs"),
    (["--max-steps", "0"], "--max-steps"), (["--batch-size", "0"], "--batch-size"),
    (["--cutoff-len", "4"], "--max-length"), (["--val-size", "0.9"], "--val-size"),
    (["--val-size", "ten"], "--val-size"), (["--val-size", "-3"], "--val-size"),
    (["--physical-batch-size", "0"], "--physical-batch-size"),
])
def test_a_bad_option_is_a_usage_error_naming_it_and_the_fix(
        args: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main([*BASE, *args]) == 2
    err = capsys.readouterr().err
    assert named in err and "hint:" in err


def _doc_rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOCS.read_text("utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and (m := re.fullmatch(r"`([a-z_.]+)`", cells[1])):
            rows[m.group(1)] = cells
    return rows


def _default(key: str) -> Any:
    node: Any = TrainConfig(dp=DPConfig(epsilon=1.0))
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _yaml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def test_the_docs_table_lists_every_key_its_option_and_default() -> None:
    rows = _doc_rows()
    assert set(rows) == _keys()
    for key, (option, _, default, meaning) in rows.items():
        assert meaning, key
        assert (OPTIONS[key] in option) if key in OPTIONS else option == "", key
        value = _default(key)
        if value is None or isinstance(value, tuple) or key == "dp.epsilon":
            assert default, key  # described in words
        else:
            assert f"`{_yaml(value)}`" in default, (key, default)
