"""CN_ID, BANK_CARD and PHONE: validators, separated and full-width forms, hard negatives.

Offsets are always checked against the ORIGINAL text the caller passed.
"""

from __future__ import annotations

import pytest
from stdnum import luhn
from stdnum.cn import ric

from sealtune.data.pii import analyze

FW = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)} | {" ": "\u3000"})
VALID_ID = "11010519491231002X"  # the GB 11643 worked example
VALID_CARD = "6222020000001234"[:-1] + luhn.calc_check_digit("6222020000001234"[:-1])


def found(text: str, etype: str) -> list[str]:
    return [text[e.start:e.end] for e in analyze(text) if e.type == etype]


def test_fixtures_are_what_they_claim() -> None:
    assert ric.is_valid(VALID_ID)
    assert luhn.is_valid(VALID_CARD)


# --- CN_ID -----------------------------------------------------------------

@pytest.mark.parametrize("written", [
    VALID_ID,
    VALID_ID.lower(),
    "110105 19491231 002X",
    "110105-19491231-002X",
    VALID_ID.translate(FW),
    "110105 19491231 002X".translate(FW),
])
def test_cn_id_forms(written: str) -> None:
    text = f"客户身份证号{written}，请核对"
    assert found(text, "CN_ID") == [written]


def test_cn_id_glued_to_chinese_and_english() -> None:
    text = f"证件{VALID_ID}已登记 ID:{VALID_ID}."
    assert found(text, "CN_ID") == [VALID_ID, VALID_ID]


@pytest.mark.parametrize("text", [
    "订单号110105194912310021",          # wrong check digit
    "身份证号110105194912310021",        # wrong check digit even with context
    "流水 202312011234567890",            # order number: no valid date/province
    "时间戳20231201123045",
    "1101051949123100212",                # 19 digits: not an 18-char ID inside
    "A11010519491231002X",                # glued to a Latin letter
])
def test_cn_id_hard_negatives(text: str) -> None:
    assert found(text, "CN_ID") == []


def test_cn_id_legacy_15_digits_needs_context() -> None:
    legacy = "110105491231002"
    assert found(f"身份证（旧）{legacy}", "CN_ID") == [legacy]
    assert found(f"批次号{legacy}", "CN_ID") == []


# --- BANK_CARD ---------------------------------------------------------------

@pytest.mark.parametrize("written", [
    VALID_CARD,
    " ".join(VALID_CARD[i:i + 4] for i in range(0, 16, 4)),
    "-".join(VALID_CARD[i:i + 4] for i in range(0, 16, 4)),
    VALID_CARD.translate(FW),
    "4111 1111 1111 1111",
    "3782 822463 10005",  # Amex 4-6-5
])
def test_bank_card_forms(written: str) -> None:
    text = f"退款到银行卡{written}谢谢"
    assert found(text, "BANK_CARD") == [written]


def test_bank_card_luhn_failure_is_not_a_card() -> None:
    bad = VALID_CARD[:-1] + str((int(VALID_CARD[-1]) + 1) % 10)
    assert not luhn.is_valid(bad)
    assert found(f"卡号 {bad}", "BANK_CARD") == []
    assert found("card 4111 1111 1111 1112", "BANK_CARD") == []


def test_bank_card_unknown_prefix_needs_context() -> None:
    number = "9" + "1234567890123"
    number += luhn.calc_check_digit(number)
    assert found(f"卡号{number}", "BANK_CARD") == [number]
    assert found(f"编号{number}", "BANK_CARD") == []


def test_bank_card_in_order_context_is_vetoed() -> None:
    assert found(f"订单号{VALID_CARD}", "BANK_CARD") == []


def test_bank_card_followed_by_cvv_group() -> None:
    text = "card 4111 1111 1111 1111 123 exp"
    assert found(text, "BANK_CARD") == ["4111 1111 1111 1111"]


# --- PHONE -------------------------------------------------------------------

@pytest.mark.parametrize("written", [
    "13800138000", "138 0013 8000", "138-0013-8000", "+86 138 0013 8000", "+8613800138000",
    "0086 13800138000", "(+86)13800138000", "１３８００１３８０００", "１３８　００１３　８０００",
    "010-65529988", "(010) 6552 9988", "+86 10 6552 9988", "0755-86013388",
    "+44 20 7946 0958", "+1 415-555-2671", "(415) 555-2671", "+39 06 6982 1234",
])
def test_phone_forms(written: str) -> None:
    text = f"请致电{written}，谢谢"
    assert found(text, "PHONE") == [written]


def test_phone_glued_in_mixed_text() -> None:
    text = "我的手机13800138000谢谢, call me at+44 20 7946 0958 please"
    assert found(text, "PHONE") == ["13800138000", "+44 20 7946 0958"]


@pytest.mark.parametrize("text", [
    "客服热线10086",
    "测试号码12345678901",          # no such mobile prefix
    "单号 20231201123045",
    "version 2.3.4 build 1234567",
    "金额 1380013800.00 元",
    "SKU A13800138000",             # glued to a Latin letter
    "来源地址3.104.35.131 2024-09-13 12:22:30",  # IP tail + date is not 131 2024 0913
    "ISBN 978-0-968-00427-0 2024-08-17 13:19",
    "金额1380013800.50元",
])
def test_phone_hard_negatives(text: str) -> None:
    assert found(text, "PHONE") == []


def test_phone_trailing_group_is_dropped() -> None:
    text = "call 138 0013 8000 2 times"
    assert found(text, "PHONE") == ["138 0013 8000"]


def test_offsets_index_the_original_full_width_text() -> None:
    text = "电话：１３８ ００１３ ８０００，卡号" + VALID_CARD.translate(FW)
    entities = analyze(text)
    assert [(e.type, text[e.start:e.end]) for e in entities] == [
        ("PHONE", "１３８ ００１３ ８０００"), ("BANK_CARD", VALID_CARD.translate(FW))]
