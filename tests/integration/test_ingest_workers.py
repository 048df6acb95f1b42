"""``data ingest --workers N``: detection on N processes, the same sealed dataset as one worker.

The data set is the demo generator's (bench/ingest.py's corpus: Chinese and
English support chats, PII in about half, planted near copies and a
trigger), so the comparison covers redaction, screening and quarantine.
Both runs use the same dataset keys; everything is compared after
decryption: the records of every sealed part, the manifest's counts and
digests, the findings (less their timing) and the BOM.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sealtune.data import ingest_dataset
from sealtune.data.formats import DataFormatError, read_records
from sealtune.data.ingest import ingest
from sealtune.data.parallel import detect_on_processes
from sealtune.data.policy import default_policy, parse_policy
from sealtune.data.redact import DatasetKeys
from sealtune.data.store import show_dataset
from sealtune.errors import SealtuneError, UsageError
from sealtune.keys.sealing import open_sealed_lines
from sealtune.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
POLICY = {"version": 1, "screening": {"exact_duplicate": "quarantine",
                                      "near_duplicate": "drop", "trigger": "quarantine"}}


def _corpus(path: Path, n: int) -> None:
    spec = importlib.util.spec_from_file_location("bench_ingest", ROOT / "bench" / "ingest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ingest"] = module
    spec.loader.exec_module(module)
    module.make_corpus(path, n, seed=11)


def _facts(ws: Workspace, name: str) -> dict[str, Any]:
    info = show_dataset(ws, name)
    info.raise_if_broken()
    m = info.manifest
    findings = json.loads(info.file("findings").read_text("utf-8"))
    findings["screening"].pop("seconds")
    findings.pop("dataset")
    bom = json.loads(info.file("bom").read_text("utf-8"))
    # What differs by construction: the build's time, the dataset's name and the
    # ciphertexts' digests (fresh nonces; the plaintexts' digests are compared below).
    for component in (bom["metadata"]["component"], *bom["components"]):
        for key in ("name", "bom-ref", "version", "hashes"):
            component.pop(key, None)
    for key in ("timestamp", "serialNumber"):
        bom["metadata"].pop(key, None)
        bom.pop(key, None)
    bom.pop("dependencies")
    return {
        "records": {part: list(open_sealed_lines(info.file(part), keys=ws.keys))
                    for part in ("data", "quarantine")},
        "counts": m["counts"], "policy": m["policy"], "input": m["input"],
        "plaintext": {r: m["files"][r]["plaintext_sha256"] for r in ("data", "quarantine")},
        "findings": findings, "bom": bom}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("corpus") / "raw.jsonl"
    _corpus(raw, 1500)
    return raw


def test_two_workers_seal_the_same_dataset_as_one(workspace: Workspace, corpus: Path) -> None:
    policy = parse_policy(POLICY)
    secret = DatasetKeys.generate().secret
    ingest(workspace, corpus, name="one", policy=policy, dataset_keys=DatasetKeys(secret))
    ingest(workspace, corpus, name="two", policy=policy, dataset_keys=DatasetKeys(secret),
           workers=2)
    one, two = _facts(workspace, "one"), _facts(workspace, "two")
    counts = one["counts"]
    assert counts["entities"] > 1000 and counts["quarantined"] > 0
    assert counts["dropped_screening"] > 0
    assert two == one
    [event] = [e for e in workspace.ledger.entries()
               if e.action == "data.ingest" and e.resource == "dataset/two"]
    assert event.details["workers"] == 2


def test_workers_run_inside_the_data_sandbox(workspace: Workspace, corpus: Path) -> None:
    policy = parse_policy(POLICY)
    secret = DatasetKeys.generate().secret
    ingest(workspace, corpus, name="plain", policy=policy, dataset_keys=DatasetKeys(secret))
    ingest_dataset(workspace, corpus, name="boxed", policy=policy,
                   dataset_keys=DatasetKeys(secret), workers=2)
    assert _facts(workspace, "boxed") == _facts(workspace, "plain")
    [event] = [e for e in workspace.ledger.entries()
               if e.action == "data.ingest" and e.resource == "dataset/boxed"]
    assert event.details["sandboxed"] is True and event.details["workers"] == 2


def test_every_text_is_detected_by_the_workers_as_here(corpus: Path) -> None:
    policy = default_policy()
    pre = detect_on_processes(corpus, policy, workers=2, format=None, text_field=None,
                              opener=None, chunk=700)  # several rounds
    here = policy.analyzer()
    texts = 0
    with read_records(corpus) as stream:
        for record in stream:
            for text in (record.id, *(m.content for m in record.messages)):
                assert pre.analyze(text) == here.analyze(text)
                texts += 1
    assert pre.misses == 0 and texts > 4000
    assert pre.analyze("not in the corpus: call 13800138000") == \
        here.analyze("not in the corpus: call 13800138000")
    assert pre.misses == 1


@pytest.mark.parametrize("workers", [0, -1, 257, True])
def test_a_bad_worker_count_is_refused(workspace: Workspace, tmp_path: Path,
                                       workers: int) -> None:
    raw = tmp_path / "raw.jsonl"
    _corpus(raw, 20)
    with pytest.raises(UsageError, match="--workers"):
        ingest(workspace, raw, name="x", workers=workers)
    with pytest.raises(UsageError, match="--workers"):
        ingest_dataset(workspace, raw, name="x", workers=workers)
    assert not (workspace.root / "datasets" / "x").exists()


def test_workers_are_for_the_local_executor(workspace: Workspace, tmp_path: Path) -> None:
    from sealtune.data.executors import in_process

    raw = tmp_path / "raw.jsonl"
    _corpus(raw, 20)
    with pytest.raises(UsageError, match="local executor"):
        ingest(workspace, raw, name="x", executor=in_process, workers=2)
    assert not (workspace.root / "datasets" / "x").exists()


def _children() -> dict[int, str]:
    """This process's running children (pid -> command line), multiprocessing's resource
    tracker aside (it lives as long as this process, whatever started it). Other tests'
    session servers are children too: compare with the children before."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue  # exited meanwhile
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and \
                "resource_tracker" not in cmdline:
            out[int(stat.parent.name)] = cmdline
    return out


