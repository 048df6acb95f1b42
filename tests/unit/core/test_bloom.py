"""The keyed Bloom filter of token windows: membership, no false negatives, strict parsing."""

from __future__ import annotations

import random

import pytest

from sealtune.core.bloom import MAGIC, BloomFilter, sized, tokens
from sealtune.errors import IntegrityError


def test_holds_every_window_and_few_others() -> None:
    rng = random.Random(7)
    texts = [" ".join(rng.choice("abcdefghij") + str(rng.randrange(10**6)) for _ in range(40))
             for _ in range(50)]
    bloom = BloomFilter.of_texts(texts, n=8, fp_rate=1e-4)
    for text in texts:  # no false negatives
        assert all(bloom.hits(tokens(text)))
    others = [[f"x{rng.randrange(10**9)}" for _ in range(8)] for _ in range(5000)]
    assert sum(w in bloom for w in others) <= 5


def test_round_trip_and_key_matters() -> None:
    bloom = BloomFilter.of_texts(["the quick brown fox jumps over the lazy dog"], n=4)
    again = BloomFilter.from_bytes(bloom.to_bytes())
    assert ["quick", "brown", "fox", "jumps"] in again
    data = bloom.to_bytes()
    rekeyed = BloomFilter.from_bytes(data[:19] + bytes(32) + data[51:])  # same bits, other key
    assert sum(w in rekeyed for w in bloom.windows(tokens("the quick brown fox jumps over "
                                                          "the lazy dog"))) < 6


@pytest.mark.parametrize("cut", [0, 5, 20, 51, -1])
def test_truncated_or_foreign_files_are_refused(cut: int) -> None:
    data = BloomFilter.of_texts(["a b c d e f"], n=3).to_bytes()
    with pytest.raises(IntegrityError):
        BloomFilter.from_bytes(data[:cut] if cut >= 0 else data + b"\0")
    with pytest.raises(IntegrityError):
        BloomFilter.from_bytes(b"XXXXXXXX" + data[len(MAGIC):])


def test_sized_meets_the_rate() -> None:
    m, k = sized(10_000, fp_rate=1e-6)
    assert m >= 10_000 * 28 and 10 <= k <= 32
