"""The optional NER tier: same interface, lazy imports, install hint when missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sealtune.cli import main
from sealtune.data.pii import Analyzer
from sealtune.data.pii.ner import JiebaPersonRecognizer, SpacyPersonRecognizer
from sealtune.errors import ConfigError


def test_missing_model_is_an_error_with_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALTUNE_SPACY_MODEL", "no_such_spacy_model_pkg")
    with pytest.raises(ConfigError) as info:
        SpacyPersonRecognizer()
    assert "pip install" in (info.value.hint or "")


def test_jieba_finds_chinese_names_without_cues() -> None:
    rec = JiebaPersonRecognizer()
    text = "昨天胡梅华已经签收了，谢谢，明白了。"
    assert [text[e.start:e.end] for e in rec.analyze(text)] == ["胡梅华"]  # not 谢谢 / 明白


def test_spacy_finds_english_names_without_cues() -> None:
    rec = SpacyPersonRecognizer()
    text = "Forwarded to Olivia Kowalczyk yesterday."
    assert [text[e.start:e.end] for e in rec.analyze(text)] == ["Olivia Kowalczyk"]


def test_analyzer_with_ner_tier_merges_tiers() -> None:
    analyzer = Analyzer(ner=True)
    assert {"spacy_en", "jieba_zh"} <= {r.name for r in analyzer.recognizers}
    text = "客户张伟说胡梅华已经签收，手机13800138000"
    got = [(e.type, text[e.start:e.end]) for e in analyzer.analyze(text)]
    assert got == [("PERSON", "张伟"), ("PERSON", "胡梅华"), ("PHONE", "13800138000")]


@pytest.mark.parametrize(("text", "expected"), [
    ("诸葛悦已经签收了", ["诸葛悦"]),          # jieba: 诸葛/nr 悦/nz
    ("昨天诸葛悦已经签收了", ["诸葛悦"]),
    ("欧阳娜娜说好的", ["欧阳娜娜"]),          # jieba: 欧阳/ns 娜娜/nrt
    ("张三的卡丢了", ["张三"]),                # jieba: 张三/nrfg
    ("password for 熊梅", ["熊梅"]),
    ("欧阳路88号", []),                        # a road, not a name
    ("司马说好的", []),                        # a surname and a verb
])
def test_jieba_joins_split_compound_surnames(text: str, expected: list[str]) -> None:
    rec = JiebaPersonRecognizer()
    assert [text[e.start:e.end] for e in rec.analyze(text)] == expected


def test_spacy_keeps_names_with_accented_letters() -> None:
    rec = SpacyPersonRecognizer()
    text = "Forwarded to Zoë Müller yesterday."
    assert [text[e.start:e.end] for e in rec.analyze(text)] == ["Zoë Müller"]


def test_pii_detect_ner_reports_the_whole_compound_name(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "诸葛悦已经签收了"}, ensure_ascii=False) + "\n", "utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["pii", "detect", str(src), "--out", str(out), "--ner"]) == 0
    row = json.loads(out.read_text("utf-8"))
    assert [(e["type"], e["start"], e["end"]) for e in row["entities"]] == [("PERSON", 0, 3)]
