"""Detection errors found on held-out and public data (issue 9), pattern tier.

Each case is the reported string or a variation of it, with hard negatives
next to it: the fixes must not make names fire on every capitalised word or
every Han pair in English text.
"""

from __future__ import annotations

import pytest
from stdnum import luhn

from sealtune.data.pii import analyze
from sealtune.data.pii._latin import LETTERS


def found(text: str, etype: str) -> list[str]:
    return [text[e.start:e.end] for e in analyze(text) if e.type == etype]


def luhn_completed(prefix: str) -> str:
    return prefix + luhn.calc_check_digit(prefix)


# --- a bank card inside +86 <invalid mobile> --------------------------------------

INVALID_MOBILE = luhn_completed("861234567890")[2:]  # 86 + it passes Luhn; no mobile range


@pytest.mark.parametrize("text", [
    f"account phone +86 {INVALID_MOBILE[:3]} {INVALID_MOBILE[3:7]} {INVALID_MOBILE[7:]}",
    f"账号绑定手机+86 {INVALID_MOBILE[:3]} {INVALID_MOBILE[3:7]} {INVALID_MOBILE[7:]}",
    f"card holder mobile: +86{INVALID_MOBILE}",
    f"Account: (+86) {INVALID_MOBILE}",
    f"银行卡预留手机 86 {INVALID_MOBILE[:3]} {INVALID_MOBILE[3:7]} {INVALID_MOBILE[7:]}",
    f"卡号绑定的电话 0086 {INVALID_MOBILE}",
])
def test_invalid_mobile_with_country_code_is_not_a_card(text: str) -> None:
    assert len(INVALID_MOBILE) == 11 and luhn.is_valid("86" + INVALID_MOBILE)
    assert found(text, "BANK_CARD") == []
    assert found(text, "PHONE") == []  # and no valid phone either


@pytest.mark.parametrize(("text", "card"), [
    ("手机银行绑定的卡号4111 1111 1111 1111", "4111 1111 1111 1111"),  # a network card stays
    ("phone on file, card 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("hotel card account " + luhn_completed("9123456789012"), luhn_completed("9123456789012")),
    ("银行卡号码" + luhn_completed("9123456789012"), luhn_completed("9123456789012")),
])
def test_cards_near_phone_words_are_still_cards(text: str, card: str) -> None:
    assert found(text, "BANK_CARD") == [card]


def test_a_valid_mobile_after_plus86_is_a_phone() -> None:
    text = "银行卡预留手机 +86 138 0013 8000"
    assert found(text, "PHONE") == ["+86 138 0013 8000"]
    assert found(text, "BANK_CARD") == []


# --- Latin names: accents, internal capitals, elisions --------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("Contact Dr. Ana Pavlović today", ["Ana Pavlović"]),
    ("Dear Mr. McConnell, thanks", ["McConnell"]),
    ("Dear Mrs. O'Brien,", ["O'Brien"]),
    ("My name is José Álvarez.", ["José Álvarez"]),
    ("Dear Mr. Müller,", ["Müller"]),
    ("My name is Nguyễn Văn An.", ["Nguyễn Văn An"]),
    ("Regards, Zoë Pavlović", ["Zoë Pavlović"]),
    ("Prof. MacDonald-Ross will call", ["MacDonald-Ross"]),
    ("Forwarded to José Álvarez yesterday", ["José Álvarez"]),  # José is Jose
    ("Thanks Emily Carter for calling", ["Emily Carter"]),      # "Thanks Emily" hid it
    ("Spoke with Sean McConnell", ["Sean McConnell"]),
    ("Dear Ms. Dell'Acqua,", ["Dell'Acqua"]),
    ("Name: Łukasz Żółkiewski", ["Łukasz Żółkiewski"]),
])
def test_latin_names_are_whole(text: str, expected: list[str]) -> None:
    assert found(text, "PERSON") == expected


@pytest.mark.parametrize("text", [
    "Dear IBM Support,", "Thanks to iPhone users", "Visit São Paulo today", "The Café Opened",
    "We met at McDonald's", "Dear Customer, the Señor Frog's order", "Mr. Ö",
])
def test_capitalised_words_are_not_names_by_themselves(text: str) -> None:
    assert found(text, "PERSON") == []


@pytest.mark.parametrize("text", [
    "Dear Mr. Pavlović, Mrs. Nguyễn and Dr. McConnell-Smith",
    "Regards, Zoë Müller-Lüdenscheidt",
    "My name is John McDONALD and I am Ms. Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "Name: Élodie D'Angelo, Name: José",
])
def test_no_name_starts_or_ends_inside_a_word(text: str) -> None:
    for e in analyze(text):
        assert e.start == 0 or text[e.start - 1] not in LETTERS, text[e.start:e.end]
        assert e.end == len(text) or text[e.end] not in LETTERS, text[e.start:e.end]


# --- Chinese names: compound surnames, English sentences, 持有人 ---------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("客户上官婉儿来电", ["上官婉儿"]),
    ("联系人：上官云，电话", ["上官云"]),
    ("客户东方悦说", ["东方悦"]),
    ("联系人：欧阳修", ["欧阳修"]),
    ("司马光先生", ["司马光"]),
    ("客户诸葛悦说", ["诸葛悦"]),
    ("诸葛悦先生你好", ["诸葛悦"]),
    ("慕容复的手机号", ["慕容复"]),
    ("申请人：万俟雪", ["万俟雪"]),
    ("Please reset the password for 熊梅", ["熊梅"]),
    ("Please reset the password for 熊梅 today", ["熊梅"]),
    ("Contact 张伟 at the front desk", ["张伟"]),
    ("Ticket from 欧阳娜娜: refund", ["欧阳娜娜"]),
    ("Hi 李娜, your order shipped", ["李娜"]),
    ("持有人：张三", ["张三"]),
    ("持有人张三的卡", ["张三"]),
    ("卡片持有人：李四，请核对", ["李四"]),
    ("收款人王五，账号见附件", ["王五"]),
])
def test_chinese_names_found(text: str, expected: list[str]) -> None:
    assert found(text, "PERSON") == expected


@pytest.mark.parametrize("text", [
    "客户上官网查询进度",         # 上官网: "on the official site"
    "用户东方红卫视的节目",
    "客户西门子冰箱坏了",
    "Ship it to 南京 tomorrow",    # a city, not a name
    "Open from 周一 to 周五",       # weekdays start with the surname 周
    "Send it to 成都市 please",
    "The word 王国 means kingdom",  # no lead word before it
    "for 张伟明天到",               # a longer run: not a lone name
    "客户周一来电",
])
def test_chinese_hard_negatives(text: str) -> None:
    assert found(text, "PERSON") == []
