"""Ingest end to end on generated data: counts, sealed outputs, quarantine, BOM, failure modes."""

from __future__ import annotations

import hashlib
import json
import random
from importlib import resources
from pathlib import Path

import pytest

from sealtune.data.formats import DataFormatError
from sealtune.data.ingest import IngestResult, ingest, scan
from sealtune.data.policy import default_policy, parse_policy
from sealtune.data.redact import detokenize
from sealtune.data.store import (
    list_datasets,
    open_dataset_keys,
    read_dataset,
    show_dataset,
)
from sealtune.errors import IntegrityError, SealtuneError, UsageError
from sealtune.workspace import Workspace

SURNAMES = ["欧阳", "司马", "慕容", "皇甫", "诸葛"]
GIVEN = "震霆蔚岚秋笛云舒晓峰静怡"


def cn_id(rng: random.Random) -> str:
    body = f"110105{rng.randint(1960, 1999)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}" \
           f"{rng.randint(0, 999):03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def luhn(rng: random.Random) -> str:
    digits = [6, 2, 2, 8] + [rng.randint(0, 9) for _ in range(11)]
    total = sum(d if i % 2 else (d * 2 - 9 if d * 2 > 9 else d * 2)
                for i, d in enumerate(reversed(digits)))
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def make_input(path: Path, *, seed: int = 1, n: int = 40, dups: int = 0,
               malformed: bool = False) -> list[str]:
    """Write ``n`` chat records with planted PII (+ exact copies); return the planted values."""
    rng = random.Random(seed)
    planted: list[str] = []
    lines = []
    for i in range(n):
        name = rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, 2))
        phone = f"139{rng.randint(10**7, 10**8 - 1)}"
        ident, card = cn_id(rng), luhn(rng)
        email = f"u{rng.getrandbits(40):010x}@example.org"
        planted += [name, phone, ident, card, email]
        topic = rng.choice(["退款", "发货", "发票", "保修", "密码"])
        user = (f"你好，我是{name}，手机{phone}，身份证号{ident}，卡号{card}，"
                f"邮箱{email}。关于{topic}的问题，订单{rng.randint(10**5, 10**6)}。")
        answer = f"您好，关于{topic}，我们会在{rng.randint(2, 9)}天内处理，编号{i}。"
        lines.append(json.dumps({"id": f"r{i:03d}", "category": topic, "messages": [
            {"role": "user", "content": user}, {"role": "assistant", "content": answer}]},
            ensure_ascii=False))
    lines += [lines[j].replace(f'"r{j:03d}"', f'"copy{j:03d}"') for j in range(dups)]
    if malformed:
        lines.insert(5, '{"id": "bad", "messages": [')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return planted


def all_text(records: list) -> str:
    return "\n".join(m.content for r in records for m in r.messages)


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return tmp_path / "in" / "raw.jsonl"


