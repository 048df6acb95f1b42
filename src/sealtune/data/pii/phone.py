"""PHONE: Chinese mobile and landline numbers, and international E.164 numbers.

Catches, when Google's libphonenumber metadata (the ``phonenumbers``
package) says the number is valid:

* Chinese mobiles (``13800138000``, ``138 0013 8000``, ``138-0013-8000``),
  with ``+86``, ``0086`` or ``86`` in front, in full-width digits or glued to
  Chinese text (``手机13800138000``);
* Chinese landlines with the trunk ``0`` and area code (``010-6552 9988``,
  ``(0755) 8601 3388``, ``+86 10 6552 9988``);
* any number written in international form (``+44 20 7946 0958``,
  ``0044 20 7946 0958``);
* North-American numbers without ``+1`` when written in the usual groups
  (``(415) 555-2671``, ``415-555-2671``).

Does not catch: local landline numbers without an area code (``6552 9988``:
too easily an amount or an order number), national numbers of other
countries without their ``+`` prefix, numbers with other separators (dots,
slashes), numbers in words, and 400/800 service numbers (businesses, not
people). libphonenumber's CN mobile ranges depend on the first five digits
and its fixed-line ranges on the first seven, so validity is memoised by
prefix to keep the tier fast.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneNumber, PhoneNumberType

from sealtune.data.pii._text import Run, has_context, number_runs, pick_non_overlapping, sub_runs
from sealtune.data.pii.base import Entity, register_recognizer

NAME = "phone"
CONTEXT = ("电话", "手机", "号码", "联系", "致电", "拨打", "tel", "phone", "mobile", "call",
           "contact", "whatsapp", "wechat", "微信", "fax", "传真")
_FIXED = (PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE)


@lru_cache(maxsize=65536)
def _cn_mobile_prefix_ok(prefix5: str) -> bool:
    # 11-digit CN mobile ranges are decided by the first five digits
    # (deepest range in phonenumbers 9.0: 1740[0-5]; checked on all 10,000
    # five-digit prefixes with random tails), so validity is memoised by them.
    number = PhoneNumber(country_code=86, national_number=int(prefix5 + "000000"))
    return bool(phonenumbers.is_valid_number(number))


_LANDLINE_MEMO: dict[tuple[str, int], bool] = {}


def _cn_landline_ok(national: str) -> bool:
    """Valid CN fixed-line number (``national`` without the trunk 0)."""
    # Memoised by (first seven digits, length): CN fixed-line ranges are
    # decided within the area code and the next four digits (checked against
    # 360,000 numbers with the metadata of phonenumbers 9.0). For +86 (one
    # region) number_type() is UNKNOWN unless the number is valid, so it
    # answers both questions with one metadata walk.
    key = (national[:7], len(national))
    known = _LANDLINE_MEMO.get(key)
    if known is None:
        number = PhoneNumber(country_code=86, national_number=int(national))
        known = phonenumbers.number_type(number) in _FIXED
        if len(_LANDLINE_MEMO) < 200_000:
            _LANDLINE_MEMO[key] = known
    return known


def _international_ok(digits: str) -> bool:
    """Valid as country code + national number (what ``parse("+...")`` does, minus its cost)."""
    if len(digits) == 13 and digits.startswith("861"):
        # +86 mobile: the same prefix table as the national form (same metadata
        # answer, checked on every five-digit prefix), not a full metadata walk.
        return _cn_mobile_prefix_ok(digits[2:7])
    for size in (1, 2, 3):
        code = int(digits[:size])
        if code not in COUNTRY_CODE_TO_REGION_CODE or size >= len(digits):
            continue
        if digits[size] == "0":  # Italian-style leading zero: let the parser decide
            try:
                return bool(phonenumbers.is_valid_number(phonenumbers.parse("+" + digits)))
            except phonenumbers.NumberParseException:
                return False
        number = PhoneNumber(country_code=code, national_number=int(digits[size:]))
        return bool(phonenumbers.is_valid_number(number))
    return False


def _nanp_ok(raw: str, digits: str) -> bool:
    if len(raw) < 12:
        return False
    if not ((raw[0] == "(" and raw[4] == ")") or (raw[3] in " -" and raw[7] in " -")):
        return False
    return _international_ok("1" + digits)


_DATE = re.compile(r"(?:19|20)\d\d[-/ ](?:0?[1-9]|1[0-2])[-/ ](?:0?[1-9]|[12]\d|3[01])(?!\d)")


def score(raw: str, digits: str, *, plus: bool) -> float:
    """Score one candidate: ``raw`` as written, ``digits`` without separators."""
    n = len(digits)
    if not digits.isdigit():
        return 0.0  # a run ending in the CN_ID check letter "X"
    if not plus and "-" in raw and _DATE.search(raw):
        return 0.0  # "2024-09-13" inside: a date, not a phone group
    if plus:
        return 0.9 if n >= 8 and _international_ok(digits) else 0.0
    if digits.startswith("00") and n >= 10:
        return 0.85 if _international_ok(digits[2:]) else 0.0
    if n == 11 and digits[0] == "1":
        return 0.85 if _cn_mobile_prefix_ok(digits[:5]) else 0.0
    if n == 13 and digits.startswith("861"):
        return 0.85 if _cn_mobile_prefix_ok(digits[2:7]) else 0.0
    if digits[0] == "0" and 10 <= n <= 12 and digits[1] not in "04":
        return 0.8 if _cn_landline_ok(digits[1:]) else 0.0
    if n == 10 and digits[0] in "23456789":
        return 0.7 if _nanp_ok(raw, digits) else 0.0
    return 0.0


def _candidates(text: str, run: Run) -> list[tuple[int, int, float]]:
    found: list[tuple[int, int, float]] = []
    first = run.first
    for start, end, digits in sub_runs(run, min_digits=7, max_digits=15):
        lead = start == first and run.start < first
        s = run.start if lead else start
        plus = lead and (text[run.start] == "+" or text.startswith("(+", run.start))
        value = score(text[s:end], digits, plus=plus)
        if value:
            if has_context(text, s, end, CONTEXT):
                value = round(min(1.0, value + 0.05), 4)
            found.append((s, end, value))
    return found


class PhoneRecognizer:
    """Recognizer for ``PHONE`` (see the module docstring)."""

    name = NAME
    entity_types = frozenset({"PHONE"})

    def analyze(self, text: str) -> list[Entity]:
        found: list[tuple[int, int, float]] = []
        for run in number_runs(text):
            if len(run.digits) <= 40:
                found.extend(_candidates(text, run))
        return [Entity("PHONE", s, e, sc, NAME) for s, e, sc in pick_non_overlapping(found)]


register_recognizer(NAME, PhoneRecognizer, entity_types=PhoneRecognizer.entity_types)
