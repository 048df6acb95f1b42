"""The runner on a data-only pipeline (real workspace, real ingest): caching, tampering,
adoption after a kill, forced steps, the lock, keys by reference, the sealed secret."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from sealtune.data.store import show_dataset
from sealtune.errors import ConfigError, IntegrityError, KeyDestroyedError, UsageError
from sealtune.keys.inventory import known_files
from sealtune.keys.rotation import rotate_workspace
from sealtune.pipeline import Pipeline, ensure_secret, load_pipeline, run_pipeline
from sealtune.pipeline.cache import TRAIN_PACKAGES, step_key
from sealtune.pipeline.secret import secret_path
from sealtune.pipeline.state import RunState, run_lock
from sealtune.workspace import Workspace

TEXT = """\
version: 1
name: unit
steps:
  data:
    input: raw.jsonl
    dataset: ds
    keys: [k1, k2]
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    sample = resources.files("sealtune.demo_data").joinpath("conversations.jsonl")
    lines = sample.read_text("utf-8").splitlines()[:60]
    root = tmp_path / "pl"
    root.mkdir()
    (root / "raw.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    (root / "pipeline.yaml").write_text(TEXT, "utf-8")
    return root


def _load(folder: Path, text: str | None = None) -> Pipeline:
    if text is not None:
        (folder / "pipeline.yaml").write_text(text, "utf-8")
    return load_pipeline(folder / "pipeline.yaml")


def _events(pipeline: Pipeline, ws: Workspace, **kwargs: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    run_pipeline(pipeline, ws, on_event=seen.append, **kwargs)
    return seen


def _kinds(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["event"], e["step"]) for e in events if "step" in e]


def test_step_keys_cover_settings_inputs_and_packages() -> None:
    key = step_key(kind="train", settings={"a": 1}, inputs={"x": "sha256:1"},
                   packages=TRAIN_PACKAGES)
    assert key == step_key(kind="train", settings={"a": 1}, inputs={"x": "sha256:1"},
                           packages=TRAIN_PACKAGES)
    for other in (step_key(kind="train", settings={"a": 2}, inputs={"x": "sha256:1"},
                           packages=TRAIN_PACKAGES),
                  step_key(kind="train", settings={"a": 1}, inputs={"x": "sha256:2"},
                           packages=TRAIN_PACKAGES),
                  step_key(kind="data", settings={"a": 1}, inputs={"x": "sha256:1"},
                           packages=TRAIN_PACKAGES),
                  step_key(kind="train", settings={"a": 1}, inputs={"x": "sha256:1"},
                           packages=("no-such-distribution",))):
        assert other != key


def test_a_rerun_is_cached_and_each_step_records_its_ledger_entries(
        workspace: Workspace, folder: Path) -> None:
    pipeline = _load(folder)
    first = _events(pipeline, workspace)
    assert _kinds(first) == [("step_started", "data"), ("step_finished", "data")]
    finished = first[-2]
    name = finished["summary"]["dataset"]
    assert name.startswith("ds-") and finished["summary"]["keys"] == ["k1", "k2"]
    again = _events(pipeline, workspace)
    assert _kinds(again) == [("step_cached", "data")]
    assert again[-1]["digests"] == first[-1]["digests"]
    record = RunState.load(workspace, "unit").steps["data"]
    actions = {e.seq: e.action for e in workspace.ledger.entries()}
    assert actions[record.ledger_seqs[0]] == "pipeline.step_started"
    assert actions[record.ledger_seqs[-1]] == "pipeline.step_finished"
    assert "data.ingest" in [actions[s] for s in record.ledger_seqs]
    evidence = record.evidence()
    assert evidence["outputs"][f"datasets/{name}/data.jsonl.sealed"].startswith("content-sha256:")
    assert evidence["outputs"]["records"] == record.digests["records"]
    assert set(evidence) == {"name", "kind", "inputs", "outputs", "config", "measurement",
                             "ledger_seqs"}
    manifest = show_dataset(workspace, name).manifest
    assert manifest["pipeline"]["step_key"] == record.key


@pytest.mark.parametrize(("victim", "how", "words"), [
    ("data.jsonl.sealed", "flip", "changed"),
    ("dataset-keys.sealed", "flip", "changed"),
    ("findings.json", "delete", "is missing"),
    ("dataset.json", "append", "changed"),
])
def test_an_output_changed_on_disk_fails_the_rerun_naming_step_and_file(
        workspace: Workspace, folder: Path, victim: str, how: str, words: str) -> None:
    pipeline = _load(folder)
    name = _events(pipeline, workspace)[-2]["summary"]["dataset"]
    path = workspace.root / "datasets" / name / victim
    if how == "flip":
        blob = bytearray(path.read_bytes())
        blob[-10] ^= 0x01
        path.write_bytes(bytes(blob))
    elif how == "delete":
        path.unlink()
    else:
        path.write_text(path.read_text() + " ")
    with pytest.raises(IntegrityError) as info:
        run_pipeline(pipeline, workspace)
    assert f"step data: datasets/{name}/{victim} {words}" in info.value.message
    assert info.value.exit_code == 3 and "--force-step data" in str(info.value.hint)


def test_a_policy_change_reruns_and_force_rebuilds_in_place(workspace: Workspace,
                                                            folder: Path) -> None:
    pipeline = _load(folder)
    first = _events(pipeline, workspace)[-2]
    inline = TEXT + "    policy:\n      version: 1\n      redaction: {default: tag}\n"
    changed = _events(_load(folder, inline), workspace)
    assert _kinds(changed) == [("step_started", "data"), ("step_finished", "data")]
    assert changed[-2]["summary"]["dataset"] != first["summary"]["dataset"]
    assert changed[-2]["digests"]["records"] != first["digests"]["records"]
    forced = _events(_load(folder, inline), workspace, force=["data"])
    assert _kinds(forced) == [("step_started", "data"), ("step_finished", "data")]
    assert forced[-2]["summary"]["dataset"] == changed[-2]["summary"]["dataset"]
    # derived redaction keys: the same records; fresh data keys: another sealed file
    assert forced[-2]["digests"] == changed[-2]["digests"]
    assert forced[-2]["outputs"] != changed[-2]["outputs"]
    assert not list((workspace.root / "datasets").glob(".replaced-*"))
    with pytest.raises(UsageError, match="not a step"):
        run_pipeline(pipeline, workspace, force=["assess"])


def test_a_dataset_published_before_a_kill_is_adopted_only_if_it_is_the_steps_own(
        workspace: Workspace, folder: Path) -> None:
    pipeline = _load(folder)
    first = _events(pipeline, workspace)[-2]
    state = RunState.load(workspace, "unit").path
    state.unlink()  # as if killed after ingest published the dataset, before the state
    adopted = _events(pipeline, workspace)[-2]
    assert adopted["event"] == "step_finished" and adopted["summary"]["adopted"] is True
    assert adopted["digests"] == first["digests"] and adopted["outputs"] == first["outputs"]
    # a dataset of that name that some other command made is never adopted
    state.unlink()
    manifest = workspace.root / "datasets" / first["summary"]["dataset"] / "dataset.json"
    doc = json.loads(manifest.read_text())
    doc["pipeline"]["step_key"] = "sha256:" + "0" * 64
    manifest.write_text(json.dumps(doc))
    with pytest.raises(UsageError, match="not made by this pipeline step"):
        run_pipeline(pipeline, workspace)


def test_keys_are_checked_by_reference_before_anything_runs(workspace: Workspace,
                                                            folder: Path) -> None:
    pipeline = _load(folder, TEXT.replace("[k1, k2]", "[k1, customer]"))
    with pytest.raises(ConfigError) as info:
        run_pipeline(pipeline, workspace)
    assert info.value.message.startswith(f"{folder / 'pipeline.yaml'}:7:16: steps.data.keys[1]")
    assert "customer" in info.value.message and "sealtune keys create" in str(info.value.hint)
    assert not (workspace.root / "pipelines" / "unit").exists()


def test_one_run_at_a_time(workspace: Workspace, folder: Path) -> None:
    with run_lock(workspace), pytest.raises(UsageError, match="another 'sealtune run'"):
        run_pipeline(_load(folder), workspace)
    run_pipeline(_load(folder), workspace)  # released


def test_the_input_pin_and_the_state_file_are_checked(workspace: Workspace,
                                                      folder: Path) -> None:
    pinned = TEXT + "    input_sha256: " + "ab" * 32 + "\n"
    with pytest.raises(IntegrityError, match=r"step data: .* pins"):
        run_pipeline(_load(folder, pinned), workspace)
    pipeline = _load(folder, TEXT)
    run_pipeline(pipeline, workspace)
    state = RunState.load(workspace, "unit").path
    doc = json.loads(state.read_text())
    doc["steps"]["data"]["outputs"] = {"../../keyring.sealed": "sha256:00"}
    state.write_text(json.dumps(doc))
    with pytest.raises(IntegrityError, match="outside the workspace"):
        run_pipeline(pipeline, workspace)


def test_the_pipeline_secret_is_sealed_rotated_and_shredded_with_its_keys(
        workspace: Workspace, folder: Path) -> None:
    pipeline = _load(folder)
    ensure_secret(pipeline, workspace)
    path = secret_path(workspace, "unit", ["k1", "k2"])
    assert path.read_bytes().startswith(b"SEALTUNE")
    assert path in [f.path for f in known_files(workspace.root)]  # rotation finds it
    first = _events(pipeline, workspace)[-2]
    rotate_workspace(workspace, "k1", retire_old=True)
    assert _kinds(_events(pipeline, workspace)) == [("step_cached", "data")]
    # the same secret, re-wrapped: a forced rebuild redacts to the same records
    assert _events(pipeline, workspace, force=["data"])[-2]["digests"] == first["digests"]
    workspace.keys.destroy("k1")
    workspace.keys.destroy("k2")
    with pytest.raises(KeyDestroyedError):  # shredded with the keys that seal the datasets
        ensure_secret(pipeline, workspace)


def test_a_sealed_raw_input_is_opened_in_memory_and_gives_the_same_records(
        workspace: Workspace, folder: Path) -> None:
    from sealtune.keys.files import seal_file

    _events(_load(folder), workspace)
    counts = show_dataset(workspace, RunState.load(workspace, "unit").steps["data"]
                          .summary["dataset"], verify=False).counts
    seal_file(folder / "raw.jsonl", folder / "raw.jsonl.sealed", keys=workspace.keys,
              key_names=["k1"])
    (folder / "raw.jsonl").unlink()  # only the sealed copy is left
    sealed = _load(folder, TEXT.replace("input: raw.jsonl", "input: raw.jsonl.sealed"))
    events = _events(sealed, workspace)
    assert ("step_finished", "data") in _kinds(events)  # a new input: the step ran
    # The same records (their pseudonyms differ: the step key, which names the input by
    # digest, derives the dataset's redaction keys).
    dataset = RunState.load(workspace, "unit").steps["data"].summary["dataset"]
    assert show_dataset(workspace, dataset, verify=False).counts == counts
    assert counts["records_out"] > 0
    rotate_workspace(workspace, "k1")  # re-wraps the sealed input's header
    again = _events(sealed, workspace)
    assert ("step_cached", "data") in _kinds(again)  # named by its content digest
