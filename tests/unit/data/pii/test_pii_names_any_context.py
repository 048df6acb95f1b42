"""Issue 14: Chinese names outside cue contexts, 12-digit Maestro cards (pattern tier).

One case per failure class, with hard negatives beside it: compound surnames
that are everyday words, lists that are not of people, dotted names that
must not swallow the cue before or the verb after.
"""

from __future__ import annotations

import pytest
from stdnum import luhn

from sealtune.data.pii import analyze


def found(text: str, etype: str = "PERSON") -> list[str]:
    return [text[e.start:e.end] for e in analyze(text) if e.type == etype]


@pytest.mark.parametrize(("text", "names"), [
    ("请联系欧阳娜娜确认。", ["欧阳娜娜"]),            # distinctive compound surname, no cue
    ("这件事上官婉儿已经知道了", ["上官婉儿"]),
    ("诸葛亮和司马懿", ["诸葛亮", "司马懿"]),
    ("客户买买提·阿凡提来电咨询。", ["买买提·阿凡提"]),  # minority name: cue and verb stay out
    ("迪丽热巴·迪力木拉提是演员", ["迪丽热巴·迪力木拉提"]),
    ("参会人员：王芳、李强、赵磊。", ["王芳", "李强", "赵磊"]),  # a labelled list
    ("谢谢，\n刘洋\n客服部", ["刘洋"]),                   # a signature line
    ("此致敬礼\n—— 陈静", ["陈静"]),
])
def test_names_in_shape_contexts(text: str, names: list[str]) -> None:
    assert found(text) == names


@pytest.mark.parametrize("text", [
    "欢迎访问上官网了解详情",          # 上官网: "the official site"
    "东方文化博大精深",                # 东方 is a compound surname and an everyday word
    "颜色：白色、黄色。",              # a list, but not of people and without a people label
    "参会人员：王芳、市场部、财务部。",  # a people label, but not every item is a name
    "谢谢，\n客服部\n",                # a line after a sign-off that is no name
])
def test_shapes_do_not_fire_without_a_name(text: str) -> None:
    assert found(text) == []


def maestro12(prefix: str) -> str:
    return prefix + luhn.calc_check_digit(prefix)


def test_twelve_digit_maestro_in_card_context() -> None:
    card = maestro12("67596498264")
    assert len(card) == 12 and luhn.is_valid(card)
    spaced = f"{card[:4]} {card[4:8]} {card[8:]}"
    assert found(f"my debit card {card}", "BANK_CARD") == [card]
    assert found(f"卡号{card}", "BANK_CARD") == [card]
    assert found(f"Card {spaced} is a Maestro", "BANK_CARD") == [spaced]
    # No card word, or no Maestro IIN, or a bad check digit: an order number, not a card.
    assert found(f"order {card} shipped", "BANK_CARD") == []
    other = maestro12("12345678901")
    assert found(f"my debit card {other}", "BANK_CARD") == []
    bad = card[:-1] + str((int(card[-1]) + 1) % 10)
    assert found(f"my debit card {bad}", "BANK_CARD") == []


@pytest.mark.parametrize(("text", "names"), [
    ("后来黄远洋没有回复。", ["黄远洋"]),           # a clause-initial subject, after a time word
    ("客服：左诺福已经签收了。", ["左诺福"]),         # after a speaker label
    ("昨天段娜又打来一次。", ["段娜"]),               # two characters: the time word stays out
    ("联系人：曹思辉说请尽快处理", ["曹思辉"]),        # after a field label, before 说
    ("麻烦核实一下。严桐艳来电咨询", ["严桐艳"]),
])
def test_clause_subject_before_a_person_predicate(text: str, names: list[str]) -> None:
    assert found(text) == names


@pytest.mark.parametrize("text", [
    "我们已经签收了。",        # a pronoun, no surname
    "快递已经签收了。",        # an everyday noun
    "包裹没有回复",            # 包裹 is a common word that starts with a surname
    "这个问题申请人没有回复",  # not at a clause start
])
def test_clause_subject_needs_a_name_at_the_clause_start(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(("text", "names"), [
    ("Approved by Wren Oyelaran.", ["Wren Oyelaran"]),  # no list knows either word
    ("Spoke with Ezra Whitfield, then closed it.", ["Ezra Whitfield"]),
    ("Forwarded to Siobhan Lindqvist.", ["Siobhan Lindqvist"]),
])
def test_unknown_names_after_a_handling_verb(text: str, names: list[str]) -> None:
    assert found(text) == names


def test_handling_verb_without_a_person_finds_none() -> None:
    assert found("Forwarded to the team.") == []
    assert found("Approved by Customer Service.") == []
