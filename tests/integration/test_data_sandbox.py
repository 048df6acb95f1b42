"""The data step in its own bubblewrap sandbox: keys over a pipe, sealed outputs, the ledger.

Real components only: a real workspace and keyring, real bubblewrap, the real
worker. The ingest runs sandboxed and in process on the same input with the
same redaction keys; the dataset's files must say the same once opened.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sealtune.data.redact import DatasetKeys
from sealtune.data.sandboxed import UNSAFE_WARNING, ingest_dataset
from sealtune.data.store import read_dataset
from sealtune.keys.sealing import open_sealed
from sealtune.workspace import Workspace

SANDBOX_EVENTS = ["sandbox.created", "sandbox.data_decrypted", "sandbox.outputs_sealed",
                  "sandbox.destroyed"]


def write_raw(path: Path, marker: str, n: int = 12) -> None:
    """Chat records with a planted marker, PII, one duplicate and one malformed-free id."""
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"r{i}", "messages": [
                {"role": "user", "content": f"My mail is {marker}{i}@example.com, order {i}? "
                                            f"call 13812345{i:03d}"},
                {"role": "assistant", "content": f"Order {i} ships tomorrow."}]}) + "\n")
        fh.write(json.dumps({"id": "dup", "messages": [
            {"role": "user", "content": "My mail is x@example.com, order 0? call 13812345000"},
            {"role": "assistant", "content": "Order 0 ships tomorrow."}]}) + "\n")


def sandbox_events(ws: Workspace, name: str) -> list[Any]:
    return [e for e in ws.ledger.entries()
            if e.resource == f"dataset/{name}" and e.action.startswith("sandbox.")]


def test_sandboxed_ingest_records_the_lifecycle_and_seals_everything(
        workspace: Workspace, tmp_path: Path) -> None:
    marker = "planted-" + secrets.token_hex(6)
    raw = tmp_path / "raw.jsonl"
    write_raw(raw, marker)
    result = ingest_dataset(workspace, raw, name="boxed")
    events = sandbox_events(workspace, "boxed")
    assert [e.action for e in events] == SANDBOX_EVENTS
    assert all(e.details["stage"] == "data" for e in events)
    created = events[0].details
    assert created["measurement"] == result.manifest["sandbox"]["measurement"]
    assert created["measurement"]["digest"].startswith("sha256:")
    assert "--unshare-net" in created["flags"]["isolation"]
    destroyed = events[-1].details
    assert destroyed["processes_left"] == 0 and destroyed["namespaces_released"]
    assert destroyed["outputs_removed"] == 0
    assert result.manifest["input"]["name"] == "raw.jsonl"
    assert sorted(p.name for p in result.path.iterdir()) == sorted(
        ["data.jsonl.sealed", "quarantine.jsonl.sealed", "dataset-keys.sealed",
         "findings.json", "bom.cdx.json", "dataset.json"])
    ingested = [e for e in workspace.ledger.entries() if e.action == "data.ingest"]
    assert ingested[-1].details["sandboxed"] is True
    records = list(read_dataset(workspace, "boxed"))
    assert records and not any(marker in json.dumps(r.to_json()) for r in records)


def _normalised(ws: Workspace, result: Any) -> dict[str, Any]:
    """The dataset's files with what differs by design (names, time, random keys) taken out."""
    manifest = dict(result.manifest)
    files = manifest["files"]
    created = datetime.fromisoformat(manifest["created"].replace("Z", "+00:00"))
    # the time in every form the BOM writes it (ISO, and the component's version)
    volatile = [result.name, manifest["created"], created.strftime("%Y%m%dT%H%M%SZ"),
                created.isoformat()]
    opened: dict[str, bytes] = {}
    for role in ("data", "quarantine", "keys"):
        entry = dict(files[role])
        opened[role] = b"".join(open_sealed(result.path / entry["name"], keys=ws.keys))
        volatile += [entry.pop("content_sha256"), entry.pop("file_id")]
        files = {**files, role: entry}
    bom = (result.path / "bom.cdx.json").read_text("utf-8")
    for value in volatile:
        bom = bom.replace(value, "*")
    bom_doc = json.loads(bom)
    bom_doc.pop("serialNumber", None)
    manifest = {k: v for k, v in manifest.items() if k not in ("name", "created", "sandbox")}
    # the screening's wall time differs from run to run, sandboxed or not
    findings = {**result.findings, "dataset": "*",
                "screening": {**result.findings["screening"], "seconds": 0}}
    on_disk = json.loads((result.path / "findings.json").read_text("utf-8"))
    assert on_disk == result.findings
    return {"manifest": {**manifest, "files": files}, "findings": findings, "bom": bom_doc,
            "opened": opened, "quarantined": result.quarantined}


