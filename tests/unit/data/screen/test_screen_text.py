"""Turn-wise normalisation against its definition: normalising the newline-joined turns."""

from __future__ import annotations

import random
import re
import unicodedata

from sealtune.data.screen import _text

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
