"""CN_ID: Chinese resident identity card numbers (GB 11643-1999).

Catches the 18-character number (17 digits and a check digit ``0-9``/``X``)
when the GB 11643 check digit, the birth date and the province code are all
valid, written together, split by spaces or dashes (``110105 19491231
002X``), in full-width digits, or glued to Chinese text. The check digit and
birth date come from python-stdnum (``stdnum.cn.ric``); a county code known
to stdnum's register raises the score but is not required (newer codes).

Also catches the legacy 15-digit number (before 1999: no check digit, a
two-digit year), but only next to a context word such as 身份证 or "ID
card": without a check digit a 15-digit order number is too often a valid
date by chance.

Does not catch: numbers with a wrong check digit (by design: an 18-digit
order number is not a CN_ID), numbers spelled in Chinese numerals, residence
permits of other countries' formats, or a number whose digits are split
inside by other characters (``1101-05/1949...``).
"""

from __future__ import annotations

import datetime
from functools import lru_cache

from stdnum import numdb
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from sealtune.data.pii._text import has_context, number_runs, pick_non_overlapping
from sealtune.data.pii.base import Entity, register_recognizer

NAME = "cn_id"
_PROVINCES = frozenset(
    [
        "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
        "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
        "65", "71", "81", "82", "83",
    ]
)
_LOC = numdb.get("cn/loc")
_THIS_YEAR = datetime.date.today().year
CONTEXT = ("身份证", "证件", "身份号", "公民身份", "id card", "id no", "id number",
           "identity", "resident id", "national id", "idcard")


def _valid_date(year: int, month: int, day: int) -> bool:
    if not 1900 <= year <= _THIS_YEAR:
        return False
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    return True


def score_18(number: str) -> float:
    """Score an 18-char candidate: 0 if invalid, else 0.9 (0.95 if the county is known)."""
    if number[:2] not in _PROVINCES or not number[:17].isdigit():
        return 0.0
    if ric.calc_check_digit(number) != number[17].upper():
        return 0.0
    if not _valid_date(int(number[6:10]), int(number[10:12]), int(number[12:14])):
        return 0.0
    return 0.95 if county_known(number[:6]) else 0.9


@lru_cache(maxsize=8192)
def county_known(code: str) -> bool:
    """True if stdnum's register of county codes (any year) knows ``code``."""
    try:
        info = dict(kv for _, props in _LOC.info(code) for kv in props.items())
    except (ValidationError, KeyError):
        return False
    return "county" in info


def valid_15(number: str) -> bool:
    """Legacy 15-digit form: province code and a valid 19YYMMDD birth date."""
    return (number.isdigit() and number[:2] in _PROVINCES
            and _valid_date(1900 + int(number[6:8]), int(number[8:10]), int(number[10:12])))


class CnIdRecognizer:
    """Recognizer for ``CN_ID`` (see the module docstring)."""

    name = NAME
    entity_types = frozenset({"CN_ID"})

    def analyze(self, text: str) -> list[Entity]:
        found: list[tuple[int, int, float]] = []
        for run in number_runs(text):
            if not 15 <= len(run.digits) <= 54:
                continue
            for start, end, digits in run.spans:
                if len(digits) == 18:
                    score = score_18(digits)
                    context = score > 0 and has_context(text, start, end, CONTEXT)
                elif len(digits) == 15 and valid_15(digits):
                    context = has_context(text, start, end, CONTEXT)
                    score = 0.85 if context else 0.0
                else:
                    continue
                if score:
                    if score < 1.0 and context:
                        score = round(min(1.0, score + 0.04), 4)
                    found.append((start, end, score))
        if not found:
            return []
        return [Entity("CN_ID", s, e, sc, NAME) for s, e, sc in pick_non_overlapping(found)]


register_recognizer(NAME, CnIdRecognizer, entity_types=CnIdRecognizer.entity_types)
