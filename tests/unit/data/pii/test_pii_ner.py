"""The optional NER tier: same interface, lazy imports, install hint when missing."""

from __future__ import annotations

import pytest

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
