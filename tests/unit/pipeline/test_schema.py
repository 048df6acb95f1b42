"""The pipeline file's schema: every error names file, line, column, key path and a fix."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from sealtune.errors import ConfigError
from sealtune.pipeline import load_pipeline
from sealtune.pipeline.example import render_example
from sealtune.pipeline.schema import STEP_ORDER
from sealtune.pipeline.train_fields import train_field_names
from sealtune.train.config import TrainConfig
from sealtune.yaml_source import MAX_BYTES, MAX_DEPTH, parse_text

BASE = """\
version: 1
name: p1
steps:
  data:
    input: raw.jsonl
    dataset: ds
  train:
    base: base
    out: m
    epochs: 2
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # errors name the file as given: pipeline.yaml
    (tmp_path / "raw.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    (tmp_path / "base").mkdir()
    return tmp_path


def _write(folder: Path, text: str) -> Path:
    (folder / "pipeline.yaml").write_text(text, "utf-8")
    return Path("pipeline.yaml")


def _error(folder: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_pipeline(_write(folder, text))
    return info.value


def test_a_valid_file_loads_with_paths_relative_to_it(folder: Path) -> None:
    p = load_pipeline(_write(folder, BASE))
    assert p.name == "p1" and p.steps == ("data", "train")
    assert p.data.input == folder.absolute() / "raw.jsonl" and p.data.format is None
    assert p.data.policy_source == "the built-in default policy"
    assert p.train is not None and p.train.base == folder.absolute() / "base"
    assert p.train.config == TrainConfig(epochs=2) and p.train.threads == 1


def test_the_example_file_validates(folder: Path) -> None:
    from sealtune.data.policy import render_default_policy

    (folder / "data").mkdir()
    (folder / "raw.jsonl").rename(folder / "data" / "conversations.jsonl")
    (folder / "base").rename(folder / "tiny-base")
    (folder / "policy.yaml").write_text(render_default_policy())
    p = load_pipeline(_write(folder, render_example(keys=("platform", "customer"))))
    assert p.data.keys == ("platform", "customer")
    assert p.train is not None and p.train.config.dp is not None
    assert p.train.config.dp.epsilon == 8.0 and p.train.config.checkpoint_every == 2


@pytest.mark.parametrize(("text", "where", "words"), [
    (BASE.replace("    epochs: 2", "    epochz: 2"), "pipeline.yaml:10:5: steps.train.epochz:",
     "did you mean 'epochs'"),
    (BASE.replace("name: p1", "name: p1\nworkspce: x"), "pipeline.yaml:3:1: workspce:",
     "did you mean 'workspace'"),
    (BASE.replace("    dataset: ds", "    dataset: ds\n    polcy: x.yaml"),
     "pipeline.yaml:7:5: steps.data.polcy:", "did you mean 'policy'"),
    (BASE + "    lora: {rank: 4, rnk: 2}\n", "pipeline.yaml:11:21: steps.train.lora.rnk:",
     "did you mean 'rank'"),
    (BASE + "  asess: {}\n", "pipeline.yaml:11:3: steps.asess:", "did you mean 'assess'"),
])
def test_unknown_keys_are_errors_with_position_and_suggestion(folder: Path, text: str,
                                                               where: str, words: str) -> None:
    exc = _error(folder, text)
    assert exc.message.startswith(where), exc.message
    assert words in exc.message and exc.hint is not None and "allowed here:" in exc.hint


@pytest.mark.parametrize(("edit", "where", "words"), [
    (("    epochs: 2", "    epochs: two"), "pipeline.yaml:10:13: steps.train.epochs:",
     "must be an integer"),
    (("    epochs: 2", "    epochs: 2\n    lr: fast"), "pipeline.yaml:11:9: steps.train.lr:",
     "must be a number"),
    (("    epochs: 2", "    epochs: 2\n    method: lorra"), "pipeline.yaml:11:13:",
     "must be 'lora' or 'full'"),
    (("    epochs: 2", "    epochs: 2\n    dp: 8"), "pipeline.yaml:11:9: steps.train.dp:",
     "must be"),
    (("    epochs: 2", "    epochs: 2\n    lora: {target: [1, 2]}"),
     "pipeline.yaml:11:21: steps.train.lora.target[0]:", "must be a string"),
    (("    dataset: ds", "    dataset: [ds]"), "pipeline.yaml:6:14: steps.data.dataset:",
     "non-empty string"),
    (("    out: m", "    out: m\n    threads: 0"), "pipeline.yaml:10:14: steps.train.threads:",
     "from 1 to"),
    (("version: 1", "version: true"), "pipeline.yaml:1:10: version:", "must be 1"),
    (("name: p1", "name: ../p1"), "pipeline.yaml:2:7: name:", "not allowed"),
    (("  data:\n    input: raw.jsonl\n    dataset: ds\n", "  data: raw.jsonl\n"),
     "pipeline.yaml:4:9: steps.data:", "must be a mapping"),
])
def test_wrong_types_and_values_name_the_field(folder: Path, edit: tuple[str, str], where: str,
                                               words: str) -> None:
    exc = _error(folder, BASE.replace(*edit))
    assert exc.message.startswith(where), exc.message
    assert words in exc.message


@pytest.mark.parametrize(("extra", "where", "words"), [
    ("    lora: {rank: 0}\n", "pipeline.yaml:11:12: steps.train.lora.rank:", "must be"),
    ("    lora: {rank: 8, dropout: 2.0}\n", "pipeline.yaml:11:21: steps.train.lora.dropout:",
     "dropout"),
    ("    dp: {epsilon: 8, delta: 2}\n", "pipeline.yaml:11:22: steps.train.dp.delta:",
     "dp.delta must be in (0, 1)"),
    ("    dp: {epsilon: -1}\n", "pipeline.yaml:11:10: steps.train.dp.epsilon:",
     "positive"),
    ("    dp: {delta: 1e-5}\n", "pipeline.yaml:11:9: steps.train.dp.epsilon:", "required"),
    ("    max_length: 4\n", "pipeline.yaml:11:5: steps.train.max_length:", ">= 8"),
])
def test_training_values_are_checked_by_train_config_and_placed(folder: Path, extra: str,
                                                                where: str, words: str) -> None:
    exc = _error(folder, BASE + extra)
    assert exc.message.startswith(where), exc.message
    assert words in exc.message


def test_yaml_1_1_exponents_are_numbers(folder: Path) -> None:
    p = load_pipeline(_write(folder, BASE + "    dp: {epsilon: 8, delta: 1e-5}\n"))
    assert p.train is not None and p.train.config.dp is not None
    assert p.train.config.dp.delta == 1e-5
    exc = _error(folder, BASE + "    dp: {epsilon: 8, delta: '1e-5'}\n")  # quoted: a string
    assert "steps.train.dp.delta" in exc.message


def test_every_train_config_field_is_a_step_key_without_clashes(folder: Path) -> None:
    own = {"base", "out", "keys", "threads", "nproc", "tmpfs_mb", "timeout_s"}
    names = train_field_names()
    assert not own & set(names)
    assert set(names) == {f.name for f in dataclasses.fields(TrainConfig)}
    defaults = TrainConfig().to_dict()
    lines = "".join(f"    {n}: {_yaml(defaults[n])}\n" for n in names if defaults[n] is not None)
    p = load_pipeline(_write(folder, BASE.replace("    epochs: 2\n", lines)))
    assert p.train is not None and p.train.config == TrainConfig()


def _yaml(value: object) -> str:
    import json

    return json.dumps(value)  # JSON is YAML


@pytest.mark.parametrize(("text", "where", "words"), [
    (BASE + "x: &a 1\ny: *a\n", "pipeline.yaml:11:4:", "anchors and aliases"),
    (BASE.replace("name: p1", "name: !!python/object/apply:os.system [id]"),
     "pipeline.yaml:2:7:", "YAML tag"),
    (BASE.replace("name: p1", "name: !custom p1"), "pipeline.yaml:2:7:", "YAML tag"),
    (BASE.replace("    epochs: 2", "    epochs: 2\n    epochs: 3"), "pipeline.yaml:11:5:",
     "duplicate key 'epochs' (first at line 10)"),
    (BASE + "[1]: 2\n", "pipeline.yaml:11:1:", "keys must be plain strings"),
    ("version: 1\nname: [\n", "pipeline.yaml:3:1:", "not valid YAML"),
    ("- 1\n", "pipeline.yaml:1:1:", "top level must be a mapping"),
])
def test_yaml_constructs_a_config_does_not_need_are_refused(folder: Path, text: str, where: str,
                                                            words: str) -> None:
    exc = _error(folder, text)
    assert exc.message.startswith(where), exc.message
    assert words in exc.message


def test_billion_laughs_is_refused_at_once() -> None:
    lol = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    start = time.monotonic()
    with pytest.raises(ConfigError, match="anchors and aliases"):
        parse_text(lol, source="lol.yaml")
    assert time.monotonic() - start < 1.0


def test_size_and_depth_are_bounded(folder: Path) -> None:
    big = folder / "pipeline.yaml"
    big.write_bytes(b"#" * (MAX_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than"):
        load_pipeline(big)
    deep = "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n"
    with pytest.raises(ConfigError, match="levels of nesting"):
        parse_text(deep, source="deep.yaml")
    # a file at the size limit parses in linear time
    flat = "".join(f"k{i}: {'x' * 60}\n" for i in range(4_000))[: MAX_BYTES - 100]
    start = time.monotonic()
    parse_text(flat.rsplit("\n", 1)[0] + "\n", source="flat.yaml")
    assert time.monotonic() - start < 10.0


@pytest.mark.parametrize(("edit", "where"), [
    (("version: 1", "version: 1\npassphrase: hunter2-hunter2"), "pipeline.yaml:2:1: passphrase:"),
    (("    dataset: ds", "    dataset: ds\n    hsm_pin: '1234'"),
     "pipeline.yaml:7:5: steps.data.hsm_pin:"),
    (("    out: m", "    out: m\n    hfToken: abc"), "pipeline.yaml:10:5: steps.train.hfToken:"),
    (("    out: m", "    out: m\n    api-key: abc"), "pipeline.yaml:10:5: steps.train.api-key:"),
    (("name: p1", "name: p1\nworkspace: {password: x}"),
     "pipeline.yaml:3:13: workspace.password:"),
])
def test_secret_looking_keys_are_refused_before_anything_else(folder: Path,
                                                              edit: tuple[str, str],
                                                              where: str) -> None:
    exc = _error(folder, BASE.replace(*edit))
    assert exc.message.startswith(where), exc.message
    assert "looks like a secret" in exc.message
    assert exc.hint is not None and "keys: [customer]" in exc.hint
    assert "hunter2" not in exc.diagnostics() and "1234" not in exc.diagnostics()


def test_an_inline_policy_may_name_secret_entity_types(folder: Path) -> None:
    text = BASE.replace("    dataset: ds", "    dataset: ds\n    policy:\n      version: 1\n"
                        "      redaction: {default: tag, SECRET: tag}")
    p = load_pipeline(_write(folder, text))
    assert p.data.policy.redaction["SECRET"].operator == "tag"
    assert p.data.policy_source == "inline (steps.data.policy)"
    bad = text.replace("SECRET: tag", "SECRET: maskk")
    exc = _error(folder, bad)
    assert exc.message.startswith("pipeline.yaml:8:7: steps.data.policy"), exc.message


def test_missing_files_and_required_keys(folder: Path) -> None:
    exc = _error(folder, BASE.replace("input: raw.jsonl", "input: nope.jsonl"))
    assert exc.message.startswith("pipeline.yaml:5:12: steps.data.input: nope.jsonl: no such")
    # a bare name is a registered base now (resolved when the step runs): a path must exist
    exc = _error(folder, BASE.replace("base: base", "base: ./nope"))
    assert exc.message.startswith("pipeline.yaml:8:11: steps.train.base: ./nope: no such dir")
    exc = _error(folder, BASE.replace("    dataset: ds\n", ""))
    assert exc.message.startswith("pipeline.yaml:5:5: steps.data.dataset: required")
    exc = _error(folder, BASE.replace("name: p1\n", ""))
    assert exc.message.startswith("pipeline.yaml:1:1: name: required")
    with pytest.raises(ConfigError, match="not found"):
        load_pipeline(folder / "absent.yaml")


def test_steps_and_keys_lists(folder: Path) -> None:
    assert STEP_ORDER == ("data", "train", "assess")
    p = load_pipeline(_write(folder, BASE.split("  train:")[0]))
    assert p.steps == ("data",) and p.train is None
    exc = _error(folder, BASE.replace("    dataset: ds", "    dataset: ds\n    keys: [a, a]"))
    assert exc.message.startswith("pipeline.yaml:7:11: steps.data.keys: names a key twice")
    exc = _error(folder, BASE.replace("    dataset: ds", "    dataset: ds\n    keys: customer"))
    assert "list of key names" in exc.message
    p = load_pipeline(_write(folder, BASE.replace("    dataset: ds",
                                                  "    dataset: ds\n    keys: [customer]")))
    assert p.data.keys == ("customer",)
    assert p.error("steps.data.keys[0]", "x").message.startswith("pipeline.yaml:7:12:")


def test_base_may_name_a_registered_base_and_a_path_must_exist(folder: Path) -> None:
    named = load_pipeline(_write(folder, BASE.replace("base: base", "base: tiny-v1")))
    assert named.train is not None and named.train.base == "tiny-v1"  # resolved when it runs
    err = _error(folder, BASE.replace("base: base", "base: ./models/none"))
    assert "no such directory" in err.message and "steps.train.base" in err.message


def test_the_assess_step_needs_train_and_a_strict_gate_policy(folder: Path) -> None:
    from sealtune.assess import default_policy_text

    p = load_pipeline(_write(folder, BASE + "  assess: {}\n"))
    assert p.steps == ("data", "train", "assess") and p.assess is not None
    assert p.assess.policy_source == "the built-in default gate policy"
    assert p.assess.report_dir == folder.absolute() / "gate-report"
    assert set(p.assess.settings()) == {"policy_digest", "threads", "timeout_s"}
    (folder / "gate.yaml").write_text(default_policy_text().replace("max_auc: 0.6",
                                                                    "max_auc: 0.7"))
    p = load_pipeline(_write(folder, BASE + "  assess:\n    policy: gate.yaml\n"
                             "    threads: 2\n    timeout_s: 600\n"))
    assert p.assess is not None and p.assess.policy.probes["membership"].settings[
        "max_auc"] == 0.7 and p.assess.threads == 2 and p.assess.timeout_s == 600.0
    exc = _error(folder, BASE.split("  train:")[0] + "  assess: {}\n")
    assert exc.message.startswith("pipeline.yaml:7:3: steps.assess: needs a train step")
    exc = _error(folder, BASE + "  assess:\n    polcy: gate.yaml\n")
    assert exc.message.startswith("pipeline.yaml:12:5: steps.assess.polcy:")
    assert "did you mean 'policy'" in exc.message
    exc = _error(folder, BASE + "  assess:\n    policy: none.yaml\n")
    assert "steps.assess.policy" in exc.message and "no such file" in exc.message
    (folder / "gate.yaml").write_text(default_policy_text().replace("max_auc:", "max_aux:"))
    exc = _error(folder, BASE + "  assess:\n    policy: gate.yaml\n")
    assert "gate.yaml:" in exc.message and "max_aux" in exc.message  # the policy's own check
