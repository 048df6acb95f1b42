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
people). libphonenumber's CN mobile ranges depend on the first five digits,
so their validity is memoised by prefix; other numbers get libphonenumber's
answer from its patterns compiled into one regex per region and length
(:mod:`._phone_valid`), to keep the tier fast.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneNumber

from sealtune.data.pii._phone_valid import is_fixed_line, is_valid
from sealtune.data.pii._text import Run, has_context, number_runs, pick_non_overlapping
from sealtune.data.pii.base import Entity, register_recognizer

NAME = "phone"
CONTEXT = ("电话", "手机", "号码", "联系", "致电", "拨打", "tel", "phone", "mobile", "call",
           "contact", "whatsapp", "wechat", "微信", "fax", "传真")
# Keep phonenumbers' compiled metadata patterns (a bounded set) instead of
# going through re.compile and re's small module cache on every validation:
# a quarter of the cost of each is_valid_number call.
phonenumbers.enable_pattern_cache()


@lru_cache(maxsize=65536)
def _cn_mobile_prefix_ok(prefix5: str) -> bool:
    # 11-digit CN mobile ranges are decided by the first five digits
    # (deepest range in phonenumbers 9.0: 1740[0-5]; checked on all 10,000
    # five-digit prefixes with random tails), so validity is memoised by them.
    number = PhoneNumber(country_code=86, national_number=int(prefix5 + "000000"))
    return bool(phonenumbers.is_valid_number(number))


def _cn_landline_ok(national: str) -> bool:
    """Valid CN fixed-line number (``national`` without the trunk 0)."""
    # For +86 (one region) number_type() is UNKNOWN unless the number is
    # valid, so "typed fixed line" answers both questions; is_fixed_line gives
    # number_type's answer from one cached regex (see _phone_valid).
    return is_fixed_line(86, str(int(national)))


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
        # is_valid_number's answer from one cached regex (see _phone_valid); str(int())
        # is PhoneNumber's national number (ASCII digits, also for other scripts).
        return is_valid(code, str(int(digits[size:])))
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
    if plus:
        return 0.9 if n >= 8 and _international_ok(digits) else 0.0
    if n < 10 or (n > 13 and not digits.startswith("00")):
        return 0.0  # no national form below has this length (most candidates end here)
    if "-" in raw and _DATE.search(raw):
        return 0.0  # "2024-09-13" inside: a date, not a phone group
    if digits.startswith("00"):
        return 0.85 if _international_ok(digits[2:]) else 0.0
    if n == 11 and digits[0] == "1":
        return 0.85 if _cn_mobile_prefix_ok(digits[:5]) else 0.0
    if n == 13 and digits.startswith("861"):
        return 0.85 if _cn_mobile_prefix_ok(digits[2:7]) else 0.0
    if digits[0] == "0" and n <= 12 and digits[1] not in "04":
        return 0.8 if _cn_landline_ok(digits[1:]) else 0.0
    if n == 10 and digits[0] in "23456789":
        return 0.7 if _nanp_ok(raw, digits) else 0.0
    return 0.0


def _candidates(text: str, run: Run) -> list[tuple[int, int, float]]:
    found: list[tuple[int, int, float]] = []
    first, lead_at = run.first, run.start
    led = lead_at < first  # a "+" or "(" in front belongs to spans starting at the run
    plus = led and (text[lead_at] == "+" or text.startswith("(+", lead_at))
    for start, end, digits in run.spans:
        if len(digits) > 15:
            continue
        lead = led and start == first
        s = lead_at if lead else start
        value = score(text[s:end], digits, plus=lead and plus)
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
        if not found:
            return []
        return [Entity("PHONE", s, e, sc, NAME) for s, e, sc in pick_non_overlapping(found)]


register_recognizer(NAME, PhoneRecognizer, entity_types=PhoneRecognizer.entity_types)
