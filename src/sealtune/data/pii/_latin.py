"""Latin-script letters for name patterns: accented and internal capitals included.

Python's ``re`` has no ``\\p{Lu}``; ``[A-Z][a-z]+`` ends a name at the first
letter outside ASCII (``Pavlović`` -> ``Pavlovi``, ``José`` -> ``Jos``) or at
an internal capital (``McConnell`` -> ``Mc``), so a redactor left the rest of
the name in clear. The classes here are built once from the Latin blocks of
Unicode (Basic Latin, Latin-1 Supplement, Extended-A and -B, Extended
Additional, which holds Vietnamese) by each character's case, plus the
combining diacritics (a letter NFKC could not compose stays as letter + mark).

:data:`NAME_WORD` is one capitalised name word: an optional ``O'``/``D'``
elision, then up to three capitalised parts joined directly or by an
apostrophe (``McConnell``, ``MacDonald``, ``Dell'Acqua``), each part at most
24 letters: every quantifier is bounded and the classes of consecutive
tokens are disjoint, so a match attempt costs a bounded number of steps
wherever it starts (linear scans of any input). A match that a letter
follows ended inside a longer word; callers reject it with
:func:`continues_word` rather than report part of a word.

Not covered: Greek, Cyrillic and other scripts, all-capital names
(``SMITH``, indistinguishable from acronyms), and lower-case particles
(``van der Berg`` yields ``Berg``).
"""

from __future__ import annotations

import re
import unicodedata

_BLOCKS = ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F), (0x1E00, 0x1EFF))
_MARKS = (0x300, 0x36F)


def _collect() -> tuple[str, str]:
    upper, lower = [], []
    for lo, hi in _BLOCKS:
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            if ch.isupper() or ch.istitle():
                upper.append(ch)
            elif ch.islower():
                lower.append(ch)
    lower.extend(chr(cp) for cp in range(_MARKS[0], _MARKS[1] + 1))
    return "".join(upper), "".join(lower)


def _char_class(chars: str) -> str:
    """A regex character class for ``chars``, as ranges of consecutive code points."""
    points = sorted({ord(c) for c in chars})
    parts, i = [], 0
    while i < len(points):
        j = i
        while j + 1 < len(points) and points[j + 1] == points[j] + 1:
            j += 1
        a, b = chr(points[i]), chr(points[j])
        parts.append(f"\\{a}" if i == j and not a.isalnum() else
                     a if i == j else f"{a}-{b}")
        i = j + 1
    return "[" + "".join(parts) + "]"


UPPER_CHARS, LOWER_CHARS = _collect()
#: Every Latin letter (either case) and combining mark.
LETTERS = frozenset(UPPER_CHARS + LOWER_CHARS)
UPPER = _char_class(UPPER_CHARS)
LOWER = _char_class(LOWER_CHARS)
#: Finds a Latin letter or mark (one of :data:`LETTERS`).
ANY_LETTER = re.compile(_char_class(UPPER_CHARS + LOWER_CHARS))
# Possessive (``{1,24}+``): what may follow a run of lower-case letters is
# never one, so giving letters back can never make a match; without it re
# backtracks letter by letter at every capitalised word that is no name.
_PART = f"{UPPER}{LOWER}{{1,24}}+"
#: One capitalised name word (see the module docstring); no groups.
# (Written to start with the capital itself, not an optional elision: a
# pattern that starts with a character class lets re skip ahead fast.)
NAME_WORD = f"{UPPER}(?:['’]{UPPER})?{LOWER}{{1,24}}+(?:['’]?{_PART}){{0,2}}"
#: A looser word for a model's entity text: a capital, then letters of either
#: case, apostrophes, dots and hyphens (``J.R.``, ``Jean-Luc``).
LOOSE_WORD = f"{UPPER}[{UPPER[1:-1]}{LOWER[1:-1]}'’.\\-]{{1,40}}"


def continues_word(text: str, end: int) -> bool:
    """True if a Latin letter or mark follows ``end``: a match there ended mid-word."""
    return end < len(text) and text[end] in LETTERS


def fold(word: str) -> str:
    """``word`` without diacritics (``José`` -> ``Jose``), for look-ups in ASCII lists."""
    if word.isascii():
        return word
    decomposed = unicodedata.normalize("NFD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c))
