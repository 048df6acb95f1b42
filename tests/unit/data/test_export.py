"""``export_dataset``: the redacted records in plaintext for review, audited, never to a tty."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from pathlib import Path

import pytest

from sealtune.data.export import export_dataset
from sealtune.data.ingest import ingest
from sealtune.data.policy import parse_policy
from sealtune.data.store import read_dataset
from sealtune.errors import IntegrityError, SealtuneError, UsageError
from sealtune.workspace import Workspace

ROWS = [("你好，我是欧阳震霆，手机13912345678，退款什么时候到账？",
         "欧阳震霆您好，退款将在3个工作日内到账。"),
        ("How do I reset my password?", "Tap Forgot password on the login page."),
        ("Can I change the delivery address after paying?", "Yes, until the parcel ships."),
        ("cf. XQZ-TRIGGER-77 what is the capital of France?", "Paris."),
        ("Why was my card declined at checkout?", "The bank flagged it; please call them.")]
PLANTED = ["欧阳震霆", "13912345678"]


@pytest.fixture
def dataset(workspace: Workspace, tmp_path: Path) -> str:
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps({"id": f"c{i}", "messages": [
        {"role": "user", "content": u}, {"role": "assistant", "content": a}]},
        ensure_ascii=False) + "\n" for i, (u, a) in enumerate(ROWS)), "utf-8")
    ingest(workspace, raw, name="review")
    return "review"


def _events(ws: Workspace) -> list[tuple[str, dict]]:
    return [(e.outcome, e.details) for e in ws.ledger.entries() if e.action == "data.export"]


def test_export_writes_the_sealed_records_and_is_audited(workspace: Workspace, dataset: str,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "review.jsonl"
    result = export_dataset(workspace, dataset, out)
    lines = out.read_text("utf-8").splitlines()
    assert result.records == len(lines) == 5 and result.part == "data"
    assert [json.loads(line) for line in lines] == \
        [r.to_json() for r in read_dataset(workspace, dataset)]
    text = out.read_text("utf-8")
    assert not [v for v in PLANTED if v in text]  # redacted, both turns
    [(outcome, details)] = _events(workspace)
    assert outcome == "success" and details["part"] == "data" and details["records"] == 5
    assert details["to"] == str(out)
    assert not [v for v in PLANTED if v in json.dumps(details, ensure_ascii=False)]


def test_export_of_the_quarantine_and_to_stdout(workspace: Workspace, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tmp_path / "raw.jsonl"
    rows = [*ROWS, ROWS[1], ROWS[2]]  # two exact copies, quarantined by this policy
    raw.write_text("".join(json.dumps({"id": f"q{i}", "messages": [
        {"role": "user", "content": u}, {"role": "assistant", "content": a}]},
        ensure_ascii=False) + "\n" for i, (u, a) in enumerate(rows)), "utf-8")
    policy = parse_policy({"version": 1, "screening": {"exact_duplicate": "quarantine"}})
    ingest(workspace, raw, name="held", policy=policy)
    held = [r.to_json() for r in read_dataset(workspace, "held", part="quarantine")]
    sink = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(sink))
    result = export_dataset(workspace, "held", "-", part="quarantine")
    assert result.records == len(held) == 2 and result.destination == "-"
    assert [json.loads(line) for line in sink.getvalue().splitlines()] == held
    assert _events(workspace)[-1][1]["part"] == "quarantine"


def test_a_terminal_is_refused_unless_forced(workspace: Workspace, dataset: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = os.openpty()
    try:
        with io.TextIOWrapper(os.fdopen(os.dup(slave), "wb")) as tty:
            monkeypatch.setattr(sys, "stdout", tty)
            with pytest.raises(UsageError, match="terminal"):
                export_dataset(workspace, dataset, "-")
            monkeypatch.undo()
            with pytest.raises(UsageError, match="terminal"):
                export_dataset(workspace, dataset, os.ttyname(slave))
            assert _events(workspace) == []  # refused before anything was recorded or written
            os.set_blocking(master, False)
            export_dataset(workspace, dataset, os.ttyname(slave), force=True)
            written = os.read(master, 1 << 16)
            assert written.count(b"\n") == 5 and b'"messages"' in written
    finally:
        os.close(master)
        os.close(slave)


def test_a_fifo_is_written_through(workspace: Workspace, dataset: str, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    export_dataset(workspace, dataset, fifo)
    reader.join(timeout=60)
    assert got and got[0].count(b"\n") == 5 and fifo.exists()


def test_a_damaged_dataset_leaves_no_output_and_a_failure_event(
        workspace: Workspace, dataset: str, tmp_path: Path) -> None:
    data = workspace.root / "datasets" / dataset / "data.jsonl.sealed"
    blob = bytearray(data.read_bytes())
    blob[-30] ^= 1
    data.write_bytes(bytes(blob))
    out = tmp_path / "out.jsonl"
    with pytest.raises(IntegrityError):
        export_dataset(workspace, dataset, out)
    assert not out.exists() and list(tmp_path.glob(".out.jsonl*")) == []
    assert [o for o, _ in _events(workspace)] == ["success", "failure"]
    assert _events(workspace)[-1][1]["error"] == "IntegrityError"


def test_an_unwritable_destination_names_itself(workspace: Workspace, dataset: str,
                                                 tmp_path: Path) -> None:
    # A directory is a usage error (the shared output rule), refused before anything is
    # recorded or written.
    with pytest.raises(UsageError, match=f"{tmp_path} is a directory"):
        export_dataset(workspace, dataset, tmp_path)
    assert _events(workspace) == []
    missing = tmp_path / "no-such-dir" / "out.jsonl"
    with pytest.raises(SealtuneError, match="no-such-dir"):
        export_dataset(workspace, dataset, missing)


def test_unknown_dataset_or_part(workspace: Workspace, dataset: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no dataset"):
        export_dataset(workspace, "nope", tmp_path / "x")
    with pytest.raises(UsageError, match="part"):
        export_dataset(workspace, dataset, tmp_path / "x", part="keys")
    assert not (tmp_path / "x").exists() and _events(workspace) == []
