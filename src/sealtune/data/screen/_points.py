"""Texts as arrays of code points, and which code points are word characters.

Private engine shared by the checks: a whole batch's texts go to numpy as
one UTF-32 buffer (:class:`Points`), so per-character work (what
:func:`._text.shingle_text` keeps, the trigger's tokens, the outlier
classes) is a few array operations per batch instead of a regex per text.
Word-ness is taken from the regex engine itself, one code point at a time,
the first time a code point is seen, so the two agree by construction.

Memory: the table, 1.1 MB once; per batch, a few times the batch's text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

U32 = npt.NDArray[np.uint32]

#: Per code point: 0 not yet looked at, 1 ``\\w`` but not ``_`` (what ``shingle_text``
#: keeps, and the word characters of the trigger's tokens outside CJK), 2 neither. Filled
#: lazily from the regex itself, so that the two agree by construction (1.1 MB).
_WORD_TABLE = np.zeros(0x110000, dtype=np.uint8)
_WORD_CHAR = re.compile(r"\w")


def word_chars(cps: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
    """Whether each code point is ``\\w`` other than ``_``."""
    seen = _WORD_TABLE[cps]
    if not seen.all():
        for c in np.unique(cps[seen == 0]).tolist():
            _WORD_TABLE[c] = 1 if c != 0x5F and _WORD_CHAR.match(chr(c)) else 2
        seen = _WORD_TABLE[cps]
    word: npt.NDArray[np.bool_] = seen == 1
    return word


@dataclass(frozen=True)
class Points:
    """Texts as their code points, concatenated: text ``i`` has ``lengths[i]`` of them."""

    cps: U32
    lengths: npt.NDArray[np.int64]

    @classmethod
    def of(cls, texts: Sequence[str]) -> Points:
        """The code points of ``texts`` (lone surrogates included, as themselves)."""
        cps = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        return cls(cps, np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))

    def concat(self, other: Points) -> Points:
        """Text ``i`` of ``self`` followed by text ``i`` of ``other``, for every ``i``."""
        lengths = self.lengths + other.lengths
        starts = np.cumsum(lengths) - lengths
        out = np.empty(self.cps.size + other.cps.size, dtype=np.uint32)
        for part, base in ((self, starts), (other, starts + self.lengths)):
            begin = np.cumsum(part.lengths) - part.lengths
            out[np.arange(part.cps.size, dtype=np.int64)
                + np.repeat(base - begin, part.lengths)] = part.cps
        return Points(out, lengths)


def shingle_points(texts: Sequence[str]) -> Points:
    """``_text.shingle_text`` of each text, as code points (the same characters, for less)."""
    raw = Points.of(texts)
    keep = word_chars(raw.cps)
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), raw.lengths)
    return Points(raw.cps[keep], np.bincount(owner[keep], minlength=len(texts)))
