"""BANK_CARD: payment card numbers (13-19 digits, Luhn-valid; 12-digit Maestro in card context).

Catches card numbers that pass the Luhn check (python-stdnum's
``stdnum.luhn``, inlined for speed) written together, in groups separated by
spaces or dashes (``6222 0202 0000 1234 567``), in full-width digits, or
glued to Chinese text. A number whose prefix and length fit a major network
(UnionPay 62, Visa, Mastercard, Amex, JCB, Discover, Diners, Maestro) is
reported on its own, unless the words just before it say it is something
else (订单号, 流水号, order, tracking ...); any other Luhn-valid number only
next to a context word (卡号, 银行卡, card, account) and only as a whole run
of digits, since one random number in ten passes Luhn.

A number written as a phone number is not a card, even next to a card
word and passing Luhn (one invalid mobile in ten does): one led by ``+``
or the international prefix ``00`` (no card number starts with either), and
a number with no network prefix that has a phone word near it (手机, phone,
mobile ...): "银行卡预留手机 +86 120 0000 0004" holds no card. A number of a
known network keeps its card reading whatever the words around it.

Does not catch: numbers failing Luhn (by design), card numbers written with
other separators or in words, a masked number (``6222 **** **** 1234``,
which is no longer the full number), or bank account numbers that are not
card numbers (they carry no checksum we could verify).
"""

from __future__ import annotations

from sealtune.data.pii._text import (
    Run,
    any_word,
    context_window,
    number_runs,
    pick_non_overlapping,
)
from sealtune.data.pii.base import Entity, register_recognizer

NAME = "bank_card"
CONTEXT = ("卡号", "银行卡", "信用卡", "储蓄卡", "借记卡", "账号", "帐号", "card", "account",
           "acct", "visa", "mastercard", "unionpay", "银联")
# Words that say the number is something else; they veto a card without
# card context (an 18-digit order number that happens to pass Luhn).
NOT_CONTEXT = ("订单", "单号", "流水", "编号", "时间", "order", "tracking", "invoice", "timestamp",
               "ref", "id:")
# Words that say the number is a phone number; they veto a card that only
# card context would make one (no network prefix).
# (Words, not fragments: "tel" is in "hotel", 号码 in 卡号码.)
PHONE_CONTEXT = ("手机", "电话", "致电", "来电", "微信", "传真", "phone", "mobile", "tel:", "tel.",
                 "whatsapp", "wechat", "fax")


# Luhn: digit d in an even position from the right counts as 2d with its
# digits summed. Same answer as ``stdnum.luhn.is_valid`` on digit strings (the
# unit tests check both on random numbers), at an eighth of the cost: this
# runs on every 13-19 digit candidate. The digits' ASCII bytes are mapped to
# their values (or doubled values) by a translate table and summed in C.
_VALUE = bytes.maketrans(b"0123456789", bytes(range(10)))
_DOUBLED = bytes.maketrans(b"0123456789", bytes((2 * d) // 10 + (2 * d) % 10 for d in range(10)))


def luhn_valid(digits: str) -> bool:
    """True if ``digits`` passes the Luhn check (False unless non-empty ASCII digits)."""
    if not (digits.isascii() and digits.isdigit()):
        return False
    raw = digits.encode("ascii")
    return (sum(raw[-1::-2].translate(_VALUE)) + sum(raw[-2::-2].translate(_DOUBLED))) % 10 == 0


def known_network(digits: str) -> bool:
    """True if prefix and length fit a major card network's usual IIN ranges and lengths."""
    n = len(digits)
    p4 = int(digits[:4])
    p2 = p4 // 100
    return (
        (digits[0] == "4" and n in (13, 16, 19))                       # Visa
        or ((51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16)        # Mastercard
        or (p2 in (34, 37) and n == 15)                                # Amex
        or (p2 == 62 and 16 <= n <= 19)                                # UnionPay
        or (3528 <= p4 <= 3589 and n in (16, 19))                      # JCB
        or ((p4 == 6011 or 644 <= p4 // 10 <= 649 or p2 == 65) and n in (16, 19))  # Discover
        or ((300 <= p4 // 10 <= 305 or p2 == 36) and n == 14)          # Diners
        or ((p2 == 50 or 56 <= p2 <= 69) and n in (16, 19))            # Maestro and others
    )


class BankCardRecognizer:
    """Recognizer for ``BANK_CARD`` (see the module docstring)."""

    name = NAME
    entity_types = frozenset({"BANK_CARD"})

    def analyze(self, text: str) -> list[Entity]:
        found: list[tuple[int, int, float]] = []
        for run in number_runs(text):
            if len(run.digits) < 12:
                continue
            dialled = _dialled(text, run)
            for start, end, digits in run.spans:
                if 12 <= len(digits) <= 19 and not (dialled and start == run.first):
                    whole = start == run.first and end == run.end
                    score = _score(text, start, end, digits, whole=whole)
                    if score:
                        found.append((start, end, score))
        if not found:
            return []
        return [Entity("BANK_CARD", s, e, sc, NAME) for s, e, sc in pick_non_overlapping(found)]


def _dialled(text: str, run: Run) -> bool:
    """True if the run is written as an international phone number (``+``, ``00`` in front)."""
    return (run.start < run.first and "+" in text[run.start:run.first]) or \
        run.digits.startswith("00")


def _score(text: str, start: int, end: int, digits: str, *, whole: bool) -> float:
    """Score of a 12-19 digit candidate (0 if it is no card); ``whole``: the entire run."""
    if not digits.isdigit() or digits.count(digits[0]) == len(digits):
        return 0.0
    if len(digits) == 12:  # only Maestro issues 12 digits: its IIN, Luhn and a card word
        return _maestro12(text, start, end, digits)
    network = known_network(digits)
    if not (network or whole) or not luhn_valid(digits):
        return 0.0
    window = context_window(text, start, end, after=0)
    context = any_word(CONTEXT).search(window) is not None
    if not context and any_word(NOT_CONTEXT).search(window):
        return 0.0
    if network:
        return 0.95 if context else 0.85
    if context and any_word(PHONE_CONTEXT).search(window) is None:
        return 0.7
    return 0.0


# Maestro IINs that issue 12-digit cards (UK/intl. Maestro ranges); every other
# network starts at 13 digits, and 12-digit order or tracking numbers abound.
_MAESTRO_12 = frozenset(("5018", "5020", "5038", "5893", "6304", "6759", "6761", "6762", "6763"))


def _maestro12(text: str, start: int, end: int, digits: str) -> float:
    if digits[:4] not in _MAESTRO_12 or not luhn_valid(digits):
        return 0.0
    window = context_window(text, start, end, after=0)
    if any_word(CONTEXT).search(window) is None and "maestro" not in text[end:end + 24].lower():
        return 0.0
    return 0.9


register_recognizer(NAME, BankCardRecognizer, entity_types=BankCardRecognizer.entity_types)
