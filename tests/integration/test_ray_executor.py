"""``data ingest --executor ray``: a real local Ray, never reachable beyond loopback, same outputs.

Ray 2.60 binds every interface whatever it is told, so a private local Ray is
refused unless its network namespace has only loopback; the equivalence test
runs in one (``bwrap --unshare-net``), as the refusal's hint tells users to.
In the data sandbox (the default) a private Ray starts inside it, whose
network is loopback only: a sealed input ingested there on Ray must give
what the sandboxed local executor gives.
A Ray start takes about 7 s idle, much more on a loaded machine. The
100k-record comparison is bench/ingest_ray.py's; here 2,000 records keep CI
short. The executor's batch path (hash-keyed precomputed detection) is also
run in this process (``in_process``), so the equivalence is pinned without a
cluster too.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from sealtune.data.executors import (
    check_executor,
    in_process,
    listeners_beyond_loopback,
    ray_session,
)
from sealtune.data.ingest import ingest
from sealtune.data.policy import parse_policy
from sealtune.data.redact import DatasetKeys
from sealtune.data.store import show_dataset
from sealtune.errors import SealtuneError, UsageError
from sealtune.keys.keyfile import KdfParams
from sealtune.keys.sealing import open_sealed_lines
from sealtune.workspace import Workspace

NAMES = ["欧阳震霆", "李秀英", "王建国", "Maria Schmidt", "John Carter"]


def test_a_private_local_ray_never_listens_beyond_loopback() -> None:
    import ray

    try:
        with ray_session(num_cpus=1):
            assert ray.get(ray.remote(lambda: 1).remote()) == 1  # workers are up too
            assert listeners_beyond_loopback(os.getpid()) == []
    except SealtuneError as exc:
        assert "beyond loopback" in str(exc) and "RAY_ADDRESS" in (exc.hint or "")
    assert not ray.is_initialized()
    deadline = time.monotonic() + 30
    while listeners_beyond_loopback(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.5)  # ray.shutdown() stops its processes asynchronously
    assert listeners_beyond_loopback(os.getpid()) == []


def _raw(path: Path, n: int) -> None:
    rng = random.Random(7)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            name = rng.choice(NAMES)
            phone = f"139{rng.randint(10**7, 10**8 - 1)}"
            user = (f"我是{name}，手机{phone}，订单{rng.randint(1, 999)}什么时候到？" if i % 2
                    else f"Hi, {name} here, mail me at u{i}@example.com about order {i}")
            fh.write(json.dumps({"id": f"r{i}", "messages": [
                {"role": "user", "content": user},
                {"role": "assistant", "content": f"{name}您好，订单{i % 37}已发货。"}]},
                ensure_ascii=False) + "\n")
            if i % 97 == 0:  # exact copies: dropped / quarantined by the dataset-wide pass
                fh.write(json.dumps({"id": f"c{i}", "messages": [
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": f"{name}您好，订单{i % 37}已发货。"}]},
                    ensure_ascii=False) + "\n")


def _facts(ws: Workspace, name: str) -> dict[str, Any]:
    info = show_dataset(ws, name)
    info.raise_if_broken()
    m = info.manifest
    findings = json.loads(info.file("findings").read_text("utf-8"))
    findings["screening"].pop("seconds")
    findings.pop("dataset")
    bom = json.loads(info.file("bom").read_text("utf-8"))
    return {
        "records": {part: list(open_sealed_lines(info.file(part), keys=ws.keys))
                    for part in ("data", "quarantine")},
        "counts": m["counts"], "policy": m["policy"], "input": m["input"],
        "plaintext": {r: m["files"][r]["plaintext_sha256"] for r in ("data", "quarantine")},
        "findings": findings,
        "bom": sorted((c["name"], json.dumps(c["properties"], sort_keys=True))
                      for c in bom["components"]),
        "bom_props": bom["metadata"]["component"]["properties"]}


def equivalence(root: Path) -> None:
    """Ingest the same records locally and on a private local Ray; they must agree."""
    ws = Workspace.init(root / "ws", passphrase="ray equivalence passphrase 1",
                        kdf=KdfParams.unsafe_fast(), default_key="k1")
    try:
        raw = root / "raw.jsonl"
        _raw(raw, 2000)
        policy = parse_policy({"version": 1, "screening": {"exact_duplicate": "quarantine"}})
        secret = DatasetKeys.generate().secret  # the same pseudonym keys for both runs
        ingest(ws, raw, name="local", policy=policy, dataset_keys=DatasetKeys(secret))
        with ray_session(num_cpus=2):
            ingest(ws, raw, name="ray", policy=policy, executor="ray",
                   dataset_keys=DatasetKeys(secret))
        local, on_ray = _facts(ws, "local"), _facts(ws, "ray")
        assert local["counts"]["entities"] > 2000 and local["counts"]["quarantined"] > 0
        assert on_ray == local
        [event] = [e for e in ws.ledger.entries()
                   if e.action == "data.ingest" and e.resource == "dataset/ray"]
        assert event.details["executor"] == "ray"
        for name in NAMES:  # redacted on both: nothing in clear in the sealed records
            assert not any(name.encode() in line for line in on_ray["records"]["data"])
    finally:
        ws.close()


def test_ray_executor_matches_local_in_a_loopback_only_namespace(tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "import test_ray_executor as t; t.equivalence(Path(sys.argv[2])); print('EQUAL')")
    proc = subprocess.run(
        ["bwrap", "--dev-bind", "/", "/", "--unshare-net", "--die-with-parent",
         sys.executable, "-c", code, str(Path(__file__).parent), str(tmp_path)],
        capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("EQUAL"), proc.stderr[-3000:]


def test_batch_path_matches_local(workspace: Workspace, tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    _raw(raw, 600)
    policy = parse_policy({"version": 1, "screening": {"exact_duplicate": "quarantine"}})
    secret = DatasetKeys.generate().secret  # the same pseudonym keys for both runs
    ingest(workspace, raw, name="local", policy=policy, dataset_keys=DatasetKeys(secret))
    ingest(workspace, raw, name="batched", policy=policy, executor=in_process,
           dataset_keys=DatasetKeys(secret))
    local, batched = _facts(workspace, "local"), _facts(workspace, "batched")
    assert local["counts"]["entities"] > 600 and local["counts"]["quarantined"] > 0
    assert batched == local
    [event] = [e for e in workspace.ledger.entries()
               if e.action == "data.ingest" and e.resource == "dataset/batched"]
    assert event.details["executor"] == "in_process"
    for name in NAMES:
        assert not any(name.encode() in line for line in batched["records"]["data"])


def test_an_unknown_executor_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    _raw(raw, 3)
    with pytest.raises(UsageError, match="executor 'spark'"):
        ingest(workspace, raw, name="x", executor="spark")
    assert check_executor("ray") == "ray"
    assert not (workspace.root / "datasets" / "x").exists()


def sandboxed_equivalence(root: Path) -> None:
    """A sealed input ingested in the data sandbox, locally and on a Ray started inside it."""
    from sealtune.data import ingest_dataset
    from sealtune.keys import seal_file

    ws = Workspace.init(root / "ws", passphrase="ray sandbox passphrase 1",
                        kdf=KdfParams.unsafe_fast(), default_key="k1")
    host_ray_dirs = set(Path(tempfile.gettempdir()).glob("sealtune-ray-*"))
    try:
        plain, sealed = root / "raw.jsonl", root / "raw.jsonl.sealed"
        _raw(plain, 1500)
        seal_file(plain, sealed, keys=ws.keys, key_names=["k1"])
        plain.unlink()  # only the sealed copy: opened inside the sandbox, on Ray too
        policy = parse_policy({"version": 1, "screening": {"exact_duplicate": "quarantine"}})
        secret = DatasetKeys.generate().secret
        ingest_dataset(ws, sealed, name="local", policy=policy, dataset_keys=DatasetKeys(secret))
        ingest_dataset(ws, sealed, name="ray", policy=policy, executor="ray",
                       dataset_keys=DatasetKeys(secret))
        local, on_ray = _facts(ws, "local"), _facts(ws, "ray")
        assert local["counts"]["entities"] > 1500 and local["counts"]["quarantined"] > 0
        assert on_ray == local
        entries = [e for e in ws.ledger.entries() if e.resource == "dataset/ray"]
        [done] = [e for e in entries if e.action == "data.ingest"]
        assert done.details["executor"] == "ray" and done.details["sandboxed"] is True
        [destroyed] = [e for e in entries if e.action == "sandbox.destroyed"]
        assert destroyed.details["processes_left"] == 0  # Ray's processes died with it
        for name in NAMES:
            assert not any(name.encode() in line for line in on_ray["records"]["data"])
        written = [p for p in root.rglob("*") if p.is_file()]  # the plaintext input is gone
        for name in NAMES:  # nothing Ray or the ingest left on this host holds a name
            assert not [p for p in written if name.encode() in p.read_bytes()], name
        assert set(Path(tempfile.gettempdir()).glob("sealtune-ray-*")) == host_ray_dirs
    finally:
        ws.close()


def test_ray_runs_inside_the_data_sandbox_with_the_same_outputs(tmp_path: Path) -> None:
    """No namespace of our own here: the data sandbox's network is loopback only."""
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "import test_ray_executor as t; t.sandboxed_equivalence(Path(sys.argv[2])); "
            "print('EQUAL')")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent),
                           str(tmp_path)], capture_output=True, text=True, timeout=900,
                          check=False, env=env)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("EQUAL"), proc.stderr[-3000:]


def test_a_ray_cluster_is_reached_only_without_the_sandbox(
        workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sealtune.data import ingest_dataset

    raw = tmp_path / "raw.jsonl"
    _raw(raw, 3)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    with pytest.raises(UsageError, match="RAY_ADDRESS") as caught:
        ingest_dataset(workspace, raw, name="x", executor="ray")
    assert "--no-sandbox" in (caught.value.hint or "")
    monkeypatch.delenv("RAY_ADDRESS")
    with pytest.raises(UsageError, match="local executor"):
        ingest_dataset(workspace, raw, name="x", executor="ray", workers=2)
    assert not (workspace.root / "datasets" / "x").exists()
    assert [e for e in workspace.ledger.entries() if e.resource == "dataset/x"] == []
