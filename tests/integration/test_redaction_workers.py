"""``data ingest --workers N``: the redaction pass on N processes fails closed and stays private.

The outputs' equality with one worker is tests/integration/test_ingest_workers.py's
(it covers the parallel redaction pass too). Here: a redaction worker killed
midway stops the ingest with no dataset, no build and no process left; an
error a worker cannot send back keeps its class name and loses its text.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from sealtune.data.ingest import ingest
from sealtune.data.parallel_redaction import _portable
from sealtune.errors import SealtuneError
from sealtune.workspace import Workspace

MARK = "redaction-worker-plant-7f3c"


def _raw(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"r{i}", "messages": [
                {"role": "user", "content": f"{MARK} 我是王建国，手机1391234{i % 10000:04d}"},
                {"role": "assistant", "content": f"王建国您好，订单{i}已发货。"}]},
                ensure_ascii=False) + "\n")


def test_a_killed_redaction_worker_fails_the_ingest_closed(workspace: Workspace,
                                                           tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    _raw(raw, 6000)
    killed: list[int] = []

    def kill_redaction_workers(phase: str, done: int, total: int | None) -> None:
        if phase.startswith("redacting") and done > 0 and not killed:
            for child in multiprocessing.active_children():  # the redaction pool's
                assert child.pid is not None
                os.kill(child.pid, signal.SIGKILL)
                killed.append(child.pid)

    with pytest.raises(SealtuneError, match="redaction worker"):
        ingest(workspace, raw, name="killed", workers=2, progress=kill_redaction_workers)
    assert killed, "no redaction worker was running"
    assert multiprocessing.active_children() == []
    datasets = workspace.root / "datasets"
    assert not (datasets / "killed").exists() and not list(datasets.glob(".build-*"))
    [failed] = [e for e in workspace.ledger.entries() if e.resource == "dataset/killed"]
    assert failed.action == "data.ingest" and failed.outcome == "failure"
    for path in workspace.root.rglob("*"):
        assert not path.is_file() or MARK.encode() not in path.read_bytes(), path


class _Unpicklable(Exception):
    def __init__(self, value: str, extra: object) -> None:  # two arguments: pickle breaks
        super().__init__(value)
        self.extra = extra


def test_an_error_a_worker_cannot_send_keeps_its_class_not_its_text() -> None:
    sent = _portable(_Unpicklable(f"value {MARK}", object()))
    assert isinstance(sent, SealtuneError) and "_Unpicklable" in str(sent)
    assert MARK not in str(sent)
    kept = _portable(ValueError("plain"))
    assert isinstance(kept, ValueError) and str(kept) == "plain"
