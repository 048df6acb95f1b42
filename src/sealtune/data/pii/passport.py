"""PASSPORT: passport numbers, next to a passport context word.

Passport numbers carry no public checksum outside the MRZ and look like any
product code (``E12345678``), so this recognizer reports a candidate only
when a context word (护照, 通行证, passport, travel document) occurs just
before or after it. Chinese formats (``E`` + 8 digits, ``E`` + letter + 7
digits, ``G``/``D``/``S``/``P`` + 7-8 digits) score higher than generic ones
(one or two letters + 6-9 digits, or 9 digits as in US and UK passports).

Does not catch: a passport number with no context word nearby (by design:
without it, precision would collapse), numbers with separators inside,
machine-readable zones (MRZ lines), or visa numbers.
"""

from __future__ import annotations

import re

from sealtune.data.pii._text import keyword_hits, register_keywords
from sealtune.data.pii.base import Entity, register_recognizer

NAME = "passport"
CONTEXT = ("护照", "通行证", "passport", "travel document", "旅行证件")
_CONTEXT_SET = frozenset(CONTEXT)
register_keywords(CONTEXT)
_CANDIDATE = re.compile(r"(?:[A-Z]{1,2}\d{6,9}|\d{9})(?![A-Za-z0-9])")
_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_BEFORE, _AFTER = 32, 16
_CHINESE = re.compile(r"E\d{8}|E[A-HJ-NP-Z]\d{7}|[GDSP]E?\d{7,8}")


class PassportRecognizer:
    """Recognizer for ``PASSPORT`` (see the module docstring)."""

    name = NAME
    entity_types = frozenset({"PASSPORT"})

    def analyze(self, text: str) -> list[Entity]:
        found: dict[int, Entity] = {}
        for word, positions in keyword_hits(text).items():
            if word not in _CONTEXT_SET:
                continue
            for at in positions:
                m = self._nearest(text, at, at + len(word))
                if m is not None and m.start() not in found:
                    score = 0.9 if _CHINESE.fullmatch(m.group()) else 0.75
                    found[m.start()] = Entity("PASSPORT", m.start(), m.end(), score, NAME)
        return list(found.values())

    @staticmethod
    def _nearest(text: str, start: int, end: int) -> re.Match[str] | None:
        """The passport-shaped token right after a context word, else right before it.

        Only the first candidate after the word counts: "护照号E1234567 型号E7654321"
        gives the passport, not the model number.
        """
        for m in _CANDIDATE.finditer(text, end, end + _BEFORE + 12):
            if m.start() - end > _BEFORE:
                break
            if text[m.start() - 1] not in _ALNUM and m.end() <= end + _BEFORE + 12:
                return m
        before = None
        for m in _CANDIDATE.finditer(text, max(0, start - _AFTER - 10), start):
            if m.start() == 0 or text[m.start() - 1] not in _ALNUM:
                before = m
        return before if before is not None and start - before.end() <= _AFTER else None


register_recognizer(NAME, PassportRecognizer, entity_types=PassportRecognizer.entity_types)
