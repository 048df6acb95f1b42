"""Ingest leaves no copy of a detected value behind: record-wide, dataset-wide, every file.

Names are planted where the pattern tier finds them (after a cue such as
``我是`` or ``this is``) and, in other turns and other records, where it does
not (``王建国您好``, ``已转交王建国处理``, lower case). The sealed dataset,
opened, must hold none of them, whichever record came first; nor may any
file the run wrote, nor the ledger.
"""

from __future__ import annotations

import json
import random
import secrets
import warnings
from pathlib import Path

import pytest

from sealtune.data.ingest import ingest, scan
from sealtune.data.policy import default_policy, parse_policy
from sealtune.data.store import read_dataset
from sealtune.workspace import Workspace

# Common single-character surnames: the pattern tier finds these names after a cue but
# not bare in running text (distinctive compound surnames such as 欧阳 it finds anywhere).
SURNAMES = ["王", "李", "张", "刘", "陈"]
GIVEN = "震霆蔚岚秋笛云舒晓峰静怡珂瑶"
EN_FIRST = ["Zebulon", "Ottoline", "Barnaby", "Philippa"]
EN_LAST = ["Thistlewood", "Hargreave", "Ellingham", "Pemberton"]
TOPICS = ["退款", "发货", "发票", "保修", "换货", "积分", "会员", "优惠券", "地址", "物流", "售后",
          "账单"]


def names(rng: random.Random) -> tuple[str, str, str]:
    cn = [c + "".join(rng.sample(GIVEN, 2)) for c in rng.sample(SURNAMES, 2)]
    return cn[0], cn[1], f"{rng.choice(EN_FIRST)} {rng.choice(EN_LAST)}"


def filler(i: int, rng: random.Random) -> tuple[str, str]:
    topic = TOPICS[i % len(TOPICS)]
    return (f"请问{topic}的问题怎么处理？订单号{rng.randint(10**5, 10**6)}，第{i}次咨询。",
            f"关于{topic}，我们会在{rng.randint(2, 9)}天内处理，工单{i}号，谢谢{topic}反馈。")


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    lines = [json.dumps({"id": f"r{i}", "messages": [{"role": "user", "content": u},
                                                     {"role": "assistant", "content": a}]},
                        ensure_ascii=False) for i, (u, a) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def planted_input(path: Path) -> list[str]:
    """12 records; each name detected in one record and undetected in others, before and after."""
    rng = random.Random(secrets.randbits(32))
    early, late, english = names(rng)
    rows = [filler(i, rng) for i in range(12)]
    rows[1] = (f"你好，我是{early}，{TOPICS[1]}还没到，订单{rng.randint(10**5, 10**6)}。",
               f"{early}您好，{TOPICS[1]}会在三天内到。")  # detected in the user turn only
    rows[7] = (f"订单已转交{early}处理，{TOPICS[7]}进度如何？", "请稍候，正在核实积分。")
    rows[3] = (f"{late}的订单已发货吗？{TOPICS[3]}单号在哪里？", "已发货，单号稍后短信通知。")
    rows[10] = (f"你好，我是{late}，想问{TOPICS[10]}的事。", "好的，请提供售后单号。")
    rows[4] = (f"Hi, this is {english}. Where is my {TOPICS[4]} refund?",
               f"Hello {english}, it is on its way.")
    rows[9] = (f"thanks {english.lower()}, note for the {TOPICS[9]} team", "Noted, thank you.")
    write(path, rows)
    return [early, late, english, english.lower()]


def test_a_value_detected_anywhere_is_redacted_everywhere(workspace: Workspace,
                                                           tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    planted = planted_input(raw)
    analyzer = default_policy().analyzer()
    lines = raw.read_text("utf-8").splitlines()
    for row, value, detected in ((1, planted[0], True), (7, planted[0], False),
                                 (10, planted[1], True), (3, planted[1], False),
                                 (4, planted[2], True), (9, planted[3], False)):
        text = lines[row].split('"messages"')[1]
        found = [text[e.start:e.end] for e in analyzer.analyze(text)]
        assert value in text and (value in found) is detected, ("precondition", row)
    result = ingest(workspace, raw, name="everywhere")
    assert result.counts["records_out"] == 12
    opened = json.dumps([r.to_json() for r in read_dataset(workspace, "everywhere")],
                        ensure_ascii=False)
    assert not [v for v in planted if v in opened or v.lower() in opened.lower()]
    spread = result.findings["pii"]["spread"]
    assert spread["record"]["PERSON"] >= 1 and spread["dataset"]["PERSON"] >= 3
    assert result.findings["redaction"]["dataset_wide"] is True
    assert result.findings["redaction"]["dataset_values"]["values"]["PERSON"] >= 3
    wanted = {v.encode(enc) for v in planted for enc in ("utf-8", "utf-16-le", "utf-16-be")}
    written = [p for p in workspace.root.rglob("*") if p.is_file()]
    assert len(written) >= 7
    assert not [p for p in written for w in wanted if w in p.read_bytes()]
    ledger = json.dumps([e.details for e in workspace.ledger.entries()], ensure_ascii=False)
    assert not [v for v in planted if v in ledger]


def test_scan_counts_what_ingest_spreads(workspace: Workspace, tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    planted_input(raw)
    report = scan(raw, audit=workspace.audit).to_json()
    assert report["pii"]["spread"]["dataset"]["PERSON"] >= 3
    assert report["redaction"]["dataset_values"]["values"]["PERSON"] >= 3
    assert report["input"]["records"] == 12
    result = ingest(workspace, raw, name="same")
    assert result.findings["pii"]["spread"] == report["pii"]["spread"]


def test_turning_dataset_wide_off_is_weaker_warned_and_recorded(workspace: Workspace,
                                                               tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    early, late, english, _ = planted_input(raw)
    policy = parse_policy({"version": 1, "unsafe_no_dataset_wide_redaction": True})
    assert policy.digest() != default_policy().digest()
    with pytest.warns(UserWarning, match="unsafe_no_dataset_wide_redaction"):
        result = ingest(workspace, raw, name="weak", policy=policy)
    opened = json.dumps([r.to_json() for r in read_dataset(workspace, "weak")],
                        ensure_ascii=False)
    assert early in opened and late in opened  # left where the detector missed them
    assert english not in opened  # record-wide still applies within record 4
    assert result.findings["redaction"] == {"record_wide": True, "dataset_wide": False,
                                            "unsafe": ["unsafe_no_dataset_wide_redaction"]}
    event = next(e for e in workspace.ledger.entries() if e.action == "data.ingest")
    assert event.details["unsafe"] == ["unsafe_no_dataset_wide_redaction"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ingest(workspace, raw, name="strong")  # the default: no warning
    assert "unsafe" not in [e for e in workspace.ledger.entries()
                            if e.action == "data.ingest"][-1].details
