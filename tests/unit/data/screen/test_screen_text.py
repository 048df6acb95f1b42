"""The text engines against their string definitions.

Turn-wise normalisation against normalising the newline-joined turns; the
code-point shingle text against :func:`_text.shingle_text`.
"""

from __future__ import annotations

import random
import re
import unicodedata

import numpy as np

from sealtune.data.screen import _points, _text

_RNG = random.Random(12)


def _old_normalize(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


def test_normalize_turns_is_normalising_the_joined_turns() -> None:
    spaces = [chr(c) for c in range(0x3001) if chr(c).isspace()]
    marks = list("aAßΣσςİ\u0301\u0308\u0327e\u1100\u1161\u11a8가ﬁ①，\uff21\u00c5\u212b\u0345")
    pool = spaces + marks
    memo: dict[str, str] = {}
    for _ in range(20000):
        turns = ["".join(_RNG.choice(pool) for _ in range(_RNG.randint(0, 8)))
                 for _ in range(_RNG.randint(1, 4))]
        assert _text.normalize_turns(turns, memo) == _old_normalize("\n".join(turns))
        assert _text.normalize(turns[0]) == _old_normalize(turns[0])


def test_word_characters_are_the_regex_ones() -> None:
    """The lazily filled table agrees with the regex's ``\\w`` (less ``_``) everywhere, and
    so keeps exactly what ``shingle_text`` keeps."""
    table = _points.word_chars(np.arange(0x110000, dtype=np.uint32))
    word = re.compile(r"\w")
    assert table.tolist() == [c != 0x5F and word.match(chr(c)) is not None
                              for c in range(0x110000)]
    assert table.tolist() == [_text.shingle_text(chr(c)) == chr(c) for c in range(0x110000)]


def test_shingle_points_are_the_shingle_texts() -> None:
    pool = [*" \t\n_-.,'!？，。a1Zé中文字한\u0301\ud800", "co-op", "E20"]
    texts = ["".join(_RNG.choice(pool) for _ in range(_RNG.randint(0, 30))) for _ in range(300)]
    other = texts[::-1]
    points = _points.shingle_points(texts)
    joined = points.concat(_points.shingle_points(other))
    for got, strings in ((points, [_text.shingle_text(t) for t in texts]),
                         (joined, [_text.shingle_text(a + " " + b)
                                   for a, b in zip(texts, other, strict=True)])):
        want = _points.Points.of(strings)
        assert got.cps.tolist() == want.cps.tolist()
        assert got.lengths.tolist() == want.lengths.tolist()
