"""NFKC normalisation with a map back to the original offsets.

Detectors run on NFKC text so that full-width digits and letters
(``１３８００１３８０００``, ``ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ``), the ideographic
space used as a separator, mathematical bold digits and similar look-alikes
are seen as their ASCII forms; every span is then mapped back to the
original string, so offsets always index the text the caller gave.

Fast path: most text needs nothing. A text is normalised only if it holds a
character whose NFKC form differs, other than the full-width punctuation
that Chinese prose is full of (``，：；（）！？`` and ``…``); recognizers
accept those forms directly in their patterns. The common case (full-width
ASCII only) keeps one character per character, so offsets are unchanged;
only texts with expanding characters (``㎡``, ligatures) pay for a per-char map.

What this does not do: fold confusables that NFKC keeps apart (Cyrillic
``а`` for Latin ``a``, Chinese numerals ``一三八``); an adversary can still
spell a number out in words.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Full-width punctuation common in Chinese prose that the recognizers handle
# as is; normalising every Chinese sentence for these would cost a pass.
_HARMLESS = frozenset("，：；（）！？…")
# Outside the BMP, the NFKC-changing characters that matter for evasion.
_ASTRAL_RANGES = "\U0001d400-\U0001d7ff\U0001f100-\U0001f1ff\U0001fbf0-\U0001fbf9"


def _build_trigger() -> re.Pattern[str]:
    ranges: list[tuple[int, int]] = []
    for cp in range(0xA0, 0x10000):
        ch = chr(cp)
        if 0xD800 <= cp <= 0xDFFF or ch in _HARMLESS:
            continue
        if unicodedata.is_normalized("NFKC", ch):
            continue
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    parts = [re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
             for a, b in ranges]
    # BMP only: re keeps a BMP-only class as a bitmap, one lookup per char;
    # astral ranges would turn it into a linear list of ranges.
    return re.compile("[" + "".join(parts) + "]")


_TRIGGER = _build_trigger()
_ASTRAL = re.compile("[" + _ASTRAL_RANGES + "]")
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_FULLWIDTH[0x3000] = 0x20
# Runs of full-width ASCII to fold (not the harmless punctuation: folding
# every Chinese comma would cost more than it brings).
_FW_RUN = re.compile(
    "[" + "".join(re.escape(chr(c)) for c in sorted(_FULLWIDTH) if chr(c) not in _HARMLESS) + "]+"
)


def _fold(m: re.Match[str]) -> str:
    return m.group().translate(_FULLWIDTH)


@lru_cache(maxsize=4096)
def _nfkc_char(ch: str) -> str:
    return unicodedata.normalize("NFKC", ch)


@dataclass(frozen=True, slots=True)
class Normalized:
    """A normalised text and how to map its offsets back.

    Attributes:
        text: the NFKC text the recognizers see.
        original_length: length of the original string.
        starts: for each normalised char, the index of the original char it
            came from; ``None`` when offsets are unchanged.
    """

    text: str
    original_length: int
    starts: tuple[int, ...] | None = None

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a normalised span to the original string (whole chars)."""
        if self.starts is None:
            return start, end
        if end <= start:
            pos = self.starts[start] if start < len(self.starts) else self.original_length
            return pos, pos
        return self.starts[start], self.starts[end - 1] + 1


def needs_normalization(text: str) -> bool:
    """True if NFKC would change ``text`` in a way detection cares about."""
    if text.isascii():
        return False
    if _TRIGGER.search(text) is not None:
        return True
    # Astral characters take two UTF-16 code units: encoding tells whether
    # there are any at a quarter of the cost of scanning for the ranges.
    if len(text.encode("utf-16-le", "surrogatepass")) == 2 * len(text):
        return False
    return _ASTRAL.search(text) is not None


def normalize(text: str) -> Normalized:
    """NFKC-normalise ``text`` keeping a map to the original offsets."""
    folded, starts = normalize_with_starts(text)
    return Normalized(folded, len(text), starts)


def normalize_with_starts(text: str) -> tuple[str, tuple[int, ...] | None]:
    """:func:`normalize` as a pair (text, starts), without the wrapper object.

    For the analyzer, which needs the object only in the rare case that
    offsets change.
    """
    if not needs_normalization(text):
        return text, None
    # Full-width ASCII and the ideographic space map one char to one char.
    folded = _FW_RUN.sub(_fold, text)
    if not needs_normalization(folded):
        return folded, None
    pieces = [_nfkc_char(ch) for ch in folded]
    if all(len(p) == 1 for p in pieces):
        return "".join(pieces), None
    starts: list[int] = []
    for index, piece in enumerate(pieces):
        starts.extend([index] * len(piece))
    return "".join(pieces), tuple(starts)
