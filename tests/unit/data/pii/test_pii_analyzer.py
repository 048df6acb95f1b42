"""The facade: Analyzer, analyze(), type filters, overlaps, registry, custom recognizers."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealtune.data.pii import (
    ENTITY_TYPES,
    RECOGNIZERS,
    Analyzer,
    Entity,
    PatternRecognizer,
    Recognizer,
    analyze,
    register_recognizer,
    register_validator,
)
from sealtune.errors import ConfigError, UsageError

TEXT = "客户张伟，手机13800138000，邮箱zhang@example.com，身份证11010519491231002X"


def test_analyze_finds_every_type_in_order() -> None:
    types = [e.type for e in analyze(TEXT)]
    assert types == ["PERSON", "PHONE", "EMAIL", "CN_ID"]


def test_type_filter_and_unknown_types() -> None:
    assert [e.type for e in analyze(TEXT, types={"PHONE"})] == ["PHONE"]
    with pytest.raises(UsageError, match="FOO"):
        analyze(TEXT, types={"FOO"})
    only = Analyzer(types=["EMAIL"])
    assert [e.type for e in only.analyze(TEXT)] == ["EMAIL"]


def test_entities_do_not_overlap_and_the_best_wins() -> None:
    # 18 digits that are a valid ID and also pass Luhn with a UnionPay-like prefix.
    for e1, e2 in pairwise(analyze(TEXT)):
        assert e1.end <= e2.start


def test_builtin_recognizers_satisfy_the_protocol() -> None:
    analyzer = Analyzer()
    assert {spec.tier for spec in RECOGNIZERS.values()} >= {"pattern"}
    assert all(isinstance(r, Recognizer) for r in analyzer.recognizers)
    assert set(ENTITY_TYPES) <= analyzer.known_types


def test_registry_refuses_duplicates() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_recognizer("phone", lambda: Analyzer().recognizers[0], entity_types={"PHONE"})
    with pytest.raises(ValueError, match="already registered"):
        register_validator("luhn", lambda v: True)


class Hashtag:
    """A recognizer written in Python against the Protocol."""

    name = "hashtag"
    entity_types = frozenset({"HASHTAG"})

    def analyze(self, text: str) -> list[Entity]:
        i = text.find("#secret")
        return [] if i < 0 else [Entity("HASHTAG", i, i + 7, 0.9, self.name)]


def test_python_recognizer_through_the_interface_sees_normalised_text() -> None:
    analyzer = Analyzer(extra=[Hashtag()])
    text = "全角＃ｓｅｃｒｅｔ here"
    [entity] = analyzer.analyze(text, types={"HASHTAG"})
    assert text[entity.start:entity.end] == "＃ｓｅｃｒｅｔ"


POLICY = {
    "pii": {
        "recognizers": [
            {"name": "employee_id", "type": "EMPLOYEE_ID", "pattern": r"EMP-\d{6}",
             "context": ["工号", "employee"], "score": 0.7},
            {"name": "card_ref", "type": "CARD_REF", "pattern": r"R-(\d{16})", "group": 1,
             "validator": "luhn", "context": ["refund"], "context_required": True},
            {"name": "de_tax", "type": "DE_TAX_ID", "pattern": r"\b\d{11}\b",
             "validator": "stdnum:de.idnr"},
        ],
    },
}


def test_custom_recognizers_from_policy_data() -> None:
    analyzer = Analyzer.from_policy(POLICY, source="policy.toml")
    text = "工号EMP-123456, refund R-4111111111111111, bad R-4111111111111112, id 36574261809"
    got = {(e.type, text[e.start:e.end], e.score) for e in analyzer.analyze(text)
           if e.type in {"EMPLOYEE_ID", "CARD_REF", "DE_TAX_ID"}}
    assert got == {("EMPLOYEE_ID", "EMP-123456", 0.8), ("CARD_REF", "4111111111111111", 0.9),
                   ("DE_TAX_ID", "36574261809", 0.8)}
    # context_required: without "refund" nearby the pattern is not reported
    assert analyzer.analyze("R-4111111111111111", types={"CARD_REF"}) == []


@pytest.mark.parametrize(("recognizer", "field"), [
    ({"name": "x", "type": "X_ID", "pattern": "("}, "pattern"),
    ({"name": "x", "type": "lower", "pattern": "a"}, "type"),
    ({"name": "X!", "type": "X_ID", "pattern": "a"}, "name"),
    ({"name": "x", "type": "X_ID", "pattern": "a", "validator": "nope"}, "validator"),
    ({"name": "x", "type": "X_ID", "pattern": "a", "score": 2}, "score"),
    ({"name": "x", "type": "X_ID", "pattern": "a", "group": 1}, "group"),
    ({"name": "x", "type": "X_ID", "pattern": "a", "context_required": True}, "context_required"),
    ({"name": "x", "type": "X_ID", "pattern": "a", "colour": "red"}, "unknown keys"),
    ({"type": "X_ID", "pattern": "a"}, "name"),
])
def test_policy_mistakes_fail_closed_naming_the_field(recognizer: dict[str, object],
                                                      field: str) -> None:
    with pytest.raises(ConfigError, match=field) as info:
        Analyzer.from_policy({"pii": {"recognizers": [recognizer]}}, source="p.toml")
    assert "p.toml" in str(info.value)


def test_policy_section_is_checked() -> None:
    with pytest.raises(ConfigError, match="unknown keys"):
        Analyzer.from_policy({"pii": {"typo": 1}}, source="p.toml")
    with pytest.raises(ConfigError, match="already used"):
        Analyzer.from_policy({"pii": {"recognizers": [
            {"name": "phone", "type": "X_ID", "pattern": "a"}]}}, source="p.toml")
    with pytest.raises(ConfigError, match=r"pii\.types"):
        Analyzer.from_policy({"pii": {"types": ["NOPE"]}}, source="p.toml")
    analyzer = Analyzer.from_policy({"pii": {"types": ["EMAIL"], "min_score": 0.5}})
    assert [e.type for e in analyzer.analyze(TEXT)] == ["EMAIL"]


def test_pattern_recognizer_is_usable_directly() -> None:
    rec = PatternRecognizer.from_mapping(
        {"name": "ticket", "type": "TICKET", "pattern": r"TCK-\d+"}, where="test")
    assert [(e.type, e.start, e.end) for e in rec.analyze("see TCK-42")] == [("TICKET", 4, 10)]


_ALPHABET = list("0123456789 -+()@.:_xX密码身份证卡号张伟先生路号ａ１２３　，。abcAKIAghp\n")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(_ALPHABET), max_size=120))
def test_any_text_gives_valid_non_overlapping_spans(text: str) -> None:
    entities = analyze(text)
    for entity in entities:
        assert 0 <= entity.start < entity.end <= len(text)
        assert entity.type in ENTITY_TYPES and 0 < entity.score <= 1
    for a, b in pairwise(entities):
        assert a.end <= b.start