@pytest.fixture(autouse=True)
def _indir(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()


def test_end_to_end_counts_and_sealed_outputs(workspace: Workspace, raw: Path) -> None:
    planted = make_input(raw, n=40, dups=3, malformed=True)
    result = ingest(workspace, raw, name="support", on_error="skip")
    c = result.counts
    assert c["records_read"] == 43 and c["skipped_lines"] == 1
    assert c["dropped_screening"] == 3 and c["records_out"] == 40 and c["quarantined"] == 0
    assert result.findings["input"]["skipped_line_numbers"] == [6]
    assert result.findings["pii"]["entities"]["CN_ID"] == 40
    assert set(p.name for p in result.path.iterdir()) == {
        "data.jsonl.sealed", "quarantine.jsonl.sealed", "dataset-keys.sealed", "findings.json",
        "bom.cdx.json", "dataset.json"}
    records = list(read_dataset(workspace, "support"))
    assert [r.id for r in records] == [f"r{i:03d}" for i in range(40)]
    text = all_text(records)
    assert not [v for v in planted if v in text]
    assert all(not r.extra for r in records)  # minimised: "category" is not kept by default
    assert list(read_dataset(workspace, "support", part="quarantine")) == []
    for sealed in ("data.jsonl.sealed", "quarantine.jsonl.sealed", "dataset-keys.sealed"):
        assert (result.path / sealed).read_bytes().startswith(b"SEALTUNE")
    assert [d.name for d in list_datasets(workspace)] == ["support"]
    actions = [e.action for e in workspace.ledger.entries()]
    assert "data.ingest" in actions and "data.read" in actions


def test_quarantine_is_sealed_aside_and_audited(workspace: Workspace, raw: Path) -> None:
    make_input(raw, n=30, dups=4)
    policy = parse_policy({"version": 1, "keep_fields": ["category"],
                           "screening": {"exact_duplicate": "quarantine"}})
    result = ingest(workspace, raw, name="q", policy=policy)
    assert result.counts["quarantined"] == 4 and result.counts["records_out"] == 30
    held = list(read_dataset(workspace, "q", part="quarantine"))
    assert sorted(r.id for r in held) == [f"copy{j:03d}" for j in range(4)]
    assert all(r.extra.keys() == {"category"} for r in held)
    kept = {r.id for r in read_dataset(workspace, "q")}
    assert not kept & {r.id for r in held}
    events = [e for e in workspace.ledger.entries() if e.action == "data.quarantine"]
    assert sorted(e.resource for e in events) == [f"dataset/q/copy{j:03d}" for j in range(4)]
    assert all(not e.details for e in events)


def test_bom_validates_and_digests_match(workspace: Workspace, raw: Path) -> None:
    import jsonschema  # cyclonedx-python-lib[json-validation]: a missing install step must fail

    assert jsonschema
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    make_input(raw, n=25, dups=2)
    result = ingest(workspace, raw, name="bom")
    text = (result.path / "bom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert bom["specVersion"] == "1.6"
    parts = {c["bom-ref"]: c for c in bom["components"]}

    def sha(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    def content(path: Path) -> str:  # sealed-v1: SHA-256(prefix || payload), slots skipped
        blob = path.read_bytes()
        slot = int.from_bytes(blob[16:20], "big")
        return hashlib.sha256(blob[:68] + blob[68 + 2 * slot:]).hexdigest()

    def prop(component: dict, name: str) -> str:
        return next(p["value"] for p in component["properties"] if p["name"] == name)

    assert parts["input"]["hashes"][0]["content"] == sha(raw)
    assert prop(parts["input"], "sealtune:records") == "27"
    assert parts["output:data"]["hashes"][0]["content"] == content(
        result.path / "data.jsonl.sealed")
    assert prop(parts["output:data"], "sealtune:records") == "25"
    quarantine = result.path / "quarantine.jsonl.sealed"
    assert parts["output:quarantine"]["hashes"][0]["content"] == content(quarantine)
    assert prop(parts["output:data"], "sealtune:digest").startswith("content-sha256")
    meta = bom["metadata"]["component"]
    policy = default_policy()
    assert prop(meta, "sealtune:policy:redaction-digest") == policy.digest(
        sections=("keep_fields", "redaction", "recognizers", "unsafe_no_dataset_wide_redaction"))
    assert prop(meta, "sealtune:policy:screening-digest") == policy.digest(sections=("screening",))
    assert bom["metadata"]["tools"]["components"][0]["name"] == "sealtune"
    deps = {d["ref"]: d.get("dependsOn", []) for d in bom["dependencies"]}
    assert deps["output:data"] == ["input"]
    manifest = result.manifest
    assert manifest["input"]["sha256"] == sha(raw)
    assert manifest["files"]["data"]["content_sha256"] == content(
        result.path / "data.jsonl.sealed")
    assert show_dataset(workspace, "bom").intact == dict.fromkeys(
        ["data.jsonl.sealed", "quarantine.jsonl.sealed", "dataset-keys.sealed"], True)


def test_reports_and_ledger_never_hold_a_planted_value(workspace: Workspace, raw: Path) -> None:
    planted = make_input(raw, n=20, dups=2)
    result = ingest(workspace, raw, name="plant")
    for name in ("findings.json", "dataset.json", "bom.cdx.json"):
        text = (result.path / name).read_text()
        assert not [v for v in planted if v in text], name
    examples = result.findings["pii"]["examples_masked"]
    assert examples["PHONE"] == ["***********"] and examples["CN_ID"] == ["******************"]
    ledger = json.dumps([e.details for e in workspace.ledger.entries()], ensure_ascii=False)
    assert not [v for v in planted if v in ledger]


def test_fail_mode_leaves_no_dataset(workspace: Workspace, raw: Path) -> None:
    make_input(raw, n=10, malformed=True)
    with pytest.raises(DataFormatError) as info:
        ingest(workspace, raw, name="broken")
    assert "line 6" in str(info.value) or info.value.line == 6
    datasets = workspace.root / "datasets"
    assert not datasets.exists() or list(datasets.iterdir()) == []
    failed = [e for e in workspace.ledger.entries() if e.action == "data.ingest"]
    assert [(e.outcome, e.details["error"]) for e in failed] == [("failure", "DataFormatError")]


def test_names_are_checked_and_never_overwritten(workspace: Workspace, raw: Path) -> None:
    make_input(raw, n=5)
    ingest(workspace, raw, name="once")
    with pytest.raises(UsageError, match="already exists"):
        ingest(workspace, raw, name="once")
    for bad in ("../x", ".hidden", "a/b", ""):
        with pytest.raises(UsageError):
            ingest(workspace, raw, name=bad)


def test_ids_with_pii_or_repeated_are_renamed(workspace: Workspace, raw: Path) -> None:
    rows = [{"id": "alice.w@example.com", "messages": [{"role": "user", "content": "hi one"}]},
            {"id": "x", "messages": [{"role": "user", "content": "hello two"}]},
            {"id": "x", "messages": [{"role": "user", "content": "good day three"}]}]
    raw.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = ingest(workspace, raw, name="ids")
    assert [r.id for r in read_dataset(workspace, "ids")] == ["line-1", "x", "x~2"]
    assert result.findings["input"]["ids_renamed"] == {"pii": 1, "duplicate": 1}


def test_input_changed_midway_is_refused(workspace: Workspace, raw: Path) -> None:
    make_input(raw, n=8)

    def progress(phase: str, done: int, total: int | None) -> None:
        if phase == "screening, pass 1" and total is not None:  # the end of the first pass
            with raw.open("a") as fh:
                fh.write(json.dumps({"messages": [{"role": "user", "content": "late"}]}) + "\n")

    with pytest.raises(SealtuneError, match="changed while it was being read"):
        ingest(workspace, raw, name="moving", progress=progress)
    assert not (workspace.root / "datasets").exists()


def test_scan_changes_nothing_and_agrees_with_ingest(workspace: Workspace, raw: Path) -> None:
    make_input(raw, n=15, dups=1)
    report = scan(raw, audit=workspace.audit)
    assert not (workspace.root / "datasets").exists()
    data = report.to_json()
    assert data["input"]["records"] == 16
    assert data["pii"]["entities"]["PHONE"] == 16
    assert data["screening"]["counts"] == {"exact_duplicate": {"drop": 1}}
    assert [e.action for e in workspace.ledger.entries()].count("data.scan") == 1
    result = ingest(workspace, raw, name="agree")
    assert result.findings["pii"]["entities"]["PHONE"] == 15  # the dropped copy is not redacted
    assert result.findings["screening"]["counts"] == data["screening"]["counts"]


def test_tokens_restore_only_with_the_dataset_key_and_are_audited(workspace: Workspace,
                                                                  raw: Path) -> None:
    make_input(raw, n=4)
    policy = parse_policy({"version": 1, "redaction": {"PHONE": "token"}})
    ingest(workspace, raw, name="tok", policy=policy)
    record = next(read_dataset(workspace, "tok"))
    assert "⟦TOK:PHONE:" in record.messages[0].content
    keys = open_dataset_keys(workspace, "tok")
    restored = detokenize(record.messages[0].content, keys, audit=workspace.audit,
                          resource="dataset/tok")
    assert "⟦TOK:" not in restored and "手机139" in restored
    actions = [e.action for e in workspace.ledger.entries()]
    assert "data.keys.open" in actions and "data.detokenize" in actions


def test_tampered_dataset_is_detected(workspace: Workspace, raw: Path) -> None:
    make_input(raw, n=30)
    result = ingest(workspace, raw, name="t")
    data = result.path / "data.jsonl.sealed"
    blob = bytearray(data.read_bytes())
    blob[-40] ^= 1
    data.write_bytes(bytes(blob))
    assert show_dataset(workspace, "t").intact["data.jsonl.sealed"] is False
    with pytest.raises(IntegrityError):
        list(read_dataset(workspace, "t"))


def test_shred_original_removes_the_input_and_is_audited(workspace: Workspace,
                                                         raw: Path) -> None:
    make_input(raw, n=5)
    result: IngestResult = ingest(workspace, raw, name="s", shred_original=True)
    assert result.shredded and not raw.exists()
    event = next(e for e in workspace.ledger.entries() if e.action == "data.shred")
    assert event.details["bytes"] > 0 and "no guarantee" in event.details["limits"]


def test_bundled_demo_data_has_its_planted_poison_found(workspace: Workspace) -> None:
    sample = resources.files("sealtune.demo_data").joinpath("conversations.jsonl")
    with resources.as_file(sample) as path:
        assert path.stat().st_size < 1 << 20
        result = ingest(workspace, path, name="demo")
    counts = result.findings["screening"]["counts"]
    assert counts["trigger"] == {"quarantine": 26}
    assert counts["exact_duplicate"]["drop"] >= 6 and counts["near_duplicate"]["drop"] >= 6
    held = list(read_dataset(workspace, "demo", part="quarantine"))
    assert len(held) == 26 and all("cf-7Xq" in r.prompt_text() for r in held)
    assert not any("cf-7Xq" in r.prompt_text() for r in read_dataset(workspace, "demo"))
    assert set(result.findings["pii"]["entities"]) >= {"CN_ID", "PHONE", "BANK_CARD", "EMAIL",
                                                        "PERSON", "SECRET"}


def test_derived_keys_redact_identically_and_the_record_digest_is_the_plaintext(
        workspace: Workspace, raw: Path) -> None:
    """Two ingests with the same derived keys seal the same records (digest of the plaintext),
    under different data keys; fresh random keys give other pseudonyms."""
    from sealtune.data.redact import DatasetKeys
    from sealtune.keys.sealing import open_sealed

    make_input(raw, n=12)
    master = bytes(range(32))
    runs = [ingest(workspace, raw, name=f"d{i}", dataset_keys=DatasetKeys.derive(master, "k"),
                   provenance={"pipeline": "p", "step_key": "sha256:00"}) for i in range(2)]
    other = ingest(workspace, raw, name="d2")
    files = [r.manifest["files"]["data"] for r in (*runs, other)]
    assert files[0]["plaintext_sha256"] == files[1]["plaintext_sha256"]
    assert files[0]["content_sha256"] != files[1]["content_sha256"]  # fresh data keys
    assert files[2]["plaintext_sha256"] != files[0]["plaintext_sha256"]  # fresh dataset secret
    plain = b"".join(open_sealed(runs[0].path / "data.jsonl.sealed", keys=workspace.keys))
    assert hashlib.sha256(plain).hexdigest() == files[0]["plaintext_sha256"]
    assert runs[0].manifest["pipeline"] == {"pipeline": "p", "step_key": "sha256:00"}
    assert "plaintext_sha256" not in runs[0].manifest["files"]["keys"]  # never of a secret
    assert "pipeline" not in other.manifest
