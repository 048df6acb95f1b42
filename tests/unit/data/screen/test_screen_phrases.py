"""The batched phrase engine and the turn-wise normalisation against their definitions.

``_phrases.batch_phrases`` must find, text by text, exactly the set that
``_text.features`` finds; ``PhraseTable`` must give two occurrences one id
exactly when they are the same string, whatever the hashes do.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from sealtune.data.screen import _phrases, _text

_RNG = random.Random(11)
#: Word characters, joiners, CJK (Han, kana, Hangul), digits, spaces, punctuation,
#: combining marks and a few characters NFKC or casefolding change.
_ALPHABET = [*"ab-_.' ,\n\x00中文字한글アカ1é\u0301ßΣ，ﬁ①", "xyz", "北京", "co-op", "don't"]


def _texts(count: int, longest: int) -> list[str]:
    return ["".join(_RNG.choice(_ALPHABET) for _ in range(_RNG.randint(0, longest)))
            for _ in range(count)]


def _found(p: _phrases.Phrases, count: int) -> list[set[str]]:
    out: list[set[str]] = [set() for _ in range(count)]
    for i in range(p.key.size):
        out[int(p.owner[i])].add(p.text(i))
    return out


@pytest.mark.parametrize(("max_word", "cjk"), [(3, (2, 4)), (1, (2, 2)), (5, (1, 6))])
def test_batch_phrases_are_each_texts_features(max_word: int, cjk: tuple[int, int]) -> None:
    texts = ["", "a", "hello world", "我的订单什么时候到", "my 订单 is late", "a-b-c d.e f'g",
             "x--y _z_ 'q' a.", "abc中文def 한국어", *_texts(400, 40)]
    texts = [_text.normalize(t) for t in texts[:200]] + texts[200:]  # raw text too
    found = _found(_phrases.batch_phrases(texts, max_word=max_word, cjk=cjk), len(texts))
    for text, got in zip(texts, found, strict=True):
        assert got == _text.features(text, max_word=max_word, cjk=cjk), text


def test_a_phrase_key_is_the_batch_hash() -> None:
    p = _phrases.batch_phrases(_texts(50, 40))
    assert all(_phrases.phrase_key(p.text(i)) == int(p.key[i]) for i in range(p.key.size))


def _check_interning(table: _phrases.PhraseTable, batches: list[list[str]]) -> None:
    seen: dict[str, int] = {}
    for texts in batches:
        p = _phrases.batch_phrases(texts)
        ids = table.intern(p).tolist()
        for i, got in enumerate(ids):
            assert seen.setdefault(p.text(i), got) == got  # one string, one id
        assert len(set(seen.values())) == len(seen)  # one id, one string
    for phrase, i in seen.items():
        assert table.text(i) == phrase
        assert table.find(phrase) == i
    assert table.find("never seen at all") == -1


def test_interning_gives_one_id_per_distinct_phrase() -> None:
    _check_interning(_phrases.PhraseTable(), [_texts(60, 40) for _ in range(5)])


def test_colliding_hashes_never_merge_phrases(monkeypatch: pytest.MonkeyPatch) -> None:
    """With hashes cut to 3 bits nearly every phrase collides, in a batch and across
    batches; ids must still follow the strings."""
    keys = _phrases._keys
    monkeypatch.setattr(_phrases, "_keys", lambda *a: keys(*a) & np.uint64(7))
    key = _phrases.phrase_key
    monkeypatch.setattr(_phrases, "phrase_key", lambda s: key(s) & 7)
    _check_interning(_phrases.PhraseTable(), [_texts(40, 30) for _ in range(4)])
