"""The fast validator paths give the same answers as the libraries they stand in for.

BANK_CARD inlines the Luhn check and PHONE answers ``+86`` mobile numbers
from its five-digit prefix table instead of a full libphonenumber walk; both
are checked here against python-stdnum and phonenumbers themselves.
"""

from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from phonenumbers import PhoneNumber
from stdnum import luhn

from sealtune.data.pii import analyze
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