def test_sandboxed_and_in_process_ingests_write_the_same_dataset(
        workspace: Workspace, tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    write_raw(raw, "same-" + secrets.token_hex(4))
    keys = DatasetKeys.generate()
    boxed = ingest_dataset(workspace, raw, name="ds-sandboxed", dataset_keys=keys)
    with pytest.warns(UserWarning, match="WITHOUT the sandbox"):
        plain = ingest_dataset(workspace, raw, name="ds-in-process", dataset_keys=keys,
                               sandbox=False)
    a, b = _normalised(workspace, boxed), _normalised(workspace, plain)
    assert a["opened"]["data"] and a["opened"] == b["opened"]
    assert a == b
    assert "sandbox" in boxed.manifest and "sandbox" not in plain.manifest
    actions = [e.action for e in workspace.ledger.entries()
               if e.resource == "dataset/ds-in-process"]
    assert "data.unsafe_no_sandbox" in actions and "sandbox.created" not in actions
    assert UNSAFE_WARNING.startswith("ingesting WITHOUT the sandbox")


def test_a_sealed_raw_input_is_opened_only_inside(workspace: Workspace, tmp_path: Path) -> None:
    from sealtune.keys.files import seal_file

    marker = "sealed-raw-" + secrets.token_hex(6)
    plain = tmp_path / "plain.jsonl"
    write_raw(plain, marker)
    sealed = tmp_path / "raw.jsonl.sealed"
    seal_file(plain, sealed, keys=workspace.keys, key_names=["k1"])
    plain.unlink()
    result = ingest_dataset(workspace, sealed, name="fromsealed")
    events = sandbox_events(workspace, "fromsealed")
    decrypted = next(e for e in events if e.action == "sandbox.data_decrypted")
    assert decrypted.details["sealed_input"] is True and decrypted.details["stage"] == "data"
    reads = [e for e in workspace.ledger.entries() if e.action == "data.read"]
    assert reads and reads[-1].details == {"part": "sealed input", "sandboxed": True}
    assert result.counts["records_read"] == 13
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), path


def test_cli_no_sandbox_warns_and_is_recorded(workspace: Workspace, tmp_path: Path,
                                              passphrase: str, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from sealtune.cli import main as cli_main

    raw = tmp_path / "raw.jsonl"
    write_raw(raw, "cli-" + secrets.token_hex(4))
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    assert cli_main(["data", "ingest", str(raw), "--name", "unboxed", "--no-sandbox",
                     "--home", str(workspace.root)]) == 0
    assert "WITHOUT the sandbox" in capsys.readouterr().err
    assert cli_main(["data", "ingest", str(raw), "--name", "boxed",
                     "--home", str(workspace.root)]) == 0
    entries = workspace.ledger.entries()
    unboxed = [e.action for e in entries if e.resource == "dataset/unboxed"]
    assert "data.unsafe_no_sandbox" in unboxed and "sandbox.created" not in unboxed
    assert [e.action for e in sandbox_events(workspace, "boxed")] == SANDBOX_EVENTS
