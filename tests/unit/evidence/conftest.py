"""A real workspace with a recorded two-step run (no training: digests of real bytes)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sealtune.evidence import EvidenceRecorder, run_events
from sealtune.sandbox.measurement import Measurement
from sealtune.workspace import Workspace


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Run:
    ws: Workspace
    recorder: EvidenceRecorder
    seqs: dict[str, list[int]]


@pytest.fixture
def make_run(workspace: Workspace) -> Callable[..., Run]:
    """Record ``data`` then ``train`` with their own ledger events, a BOM and a record."""

    def make(*, epsilon: float | None = 2.5) -> Run:
        ws = workspace
        since = datetime.now(UTC) - timedelta(seconds=1)
        ws.audit("data.ingest", "dataset/ds", details={"records": 3})
        ws.audit("data.quarantine", "dataset/ds/r2")
        data_seqs = run_events(ws.ledger, since=since, resources=["dataset/ds"])
        ws.audit("sandbox.created", "job/j1", details={"measurement": "m"})
        ws.audit("train.finished", "job/j1", details={"steps": 2})
        train_seqs = run_events(ws.ledger, since=since, resources=["job/j1"])
        rec = EvidenceRecorder(ws, "run-1", inputs={"raw": sha(b"raw"), "base": sha(b"base")})
        rec.step("data", "data", inputs={"raw": sha(b"raw")},
                 outputs={"ds/data": sha(b"sealed"), "ds/bom": sha(b'{"bom":1}')},
                 config={"dataset": "ds", "keys": ["k1"]}, ledger_seqs=data_seqs)
        rec.attach_bom("data", dataset="ds", bom=b'{"bom":1}')
        parts = Measurement(code="sha256:" + sha(b"c"), config="sha256:" + sha(b"cfg"),
                            base_model="sha256:" + sha(b"base"),
                            inputs={"dataset": "sha256:" + sha(b"sealed")})
        measurement = {**parts.to_dict(), "digest": parts.digest}
        rec.step("train", "train", inputs={"dataset": "sha256:" + sha(b"sealed"),
                                           "base": sha(b"base")},
                 outputs={"m1/model.sealed": sha(b"model")}, config={"epochs": 1, "lr": 0.01},
                 measurement=measurement, ledger_seqs=train_seqs)
        privacy = None if epsilon is None else {"epsilon_spent": epsilon, "delta": 1e-05}
        rec.attach_training_record("train", job="j1", record={
            "format": "sealtune.training-record/v1", "job": "j1", "privacy": privacy,
            "metrics": {"steps": 2}})
        return Run(ws, rec, {"data": data_seqs, "train": train_seqs})

    return make


@pytest.fixture
def bundle_dir(make_run: Callable[..., Run], tmp_path: Path) -> tuple[Run, Path]:
    run = make_run()
    run.recorder.write(tmp_path / "bundle")
    return run, tmp_path / "bundle"
