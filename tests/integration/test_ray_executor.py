"""``data ingest --executor ray``: a real local Ray, bound to loopback only, same outputs as local.

One Ray is started for the module (about 7 s idle, much more on a loaded
machine). The 100k-record comparison is bench/ingest.py's (``--ray``); here
2,000 records keep CI short. The executor's batch path (hash-keyed
precomputed detection) is also run in this process (``in_process``), so the
equivalence is pinned without a cluster too.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealtune.data.executors import check_executor, in_process, ray_session
from sealtune.data.ingest import ingest
from sealtune.data.policy import parse_policy
from sealtune.data.redact import DatasetKeys
from sealtune.data.store import show_dataset
from sealtune.errors import UsageError
from sealtune.keys.sealing import open_sealed_lines
from sealtune.workspace import Workspace

LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1 as /proc shows them
NAMES = ["欧阳震霆", "李秀英", "王建国", "Maria Schmidt", "John Carter"]


@pytest.fixture(scope="module")
def ray_up() -> Iterator[None]:
    with ray_session(num_cpus=2):
        yield


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo += children.get(pid, [])
    return out


def _socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
            if m:
                inodes.add(m.group(1))
    return inodes


def _listening(inodes: set[str]) -> list[tuple[str, int]]:
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                addr, port = f[1].split(":")
                found.append((addr, int(port, 16)))
    return found


def test_local_ray_listens_on_loopback_only(ray_up: None) -> None:
    import ray

    assert ray.get(ray.remote(lambda: 1).remote()) == 1  # workers are up too
    sockets = _listening(_socket_inodes(_descendants(os.getpid())))
    assert sockets, "the local Ray should listen somewhere (GCS, raylet)"
    assert [s for s in sockets if s[0] not in LOOPBACK] == []


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


def test_ray_executor_matches_local(ray_up: None, workspace: Workspace, tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    _raw(raw, 2000)
    policy = parse_policy({"version": 1, "screening": {"exact_duplicate": "quarantine"}})
    secret = DatasetKeys.generate().secret  # the same pseudonym keys for both runs
    ingest(workspace, raw, name="local", policy=policy, dataset_keys=DatasetKeys(secret))
    ingest(workspace, raw, name="ray", policy=policy, executor="ray",
           dataset_keys=DatasetKeys(secret))
    local, on_ray = _facts(workspace, "local"), _facts(workspace, "ray")
    assert local["counts"]["entities"] > 2000 and local["counts"]["quarantined"] > 0
    assert local["counts"]["redacted_dataset_wide"] >= 0
    assert on_ray == local
    [event] = [e for e in workspace.ledger.entries()
               if e.action == "data.ingest" and e.resource == "dataset/ray"]
    assert event.details["executor"] == "ray"
    for name in NAMES:  # redacted on both: nothing in clear in the sealed records
        assert not any(name.encode() in line for line in on_ray["records"]["data"])


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
