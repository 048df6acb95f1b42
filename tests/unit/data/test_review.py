"""``data review``: masked review of quarantined and flagged records, release and drop, audited."""

from __future__ import annotations

import json
import os
import secrets
import select
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sealtune.cli import main as cli_main
from sealtune.data import apply_review, review_items
from sealtune.data.ingest import ingest
from sealtune.data.policy import parse_policy
from sealtune.data.store import read_dataset, show_dataset
from sealtune.errors import IntegrityError, UsageError
from sealtune.keys.rotation import rotate_workspace
from sealtune.keys.sealing import open_sealed_lines
from sealtune.train.jobs.start import _dataset_file
from sealtune.workspace import Workspace

TOPICS = ["refund", "parcel", "invoice", "warranty", "voucher", "battery", "kettle", "jacket"]
POLICY = {"version": 1, "screening": {
    "exact_duplicate": "quarantine", "conflict": "flag",
    "near_duplicate": {"action": "quarantine", "thresholds": {"threshold": 0.6}}}}
CONFLICT = "What is the return window for a pair of running shoes bought online?"


def _row(rid: str, user: str, answer: str) -> str:
    return json.dumps({"id": rid, "messages": [{"role": "user", "content": user},
                                               {"role": "assistant", "content": answer}]}) + "\n"


@pytest.fixture
def planted() -> str:
    """Letters only (digits are always starred): only the word count may hide it."""
    return "zqv" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(14))


@pytest.fixture
def dataset(workspace: Workspace, tmp_path: Path, planted: str) -> str:
    """24 template records (near copies: quarantined); d0 holds the planted value, d1 is an
    exact copy of c1; four answers to one question conflict (flagged, kept in the data)."""
    rows = [_row(f"c{i}", f"Where is my {t} order number {1000 + i}? Please help me today.",
                 f"Your {t} order is on its way, thanks for waiting.")
            for i, t in enumerate(TOPICS * 3)]
    rows += [_row("d0", "Where is my refund order number 1000? Please help me today.",
                  f"Your refund order is on its way, {planted} thanks for waiting."),
             rows[1].replace('"c1"', '"d1"')]
    rows += [_row(f"f{i}", CONFLICT, a) for i, a in enumerate((
        "Thirty days from delivery, with the receipt.", "Thirty days from delivery.",
        "There is no return window at all, all sales of footwear are final.",
        "Shoes can never be returned once the box has been opened by the buyer."))]
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(rows), "utf-8")
    ingest(workspace, raw, name="rev", policy=parse_policy(POLICY))
    raw.unlink()
    return "rev"


def _ids(ws: Workspace, name: str, part: str) -> list[str]:
    return [r.id for r in read_dataset(ws, name, part=part)]


def _scan(root: Path, value: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and value.encode() in p.read_bytes()]


