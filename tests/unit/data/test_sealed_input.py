"""A raw input sealed with ``sealtune seal`` is ours: scan and ingest open it in memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sealtune.data.ingest import ingest, scan
from sealtune.data.store import read_dataset
from sealtune.errors import IntegrityError, UsageError
from sealtune.keys.files import seal_file
from sealtune.keys.sealing import SealedSource
from sealtune.workspace import Workspace

ROWS = [("你好，我是欧阳震霆，手机13912345678，退款什么时候到账？", "退款将在3个工作日内到账。"),
        ("How do I reset my password?", "Tap Forgot password on the login page."),
        ("我的银行卡6228480402564890018被冻结了", "请携带身份证到网点办理解冻。"),
        ("Can I change the delivery address after paying?", "Yes, until the parcel ships.")]
PLANTED = ["欧阳震霆", "13912345678", "6228480402564890018"]


def _raw(path: Path, *, csv: bool = False) -> Path:
    if csv:
        path.write_text("prompt\tanswer\n" + "".join(f"{u}\t{a}\n" for u, a in ROWS), "utf-8")
    else:
        path.write_text("".join(json.dumps({"messages": [
            {"role": "user", "content": u}, {"role": "assistant", "content": a}]},
            ensure_ascii=False) + "\n" for u, a in ROWS), "utf-8")
    return path


def _sealed(ws: Workspace, raw: Path) -> Path:
    sealed = raw.with_name(raw.name + ".sealed")
    seal_file(raw, sealed, keys=ws.keys, key_names=["k1"])
    return sealed


def test_scan_opens_a_sealed_input_and_finds_what_the_plain_one_has(
        workspace: Workspace, tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw.jsonl")
    sealed = _sealed(workspace, raw)
    plain = scan(raw).to_json()
    before = {p for p in tmp_path.rglob("*")}
    opened = scan(sealed, keys=workspace.keys, audit=workspace.audit).to_json()
    assert {p for p in tmp_path.rglob("*")} == before  # nothing written beside it
    for key in ("input", "pii", "redaction"):
        assert opened[key] == plain[key], key
    assert opened["screening"]["counts"] == plain["screening"]["counts"]
    assert opened["input"]["format"] == "openai" and opened["pii"]["entities"]["PHONE"] == 1
    events = [e for e in workspace.ledger.entries() if e.action in ("data.read", "key.unwrap")]
    assert [e.action for e in events] == ["key.unwrap", "data.read"]  # unlocked once
    assert events[1].resource == str(sealed)


def test_a_sealed_csv_keeps_its_format_and_ingests(workspace: Workspace, tmp_path: Path) -> None:
    raw = _raw(tmp_path / "rows.tsv", csv=True)
    sealed = _sealed(workspace, raw)
    raw.unlink()
    report = scan(sealed, keys=workspace.keys).to_json()
    assert report["input"]["format"] == "csv" and report["input"]["records"] == 4
    result = ingest(workspace, sealed, name="from-sealed")
    assert result.counts["records_out"] == 4 and result.manifest["input"]["format"] == "csv"
    text = json.dumps([r.to_json() for r in read_dataset(workspace, "from-sealed")],
                      ensure_ascii=False)
    assert not [v for v in PLANTED if v in text]
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and b"13912345678" in p.read_bytes()]


def test_a_sealed_input_needs_the_keys_and_must_be_intact(workspace: Workspace,
                                                          tmp_path: Path) -> None:
    sealed = _sealed(workspace, _raw(tmp_path / "raw.jsonl"))
    with pytest.raises(UsageError, match="sealed file"):
        scan(sealed)
    blob = bytearray(sealed.read_bytes())
    blob[-20] ^= 1
    sealed.write_bytes(bytes(blob))
    with pytest.raises(IntegrityError):
        scan(sealed, keys=workspace.keys)


def test_a_sealed_source_reads_from_the_start_each_time_and_notices_a_new_header(
        workspace: Workspace, tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw.jsonl")
    sealed = _sealed(workspace, raw)
    source = SealedSource(sealed, keys=workspace.keys)
    with source.open() as a, source.open() as b:
        assert a.read(5) == b.read(5) == raw.read_bytes()[:5]
        assert a.read() == raw.read_bytes()[5:]
    seal_file(raw, sealed, keys=workspace.keys, key_names=["k1"])  # same content, new data key
    with pytest.raises(IntegrityError, match="changed"):
        source.open()