def _new_children(before: dict[int, str]) -> list[str]:
    return [cmdline for pid, cmdline in _children().items() if pid not in before]


def test_an_ingest_leaves_no_worker_or_fork_server_running(workspace: Workspace,
                                                           corpus: Path) -> None:
    before = _children()
    ingest(workspace, corpus, name="w2", workers=2)
    assert _new_children(before) == []


def test_a_failing_ingest_stops_its_workers(workspace: Workspace, corpus: Path,
                                            tmp_path: Path) -> None:
    raw = tmp_path / "bad.jsonl"
    lines = corpus.read_text("utf-8").splitlines(keepends=True)
    raw.write_text("".join([*lines[:5], "{not json\n", *lines[5:]]), "utf-8")
    before = _children()
    with pytest.raises(DataFormatError) as caught:
        ingest(workspace, raw, name="bad", on_error="fail", workers=2)
    assert caught.value.line == 6
    assert multiprocessing.active_children() == []  # the pool was shut down, not left running
    assert _new_children(before) == []  # and the fork server the workers came from
    assert not (workspace.root / "datasets" / "bad").exists()


def test_a_dead_worker_fails_the_ingest_closed(corpus: Path) -> None:
    streamed = detect_on_processes(corpus, default_policy(), workers=1, format=None,
                                   text_field=None, opener=None)
    pool = streamed._pool
    deadline = time.monotonic() + 60
    while not pool._processes and time.monotonic() < deadline:  # spawned on the first batch
        time.sleep(0.01)
    for pid in list(pool._processes):
        os.kill(pid, signal.SIGKILL)  # e.g. the OOM killer, while it still starts up
    with read_records(corpus) as stream, pytest.raises(SealtuneError, match="worker"):
        for record in stream:  # never answered by a silent skip of the records
            for text in (record.id, *(m.content for m in record.messages)):
                streamed.analyze(text)
    assert multiprocessing.active_children() == []


def test_the_cli_ingests_with_workers(corpus: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    env.update({"SEALTUNE_HOME": str(tmp_path / "home"), "SEALTUNE_PASSPHRASE": "workers-cli-1",
                "SEALTUNE_UNSAFE_FAST_KDF": "1", "COLUMNS": "200"})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sealtune", *args], env=env,
                              capture_output=True, text=True, timeout=600, check=False)

    assert run("init").returncode == 0
    res = run("data", "ingest", str(corpus), "--name", "two", "--workers", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "records out" in res.stdout
    bad = run("data", "ingest", str(corpus), "--name", "zero", "--workers", "0")
    assert bad.returncode == 2 and "--workers" in bad.stderr
    shown = json.loads(run("data", "show", "two", "--json").stdout)
    assert all(shown["intact"].values()) and shown["manifest"]["counts"]["records_out"] > 1000
    # The seam: the dataset the workers built is rotated, retired and trained on as any.
    from sealtune.train.tiny import make_tiny

    rotated = run("keys", "rotate", "platform", "--retire-old")
    assert rotated.returncode == 0, rotated.stderr[-2000:]
    shown = json.loads(run("data", "show", "two", "--json").stdout)
    assert all(shown["intact"].values())
    base = make_tiny(tmp_path / "base", seed=0)
    trained = run("train", "--dataset", "two", "--base", str(base), "--out-name", "m",
                  "--epochs", "1", "--max-steps", "2", "--batch-size", "4", "--max-length", "160",
                  "--threads", "1")
    assert trained.returncode == 0, trained.stderr[-2000:]


def test_results_kept_are_bounded_and_a_dropped_one_is_found_again(
        corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sealtune.data import parallel

    monkeypatch.setattr(parallel, "_KEEP", 300)
    policy = default_policy()
    streamed = detect_on_processes(corpus, policy, workers=2, format=None, text_field=None,
                                   opener=None)
    here = policy.analyzer()
    with read_records(corpus) as stream:
        records = list(stream)
    for record in [*records, *records[:50]]:  # the second round: long since let go
        for text in (record.id, *(m.content for m in record.messages)):
            assert streamed.analyze(text) == here.analyze(text)
            assert len(streamed.found) <= 300
    assert streamed.misses >= 150  # analysed here again, with the same answer
    streamed.close()
    assert multiprocessing.active_children() == []