def test_review_shows_masked_context_never_the_planted_value(
        workspace: Workspace, dataset: str, planted: str, passphrase: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    held = _ids(workspace, dataset, "quarantine")
    assert {"d0", "d1"} <= set(held)
    items = review_items(workspace, dataset)
    by_id = {i.record_id: i for i in items}
    assert {"d0", "d1"} <= set(by_id) and by_id["d0"].status == "quarantined"
    assert by_id["d0"].checks == ["near_duplicate"]
    assert by_id["d1"].checks == ["exact_duplicate"]
    text = " ".join(t for _, t in by_id["d0"].messages)
    assert "order" in text and "Where is my" in text  # shared words stay readable
    assert planted not in text and "*" * len(planted) in text
    assert "1000" not in text  # digits are always starred
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    capsys.readouterr()
    for args in (["--list", "--json"], ["--list"]):
        assert cli_main(["data", "review", dataset, "--home", str(workspace.root), *args]) == 0
        out = capsys.readouterr()
        assert planted not in out.out + out.err
    assert cli_main(["data", "review", dataset, "--home", str(workspace.root),
                     "--list", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {i["record_id"] for i in report["items"]} == set(by_id)
    assert _scan(workspace.root, planted) == []  # not in the ledger, logs or any file
    shows = [e for e in workspace.ledger.entries() if e.action == "data.review.show"]
    assert shows and shows[-1].details["quarantined"] == len(held)


def test_release_reaches_training_input_drop_never(workspace: Workspace, dataset: str,
                                                    planted: str) -> None:
    before = show_dataset(workspace, dataset).manifest
    result = apply_review(workspace, dataset, release=["d0"], drop=["d1"])
    assert result.revision == 1 and result.released == ("d0",) and result.dropped == ("d1",)
    info = show_dataset(workspace, dataset)
    info.raise_if_broken()
    training = [json.loads(line)["id"] for line in
                open_sealed_lines(_dataset_file(workspace, dataset), keys=workspace.keys)]
    assert "d0" in training and "d1" not in training
    assert not {"d0", "d1"} & set(_ids(workspace, dataset, "quarantine"))
    m = info.manifest
    assert m["counts"]["records_out"] == before["counts"]["records_out"] + 1 == len(training)
    assert m["counts"]["quarantined"] == before["counts"]["quarantined"] - 2
    assert m["counts"]["dropped_review"] == 1
    assert m["review"]["decisions"]["d1"]["decision"] == "drop"
    assert m["review"]["by"] == workspace.actor
    bom = json.loads((info.path / "bom.cdx.json").read_text("utf-8"))
    hashes = {c["name"]: c["hashes"][0]["content"] for c in bom["components"]}
    assert hashes["data.jsonl.sealed"] == m["files"]["data"]["content_sha256"]
    findings = json.loads((info.path / "findings.json").read_text("utf-8"))
    assert findings["review"]["revision"] == 1 and findings["counts"] == m["counts"]
    events = [(e.action, e.resource, e.details) for e in workspace.ledger.entries()
              if e.action.startswith("data.review")]
    assert ("data.review", f"dataset/{dataset}/d0",
            {"decision": "release", "revision": 1, "checks": ["near_duplicate"]}) in events
    assert events[-1][0] == "data.review.commit"
    assert planted not in json.dumps([e[2] for e in events])
    # the new files are in the workspace inventory: a rotation re-wraps them, still readable
    workspace.keys.rotate("k1")
    report = rotate_workspace(workspace, "k1")
    assert report is not None
    show_dataset(workspace, dataset).raise_if_broken()
    assert "d0" in _ids(workspace, dataset, "data")
    assert not list((workspace.root / "datasets").glob(".build-*"))


def test_flagged_record_can_be_dropped_and_decided_records_leave_the_list(
        workspace: Workspace, dataset: str) -> None:
    flagged = [i.record_id for i in review_items(workspace, dataset) if i.status == "flagged"]
    assert flagged and {"f0", "f1", "f2", "f3"} >= set(flagged)  # conflict: flag
    apply_review(workspace, dataset, drop=[flagged[0]], release=flagged[1:2])
    assert flagged[0] not in _ids(workspace, dataset, "data")
    left = {i.record_id for i in review_items(workspace, dataset)}
    assert not left & set(flagged[:2])
    with pytest.raises(UsageError, match="not awaiting review"):
        apply_review(workspace, dataset, drop=[flagged[0]])
    second = apply_review(workspace, dataset, release=["d0"])
    assert second.revision == 2


def test_bad_decisions_are_refused_and_change_nothing(workspace: Workspace,
                                                      dataset: str) -> None:
    before = (workspace.root / "datasets" / dataset / "dataset.json").read_bytes()
    with pytest.raises(UsageError, match="both released and dropped"):
        apply_review(workspace, dataset, release=["d0"], drop=["d0"])
    with pytest.raises(UsageError, match="nope"):
        apply_review(workspace, dataset, release=["nope"])
    with pytest.raises(UsageError, match="no decision"):
        apply_review(workspace, dataset)
    assert (workspace.root / "datasets" / dataset / "dataset.json").read_bytes() == before


def test_a_tampered_quarantine_is_refused_with_exit_3(
        workspace: Workspace, dataset: str, passphrase: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    held = workspace.root / "datasets" / dataset / "quarantine.jsonl.sealed"
    blob = bytearray(held.read_bytes())
    blob[-20] ^= 1
    held.write_bytes(bytes(blob))
    manifest = (held.parent / "dataset.json").read_bytes()
    with pytest.raises(IntegrityError):
        review_items(workspace, dataset)
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    for args in (["--list"], ["--release", "d0"]):
        assert cli_main(["data", "review", dataset, "--home", str(workspace.root), *args]) == 3
    assert "integrity" in capsys.readouterr().err
    assert (held.parent / "dataset.json").read_bytes() == manifest
    assert not [e for e in workspace.ledger.entries() if e.action == "data.review"]


def _read_until(fd: int, seen: bytearray, want: bytes, count: int = 1) -> None:
    deadline = time.monotonic() + 120
    while seen.count(want) < count:
        assert time.monotonic() < deadline, bytes(seen[-800:])
        if select.select([fd], [], [], 1)[0]:
            chunk = os.read(fd, 1 << 16)
            assert chunk, bytes(seen[-800:])
            seen += chunk


def test_interactive_review_on_a_terminal(workspace: Workspace, dataset: str, planted: str,
                                          passphrase: str) -> None:
    """On a terminal: one record at a time; release the first, quit at the second, confirm."""
    first = review_items(workspace, dataset)[0].record_id
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    env.update({"SEALTUNE_PASSPHRASE": passphrase, "TERM": "dumb", "COLUMNS": "120"})
    master, slave = os.openpty()
    seen = bytearray()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "sealtune", "data", "review", dataset,
                                 "--home", str(workspace.root)], env=env, stdin=slave,
                                stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        for answer, want, count in ((b"r\n", b"[r]elease", 1), (b"q\n", b"[r]elease", 2),
                                    (b"y\n", b"publish?", 1)):
            _read_until(master, seen, want, count)
            os.write(master, answer)
        _read_until(master, seen, b"revision 1:")
        assert proc.wait(timeout=120) == 0, bytes(seen[-800:])
        try:
            while select.select([master], [], [], 0.5)[0]:
                chunk = os.read(master, 1 << 16)
                if not chunk:
                    break
                seen += chunk
        except OSError:  # EIO: the terminal's other side is closed
            pass
    finally:
        os.close(master)
    assert planted.encode() not in seen
    assert b"released 1, dropped 0" in seen
    assert first in _ids(workspace, dataset, "data")
