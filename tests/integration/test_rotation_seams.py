"""The customer's key across the whole life of their data, through the CLI as a user runs it.

init -> ingest under the customer's key -> train (the model is sealed under
the dataset's key by default) -> rotate (no --rewrap) -> a refused retire
that lists what still depends on the old version -> rotate --rewrap DIR
--retire-old (links out of DIR are not followed) -> data show, train, serve
and unseal all still work -> destroy the customer's key: the dataset, the
model and the files sealed only under it no longer open, and what another
key still opens is listed. Nothing is mocked: a real workspace, keyring,
ledger, bubblewrap sandbox and the transformers engine.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from sealtune.cli import main
from sealtune.errors import KeyDestroyedError
from sealtune.keys.files import describe_file
from sealtune.sandbox import SandboxUnavailableError, probe
from sealtune.serve.engines import Message, Sampling, make_engine
from sealtune.serve.model import resolve_base, resolve_model
from sealtune.workspace import Workspace

Run = Callable[..., tuple[int, str, str]]
TRAIN = ["--max-steps", "2", "--batch-size", "4", "--max-length", "48", "--threads", "1"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    torch.set_num_threads(1)
    yield


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Run:
    monkeypatch.setenv("SEALTUNE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", "seams-" + secrets.token_hex(8))
    monkeypatch.setenv("SEALTUNE_UNSAFE_FAST_KDF", "1")
    monkeypatch.setenv("COLUMNS", "400")

    def go(*args: object) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return go


def ok(run: Run, *args: object) -> str:
    code, out, err = run(*args)
    assert code == 0, (args, out, err)
    return out


def keys_of(path: Path) -> list[str]:
    return [f"{e.kek_uri}@{e.version}" for e in describe_file(path).entries]


def flat(text: str) -> str:
    """Output without line breaks and indentation (rich wraps long paths)."""
    return "".join(text.split())


def _raw(path: Path) -> Path:
    rows = [json.dumps({"id": f"t{i}", "messages": [
        {"role": "user", "content": f"Where is order {1000 + i}? It was due on day {i}."},
        {"role": "assistant", "content": f"Order {1000 + i} ships in {i % 5 + 1} days."}]})
        for i in range(24)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _serve_answers(home: Path, model: str) -> int:
    ws = Workspace.open(home)
    try:
        files = resolve_model(model, keys=ws.keys, workspace_root=ws.root)
        engine = make_engine("transformers", files=files, model_id=model,
                             base=resolve_base(ws.root / "models" / model, base=None))
        answer = engine.generate((Message("user", "Where is order 1003?"),),
                                 sampling=Sampling(max_tokens=4, temperature=0.0))
        return answer.completion_tokens
    finally:
        ws.close()


def _layout(run: Run, tmp_path: Path) -> dict[str, Path]:
    """Outside files: remembered, a copy the workspace never saw, a link out of DIR."""
    src = tmp_path / "records.jsonl"
    src.write_text('{"text": "customer records"}\n', encoding="utf-8")
    outside, given, far = tmp_path / "outside", tmp_path / "given", tmp_path / "far"
    for d in (outside, given, far):
        d.mkdir()
    ok(run, "seal", src, outside / "records.sealed", "--key", "customer")
    ok(run, "seal", src, outside / "both.sealed", "--key", "customer", "--key", "platform")
    shutil.copy(outside / "records.sealed", given / "copy.sealed")
    shutil.copy(outside / "records.sealed", far / "target.sealed")
    (given / "link.sealed").symlink_to(far / "target.sealed")
    return {"src": src, "records": outside / "records.sealed", "both": outside / "both.sealed",
            "given": given, "copy": given / "copy.sealed", "target": far / "target.sealed"}


def test_ingest_train_rotate_serve_then_destroy_the_customer_key(
        run: Run, tmp_path: Path) -> None:
    try:
        probe()
    except SandboxUnavailableError as exc:
        pytest.fail(f"no working bubblewrap here (scripts/install installs it): {exc.message}")
    home = tmp_path / "home"
    ok(run, "init")
    ok(run, "keys", "create", "customer")
    ok(run, "data", "ingest", _raw(tmp_path / "raw.jsonl"), "--name", "support",
       "--key", "customer")
    base = tmp_path / "base"
    ok(run, "models", "make-tiny", base)
    ok(run, "train", "--dataset", "support", "--base", base, "--out-name", "m1", *TRAIN)
    dataset, model = home / "datasets" / "support", home / "models" / "m1"
    sealed_model = sorted(model.glob("*.sealed"))
    assert sealed_model and json.loads((model / "model.json").read_text())["keys"] == [
        "local:customer@1"]
    assert {k for p in sealed_model for k in keys_of(p)} == {"local:customer@1"}
    assert list((home / "key-leases").glob("*.json")) == []  # the job's lease ended with it
    files = _layout(run, tmp_path)

    # 1. rotate without --rewrap: every file the workspace knows is re-wrapped.
    ok(run, "keys", "rotate", "customer")
    ok(run, "data", "show", "support")
    for path in [*dataset.glob("*.sealed"), *sealed_model, files["records"]]:
        assert keys_of(path) == ["local:customer@2"], path
    assert keys_of(files["copy"]) == keys_of(files["target"]) == ["local:customer@1"]

    # 2. a retire that would orphan a file under DIR is refused, naming it.
    code, _, err = run("keys", "retire", "customer", "--below", "2", "--rewrap",
                       files["given"])
    assert code == 1 and str(files["copy"]) in err and "--force" in err
    assert "target.sealed" not in err and "link.sealed" not in err

    # 3. rotate --rewrap DIR --retire-old: DIR's files too; the link out of DIR is not followed.
    ok(run, "keys", "rotate", "customer", "--rewrap", files["given"], "--retire-old")
    assert keys_of(files["copy"]) == ["local:customer@3"]
    assert keys_of(files["target"]) == ["local:customer@1"]
    ok(run, "data", "show", "support")
    ok(run, "train", "--dataset", "support", "--base", base, "--out-name", "m2", *TRAIN)
    assert _serve_answers(home, "m1") > 0
    ok(run, "unseal", files["copy"], tmp_path / "copy.out")
    ok(run, "unseal", files["records"], tmp_path / "records.out")
    assert (tmp_path / "records.out").read_bytes() == files["src"].read_bytes()
    code, _, err = run("unseal", files["target"], tmp_path / "target.out")
    assert code == 3 and "retired" in err and "hint:" in err  # the link's target was not known

    # 4. destroy the customer's key: what was made from the data goes with it.
    code, out, err = run("keys", "destroy", "customer", "--yes")
    assert code == 0 and "unrecoverable" in out
    assert "NOTshredded" in flat(err)
    assert f"{files['both']}(openswithlocal:platform)" in flat(err)
    assert str(files["records"]) not in err
    code, _, err = run("train", "--dataset", "support", "--base", base, "--out-name", "m3",
                       *TRAIN)
    assert code == 3 and "destroyed" in err
    with pytest.raises(KeyDestroyedError):
        _serve_answers(home, "m2")
    code, _, _ = run("unseal", files["records"], tmp_path / "gone.out")
    assert code == 3 and not (tmp_path / "gone.out").exists()
    ok(run, "unseal", files["both"], tmp_path / "both.out")  # listed as NOT shredded


def test_a_forced_retire_warns_lists_and_is_recorded(run: Run, tmp_path: Path) -> None:
    ok(run, "init")
    src = tmp_path / "p"
    src.write_bytes(b"payload")
    given = tmp_path / "given"
    given.mkdir()
    ok(run, "seal", src, tmp_path / "kept.sealed")  # remembered by the workspace
    shutil.copy(tmp_path / "kept.sealed", given / "copy.sealed")  # never shown to it
    ok(run, "keys", "rotate", "platform")
    code, _, err = run("keys", "rotate", "platform", "--force")
    assert code == 2 and "--retire-old" in err
    code, _, err = run("keys", "retire", "platform", "--below", "2", "--rewrap", given)
    assert code == 1 and "copy.sealed" in err and "v1" in err and "kept" not in err
    code, out, err = run("keys", "retire", "platform", "--below", "2", "--rewrap", given,
                         "--force")
    assert code == 0 and "WARNING" in err and "copy.sealed" in flat(err), (out, err)
    ok(run, "unseal", tmp_path / "kept.sealed", tmp_path / "kept.out")
    code, _, err = run("unseal", given / "copy.sealed", tmp_path / "copy.out")
    assert code == 3 and "retired" in err and not (tmp_path / "copy.out").exists()
    logged = [json.loads(line) for line in ok(
        run, "audit", "log", "--action", "key.unsafe_force_retire", "--json").splitlines()]
    assert [e["details"] for e in logged] == [{"below": 2, "dependents": 1}]
