"""The NER tier from the data policy: ``detection: {ner: true}`` reaches scan and ingest.

Names with no cue, title or known given name are found only by the NER
tier; a policy that asks for it gets it in ``data scan`` and ``data ingest``
(through :meth:`Policy.analyzer`, the same construction ``pii detect --ner``
uses), and fails closed when its packages are missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sealtune.cli import main
from sealtune.data.ingest import ingest, scan
from sealtune.data.policy import default_policy, load_policy, parse_policy
from sealtune.data.store import read_dataset
from sealtune.errors import ConfigError
from sealtune.workspace import Workspace

# Names with no cue, title, known given name or surname evidence, and not the subject of
# a person's verb: the pattern tier finds none here (asserted below), the NER tier both.
# (It now finds "Forwarded to Bartholomew Quince" and "昨天胡梅华已经签收了", the former cases.)
NER_ONLY = ("I think Bartholomew Quince liked the blue one.", "包裹昨天给胡梅华送过去了。")


def write_raw(path: Path) -> Path:
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": text},
                                         {"role": "assistant", "content": "OK."}]}
            for i, text in enumerate(NER_ONLY)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def write_policy(path: Path, ner: bool) -> Path:
    path.write_text(f"version: 1\ndetection: {{ner: {str(ner).lower()}}}\n", "utf-8")
    return path


def test_detection_section_parses_and_changes_the_digests() -> None:
    on = parse_policy({"version": 1, "detection": {"ner": True}})
    off = parse_policy({"version": 1, "detection": {"ner": False}})
    assert on.ner and not off.ner and not default_policy().ner
    # Off is the default and leaves the canonical form (and old digests) as they were.
    assert off == default_policy() and off.digest() == default_policy().digest()
    assert "detection" not in off.to_dict() and on.to_dict()["detection"] == {"ner": True}
    assert on.digest() != off.digest()
    redaction = ("keep_fields", "redaction", "recognizers", "detection")
    assert on.digest(sections=redaction) != off.digest(sections=redaction)


def test_policy_analyzer_builds_the_ner_tier_when_asked() -> None:
    on = parse_policy({"version": 1, "detection": {"ner": True}})
    names = {r.name for r in on.analyzer().recognizers}
    assert {"spacy_en", "jieba_zh", "person"} <= names
    assert not {"spacy_en", "jieba_zh"} & {r.name for r in default_policy().analyzer().recognizers}
    assert {"spacy_en", "jieba_zh"} <= {r.name for r in default_policy().analyzer(ner=True)
                                        .recognizers}


def test_missing_ner_package_fails_closed_naming_the_policy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALTUNE_SPACY_MODEL", "no_such_spacy_model_pkg")
    policy = load_policy(write_policy(tmp_path / "policy.yaml", ner=True))
    with pytest.raises(ConfigError) as info:
        policy.analyzer()
    assert info.value.message.startswith(f"{tmp_path / 'policy.yaml'}: detection.ner:")
    assert "pip install" in (info.value.hint or "") and "detection.ner: false" in info.value.hint
    with pytest.raises(ConfigError):  # scan stops before reading anything
        scan(write_raw(tmp_path / "raw.jsonl"), policy=policy)


def _scan_json(home: Path, raw: Path, policy: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    code = main(["data", "scan", str(raw), "--policy", str(policy), "--json", "--home", str(home)])
    out = capsys.readouterr()
    assert code == 0, out.err
    for text in NER_ONLY:  # counts and masked examples only, never the text
        assert "Quince" not in out.out and "胡梅华" not in out.out and text not in out.out
    return json.loads(out.out)


def test_data_scan_with_an_ner_policy_finds_names_only_ner_finds(
        workspace: Workspace, passphrase: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    raw = write_raw(tmp_path / "raw.jsonl")
    pattern = _scan_json(workspace.root, raw, write_policy(tmp_path / "off.yaml", False), capsys)
    assert "PERSON" not in pattern["pii"]["entities"]
    ner = _scan_json(workspace.root, raw, write_policy(tmp_path / "on.yaml", True), capsys)
    assert ner["pii"]["entities"]["PERSON"] == 2
    assert ner["pii"]["records_with_pii"] == 2


def test_data_ingest_with_an_ner_policy_redacts_those_names(workspace: Workspace,
                                                            tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw.jsonl")
    policy = load_policy(write_policy(tmp_path / "on.yaml", True))
    result = ingest(workspace, raw, name="ner", policy=policy)
    assert result.findings["pii"]["entities"]["PERSON"] == 2
    texts = [m.content for r in read_dataset(workspace, "ner") for m in r.messages]
    assert texts and not any("Quince" in t or "胡梅华" in t for t in texts)
