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
  (``(415) 555-2671``, ``415-555-2671``, ``415.555.2671``);
* numbers as people write them (:func:`_written`): dotted groups
  (``030.1234.5678``, ``+1.415.555.0100``, ``138.0013.8000``), a bracketed
  trunk zero or area code (``+44 (0)20 7946 0958``, ``(0)30 1234 5678``),
  with an extension kept in the span (``x123``, ``ext. 45``, ``#12``); and
  national numbers of other countries in groups: with a trunk ``0``, valid
  in any region when a phone word is near (``Mobile: 0490 39 07 81``) or in
  a major European one when dotted or bracketed; without one, only where
  that is the national habit (Spain, the Nordics, Poland ...) and a phone
  word is near;
* labelled phone fields (:func:`_labelled`): after a label (``Mobile: ``,
  ``Fax: ``, ``Phone:`` with the number on the next line) or on a line that
  holds only the number and ``office``/``fax``/``mobile``/``cell``: any
  phone-shaped number of 7 to 15 digits (the label says what it is, so
  libphonenumber's ranges are not asked), except Chinese numbers, which
  the rules above decide by their exact ranges.

Does not catch: local landline numbers without an area code (``6552 9988``:
too easily an amount or an order number) and without a label, national
numbers of other countries with no phone word near and no dots or
brackets, numbers with slashes, numbers in words, and 400/800 service
numbers (businesses, not people). A phone word on the line before
(``Phone:\n...``) is not near, except as a field label (above).
libphonenumber's CN mobile ranges depend on the first five digits,
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
from sealtune.data.pii._text import (
    Run,
    has_context,
    keyword_hits,
    number_runs,
    pick_non_overlapping,
    register_keywords,
)
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
        if lead and text[lead_at] == "(" and text.find(")", lead_at, end) == -1:
            # "(13800138000)", "(+86-138-0013-8000)": the bracket is punctuation
            s = lead_at + 1 if text.startswith("(+", lead_at) else first
        value = score(text[s:end], digits, plus=lead and plus)
        if value:
            if has_context(text, s, end, CONTEXT):
                value = round(min(1.0, value + 0.05), 4)
            found.append((s, end, value))
    return found


# Numbers as people write them beyond the digit runs above: dotted groups
# (``030.1234.5678``, ``+1.415.555.0100``), a bracketed trunk zero or area
# code (``+44 (0)20 7946 0958``, ``(0)30 1234 5678``, ``(602)272-9781``) and
# an extension (``x123``, ``ext. 45``, ``#12``), which belongs to the span.
# Every quantifier is bounded, so each start costs a bounded number of steps.
_WRITTEN = re.compile(
    r"\d[\d .\-()]{5,24}\d(?:[ ]?(?:x|ext\.?|#|extension)[ ]?\d{1,5})?"
)
# Gates (each starts with a literal, so re scans fast): two dotted groups of
# two or more digits (not most IP addresses, amounts and versions), an
# extension marker before a digit.
_DOT_DIGIT = re.compile(r"\.\d{2,5}\.\d\d")
_EXT_GATE = re.compile(r"[x#] ?\d")
_EXTENSION = re.compile(r"[ ]?(?:x|ext\.?|#|extension)[ ]?\d{1,5}$")
_GROUPS = re.compile(r"\d+")
_DIGIT = re.compile(r"\d")
_SSN_LIKE = re.compile(r"\d{3}-\d{2}-\d{4}")  # a US social security number's shape
_IP_LIKE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_DOTTED_DATE = re.compile(r"(?:19|20)\d\d\.\d\d?\.\d\d?(?!\d)|\d\d?\.\d\d?\.(?:19|20)\d\d")
# Calling codes of the regions whose national numbers start with a trunk 0
# (Europe, Oceania, much of Asia, Africa and South America): a national
# number is tried against each, its validity decided by libphonenumber. (Not
# every calling code: one regex per code and length is compiled on first use.)
_TRUNK_ZERO = (
    44, 49, 33, 39, 31, 32, 41, 43, 30, 36, 40, 46, 47, 48, 351, 353, 354, 358, 359, 370, 371,
    372, 373, 375, 380, 381, 385, 386, 387, 389, 61, 64, 27, 234, 254, 20, 212, 216, 90, 972,
    971, 966, 98, 92, 91, 880, 94, 62, 63, 66, 84, 60, 81, 82, 886, 55, 54, 51, 57, 58, 7,
)
WORDS_NEAR = (*CONTEXT, "desk", "office", "cell", "messages to", "answering at", "reach me",
              "tel.")


# Regions whose national numbers are written without a trunk 0 (Spain,
# Denmark, Norway, Portugal, Poland, Czechia, Greece, Luxembourg, Italian mobiles).
_NO_TRUNK = (34, 45, 47, 351, 48, 420, 30, 352, 39)
_MAJOR = (33, 49, 44, 39, 34, 31, 32, 41, 43)


@lru_cache(maxsize=4096)
def _national_ok(digits: str, *, anywhere: bool) -> bool:
    """Valid as a national number: after a trunk 0 in some region (any that uses a
    trunk 0 when ``anywhere``, else a major European one), or without one where usual."""
    if digits.startswith("0"):
        rest = digits[1:]
        codes = _TRUNK_ZERO if anywhere else _MAJOR
    else:
        if not anywhere or digits.startswith(("86", "1")):
            return False  # CN numbers are decided by the runs above
        rest, codes = digits, _NO_TRUNK
    if not rest or rest[0] == "0":
        return False
    return any(is_valid(code, rest) for code in codes)


def _written_score(text: str, start: int, end: int) -> float:
    raw = text[start:end]
    ext = _EXTENSION.search(raw)
    body = raw[:ext.start()] if ext else raw
    if _DOTTED_DATE.search(body) or _IP_LIKE.fullmatch(body) or _SSN_LIKE.fullmatch(body) or \
            ("-" in body and _DATE.search(body)):
        return 0.0  # a date, an IP address
    if "." in body and any(len(g) < 2 for g in _GROUPS.findall(body)[1:]):
        return 0.0  # 1.3.6.1.4.1.96604: an OID or a version, not phone groups
    digits = "".join(c for c in body.replace("(0)", "") if c.isdigit())
    if not 7 <= len(digits) <= 15 or body.count("(") != body.count(")"):
        return 0.0
    near = has_context(text, start, end, WORDS_NEAR)
    bonus = 0.05 if near else 0.0
    if body.startswith(("+", "(+")):
        return 0.9 + bonus if len(digits) >= 8 and _international_ok(digits) else 0.0
    if digits.startswith("00"):
        return 0.85 + bonus if _international_ok(digits[2:]) else 0.0
    separated = any(c in body for c in " .-()")
    if len(digits) == 11 and digits[0] == "1" and separated:
        return 0.85 + bonus if _cn_mobile_prefix_ok(digits[:5]) else 0.0  # 138.0013.8000
    if len(digits) == 10 and digits[0] in "23456789" and separated and \
            _international_ok("1" + digits):
        return 0.75 if near else 0.7
    groups = len(_GROUPS.findall(body))
    if separated and (near or (groups >= 3 and ("." in body or "(0)" in body))) and \
            _national_ok(digits, anywhere=near):
        return 0.7 if near else 0.6
    return 0.0


def _written(text: str) -> list[tuple[int, int, float]]:
    """Candidates of :data:`_WRITTEN` shape (see above), validated by libphonenumber."""
    found: list[tuple[int, int, float]] = []
    if "(0)" not in text and "ext" not in text and _DOT_DIGIT.search(text) is None and \
            _EXT_GATE.search(text) is None:
        return found  # no dot before a digit, no (0), no extension: the runs decide alone
    for m in _WRITTEN.finditer(text):
        start, end = m.span()
        if start and text[start - 1] in "+(":  # a "+", "(+" or "(" in front belongs to it
            start -= 2 if text[max(0, start - 2):start] == "(+" else 1
        raw = text[start:end]
        if "." not in raw and "(0)" not in raw and (
                ("x" not in raw and "#" not in raw and "e" not in raw) or
                _EXTENSION.search(raw) is None):
            continue  # the digit runs above decide it
        if (start and (text[start - 1].isalnum() or text[start - 1] in "+.")) or \
                (end < len(text) and (text[end].isalnum() or
                                      (text[end] == "." and text[end + 1:end + 2].isdigit()))):
            continue
        if text[start] == "(" and text[start + 1:start + 2] != "+" and \
                text.find(")", start, start + 7) == -1:
            start += 1  # "(13800138000)": the bracket is punctuation
        value = _written_score(text, start, end)
        if value:
            found.append((start, end, value))
    return found


def _national(text: str, run: Run) -> list[tuple[int, int, float]]:
    """A whole grouped run that no rule above took, as a national number near a phone word."""
    if text[run.first:run.end].isdigit() or not 7 <= len(run.digits) <= 15 or \
            not run.digits.isdigit():
        return []  # one unseparated group: an order number as easily as a phone
    start = run.start if text[run.start] != "(" or text.find(")", run.start, run.end) != -1 \
        else run.first
    if not has_context(text, start, run.end, WORDS_NEAR):
        return []
    raw = text[start:run.end]
    if _SSN_LIKE.fullmatch(raw) or _DATE.search(raw):
        return []
    return [(start, run.end, 0.7)] if _national_ok(run.digits, anywhere=True) else []


# A labelled phone field: a phone label before the number ("Mobile: ",
# "Phone:" and the number on the next line) or after it, the line holding
# only the two ("416 60 039 office"). The label says what the number is, so
# any phone-shaped number of 7 to 15 digits is taken (libphonenumber's ranges
# are not asked: a field may hold a number they do not list).
PHONE_LABELS = ("phone:", "mobile:", "tel:", "fax:", "desk:", "cell:", "telephone:")
PHONE_SUFFIXES = ("office", "fax", "mobile", "cell")
# (Registered without the space before them: a keyword that starts with a
# space would be tried at every space of every text by the shared scan.)
register_keywords((*PHONE_LABELS, *PHONE_SUFFIXES))
_FIELD = re.compile(r"\+?\(?\d[\d .\-()]{5,22}\d(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?")
_LABEL_GAP = re.compile(r"[ \t]*\n?[ \t>]*")
_LINE_HEAD = re.compile(r"[ \t>]*")
_LABEL_SET, _SUFFIX_SET = frozenset(PHONE_LABELS), frozenset(PHONE_SUFFIXES)
_FIELD_WORDS = _LABEL_SET | _SUFFIX_SET


def _field_ok(text: str, start: int, end: int) -> bool:
    body = _EXTENSION.sub("", text[start:end])
    digits = "".join(c for c in body if c.isdigit())
    dialled = body.lstrip("(").startswith("+") or digits.startswith("00")
    if digits.removeprefix("00").startswith("86") if dialled else \
            (len(digits) == 11 and digits[0] == "1"):
        return False  # CN numbers are decided by the runs above (their ranges are exact)
    return 7 <= len(digits) <= 15 and body.count("(") == body.count(")") and \
        not (end < len(text) and text[end].isalnum()) and \
        not (_DATE.search(body) or _DOTTED_DATE.search(body) or _IP_LIKE.fullmatch(body) or
             _SSN_LIKE.fullmatch(body))


def _labelled(text: str, hits: dict[str, list[int]]) -> list[tuple[int, int, float]]:
    found: list[tuple[int, int, float]] = []
    for label in _LABEL_SET.intersection(hits):
        for at in hits[label]:
            gap = _LABEL_GAP.match(text, at + len(label))
            m = _FIELD.match(text, gap.end() if gap else at + len(label))
            if m and _field_ok(text, *m.span()):
                found.append((*m.span(), 0.65))
    for suffix in _SUFFIX_SET.intersection(hits) if "\n" in text else ():  # own line
        for at in hits[suffix]:
            after = at + len(suffix)
            if at and text[at - 1] == " " and (after == len(text) or text[after] in " \t\r\n"):
                head = _LINE_HEAD.match(text, text.rfind("\n", 0, at) + 1)
                start = head.end() if head else at
                if _FIELD.fullmatch(text, start, at - 1) and _field_ok(text, start, at - 1):
                    found.append((start, at - 1, 0.65))
    return found


class PhoneRecognizer:
    """Recognizer for ``PHONE`` (see the module docstring)."""

    name = NAME
    entity_types = frozenset({"PHONE"})

    def analyze(self, text: str) -> list[Entity]:
        if _DIGIT.search(text) is None:
            return []  # each rule starts from a digit
        found: list[tuple[int, int, float]] = []
        for run in number_runs(text):
            if len(run.digits) <= 40:
                candidates = _candidates(text, run)
                found.extend(candidates or _national(text, run))
        found.extend(_written(text))
        hits = keyword_hits(text)  # shared, cached
        if not _FIELD_WORDS.isdisjoint(hits):
            found.extend(_labelled(text, hits))
        if not found:
            return []
        return [Entity("PHONE", s, e, sc, NAME) for s, e, sc in pick_non_overlapping(found)]


register_recognizer(NAME, PhoneRecognizer, entity_types=PhoneRecognizer.entity_types)
