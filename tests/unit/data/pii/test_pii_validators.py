"""The fast validator paths give the same answers as the libraries they stand in for.

BANK_CARD inlines the Luhn check, PHONE answers ``+86`` mobile numbers from
its five-digit prefix table and other numbers from libphonenumber's patterns
compiled per region and length (``_phone_valid``) instead of a full
libphonenumber walk; all are checked here against python-stdnum and
phonenumbers themselves.
"""

from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneNumber, PhoneNumberType
from stdnum import luhn

from sealtune.data.pii import analyze
from sealtune.data.pii._phone_valid import is_fixed_line, is_valid
from sealtune.data.pii.bank_card import luhn_valid
from sealtune.data.pii.phone import _international_ok


@given(st.text(alphabet="0123456789", max_size=24))
def test_luhn_matches_stdnum_on_digit_strings(digits: str) -> None:
    assert luhn_valid(digits) == luhn.is_valid(digits)


@pytest.mark.parametrize("value", ["", "411111111111111X", "٤١١١١١١١١١١١١١١١", "4111 1111"])
def test_luhn_rejects_what_stdnum_rejects(value: str) -> None:
    assert luhn_valid(value) is False
    assert luhn.is_valid(value) is False


def test_plus86_mobile_shortcut_matches_phonenumbers() -> None:
    rng = random.Random(86)
    for prefix in range(10_000):  # every five-digit prefix after the leading 1
        national = f"1{prefix:04d}" + "".join(rng.choice("0123456789") for _ in range(6))
        expected = phonenumbers.is_valid_number(
            PhoneNumber(country_code=86, national_number=int(national)))
        assert _international_ok("86" + national) == expected, national


@pytest.mark.parametrize("text", [
    "电话0212416726X",
    "手机 +44 20 7946 095X",
    "卡号 6222 0202 0000 1234 56X",
    "手机1380013800X",
    "call me at 1300675796x.",
])
def test_runs_ending_in_check_letter_are_not_phones(text: str) -> None:
    # The CN_ID check letter X ends a digit run; it is never part of a phone
    # number (this used to raise ValueError, or report 10 digits + X).
    assert [e for e in analyze(text) if e.type == "PHONE"] == []


def _numbers_to_check(rng: random.Random) -> list[tuple[int, str]]:
    """Example numbers of every type of every region, altered, and random numbers."""
    cases: list[tuple[int, str]] = []
    for code, regions in COUNTRY_CODE_TO_REGION_CODE.items():
        examples = [phonenumbers.example_number_for_non_geo_entity(code)] if regions == ("001",) \
            else [phonenumbers.example_number_for_type(r, t) for r in regions for t in range(11)]
        for example in filter(None, examples):
            national = str(example.national_number)
            digit = rng.choice("0123456789")
            cases += [(code, national), (code, national + digit), (code, national[:-1]),
                      (code, national[:-3] + digit * 3), (code, digit + national[1:])]
        for size in range(4, 15, 2):
            cases.append((code, rng.choice("123456789") + str(rng.randrange(10 ** (size - 1)))))
    return [(code, national.lstrip("0") or "1") for code, national in cases]


def test_fast_phone_validity_matches_phonenumbers() -> None:
    fixed = (PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
    for code, national in _numbers_to_check(random.Random(164)):
        number = PhoneNumber(country_code=code, national_number=int(national))
        assert is_valid(code, national) == phonenumbers.is_valid_number(number), (code, national)
        assert is_fixed_line(code, national) == (phonenumbers.number_type(number) in fixed), \
            (code, national)
