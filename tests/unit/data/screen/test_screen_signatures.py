"""The batched MinHash engines against their definitions, text by text (bit for bit).

The engines in ``screen/_text.py`` compute whole batches at once (blocks,
permutation-major matrices, ``reduceat``); these references compute one text
at a time the way the docstrings define them, so any speed-up that changes a
single slot fails here.
"""

from __future__ import annotations

import random

import numpy as np

from sealtune.data.screen import _text

_RNG = random.Random(5)
TEXTS = ["", "a", "ab", "abc", "abcabcabc", "我的订单什么时候到", "x" * 3000,
         *("".join(_RNG.choice("ab中文字1") for _ in range(_RNG.randint(0, 60)))
           for _ in range(300))]


def _grams(text: str, n: int) -> list[int]:
    """A text's n-gram hashes, one by one (the polynomial hash, folded to 32 bits)."""
    cps = [ord(c) for c in text]
    windows = [cps[i:i + n] for i in range(len(cps) - n + 1)] or [cps]
    out = []
    for window in windows:
        acc = 0
        for c in window:
            acc = (acc * 0x100000001B3 + c) & 0xFFFFFFFFFFFFFFFF
        out.append((acc ^ (acc >> 32)) & 0xFFFFFFFF)
    return out


def _mixed(hashes: list[int]) -> np.ndarray:
    return _text._fmix32(np.array(hashes, dtype=np.uint64)).astype(np.uint32)


def test_unique_shingles_are_each_texts_set_of_grams() -> None:
    hashes, offsets = _text.unique_shingles(TEXTS, 3)
    for i, text in enumerate(TEXTS):
        assert hashes[offsets[i]:offsets[i + 1]].tolist() == sorted(set(_grams(text, 3)))


def test_tag_digits_marks_exactly_the_grams_with_a_digit() -> None:
    """Bit 0 of a tagged hash says whether its 3-gram holds a digit; the other 31 bits are
    the untagged hash's."""
    tagged, offsets = _text.shingle_hashes(TEXTS, 3, tag_digits=True)
    plain, same = _text.shingle_hashes(TEXTS, 3)
    assert np.array_equal(offsets, same)
    assert np.array_equal(tagged >> 1, plain >> 1)
    for i, text in enumerate(TEXTS):
        windows = [text[j:j + 3] for j in range(len(text) - 2)] or [text]
        expected = [any(c.isdigit() for c in w) for w in windows]
        assert _text.has_digit(tagged[offsets[i]:offsets[i + 1]]).tolist() == expected


def test_signatures_are_the_minimum_of_each_permutation() -> None:
    a, b = _text.permutations(64)
    sigs = _text.signatures(TEXTS, num_perm=64, n=3)
    for i, text in enumerate(TEXTS):
        permuted = _mixed(_grams(text, 3))[:, None] * a[None, :] + b[None, :]
        assert np.array_equal(sigs[i], permuted.min(axis=0))


def _assert_winning_draws(sigs: np.ndarray, hashes: np.ndarray, offsets: np.ndarray,
                          weights: np.ndarray) -> None:
    """Each slot holds the least ``-ln(u) / w`` over the text's shingles (the reference)."""
    a, b = _text.permutations(sigs.shape[1])
    for i in range(len(offsets) - 1):
        lo, hi = offsets[i], offsets[i + 1]
        permuted = _mixed(hashes[lo:hi].tolist())[:, None] * a[None, :] + b[None, :]
        u = (permuted.astype(np.float32) + np.float32(0.5)) * np.float32(2.0 ** -32)
        draws = -np.log(u) * (1.0 / weights[lo:hi]).astype(np.float32)[:, None]
        assert np.array_equal(sigs[i], draws.view(np.uint32).min(axis=0))


def test_weighted_signatures_are_the_winning_exponential_draws() -> None:
    hashes, offsets = _text.unique_shingles(TEXTS, 3)
    weights = np.random.default_rng(3).uniform(0.01, 40.0, hashes.size).astype(np.float32)
    sigs = _text.weighted_signatures(hashes, offsets, weights, num_perm=128)
    _assert_winning_draws(sigs, hashes, offsets, weights)


def test_weighted_signatures_with_weights_by_shingle() -> None:
    """Weights that depend on the shingle only (as the near-duplicate check's do): the
    engine draws once per distinct shingle; the result is the same."""
    hashes, offsets = _text.unique_shingles(TEXTS, 3, tag_digits=True)
    weights = np.where(_text.has_digit(hashes), np.float32(0.01),
                       (hashes % 7).astype(np.float32) + np.float32(0.5))
    sigs = _text.weighted_signatures(hashes, offsets, weights, num_perm=128)
    _assert_winning_draws(sigs, hashes, offsets, weights)


def test_a_narrow_signature_is_the_prefix_of_the_full_one() -> None:
    full = _text.signatures(TEXTS, num_perm=128, n=3)
    assert np.array_equal(_text.signatures(TEXTS, num_perm=128, n=3, width=32), full[:, :32])


def test_coherence_by_slot_counts_equals_the_mean_over_pairs() -> None:
    from sealtune.data.screen._groups import coherence as _coherence

    rng = np.random.default_rng(9)
    for values in (2, 5, 1 << 32):
        for width in (32, 24):  # power of two: counted per slot; otherwise pairwise
            sig = rng.integers(0, values, (400, width), dtype=np.uint64).astype(np.uint32)
            for m in (0, 1, 2, 3, 17, 64, 200):
                carriers = np.sort(rng.choice(400, m, replace=False))
                sample = _text_spread(carriers)
                x = sig[sample]
                pairs = np.triu_indices(sample.size, 1)
                eq = (x[:, None, :] == x[None, :, :]).mean(axis=-1)
                expected = float(eq[pairs].mean()) if pairs[0].size else 0.0
                assert _coherence(sig, carriers) == expected


def _text_spread(carriers: np.ndarray) -> np.ndarray:
    from sealtune.data.screen._groups import SAMPLE as _SAMPLE
    from sealtune.data.screen._groups import spread as _spread

    return _spread(carriers, _SAMPLE)


def test_both_coherences_from_one_sort_are_each_coherence() -> None:
    from sealtune.data.screen._groups import coherence as _coherence
    from sealtune.data.screen._groups import coherences as _coherences

    rng = np.random.default_rng(10)
    for values in (2, 5, 1 << 32):
        for width in (32, 24):
            rsig = rng.integers(0, values, (300, width), dtype=np.uint64).astype(np.uint32)
            psig = rng.integers(0, values, (300, width), dtype=np.uint64).astype(np.uint32)
            for m in (0, 1, 2, 3, 17, 64, 200):
                carriers = np.sort(rng.choice(300, m, replace=False))
                assert _coherences(rsig, psig, carriers) == (_coherence(rsig, carriers),
                                                             _coherence(psig, carriers))
