"""Text normalisation, tokenisation and MinHash signatures shared by the checks.

Private engine. Everything here is pure (no I/O) and deterministic across
processes: hashes are BLAKE2b or fixed polynomial hashes, never Python's
salted ``hash()``, so the same input gives the same findings on any run.

Signatures follow datasketch's ``affine32`` MinHash scheme exactly (input
hash pre-mixed with the MurmurHash3 32-bit finalizer, then ``a*h + b mod
2**32`` with datasketch's own permutation parameters), so a row of
:func:`signatures` equals ``datasketch.MinHash(num_perm, seed,
hashfunc=int).update_batch(shingle_hashes)``; the test suite checks this. It
is computed here for a whole batch of texts in a few numpy operations,
because per-record ``update_batch`` calls cost more than the screening
itself. datasketch itself is not imported: it pulls in scipy, about a
second of start-up in every process that screens (each data worker too).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from sealtune.data.screen._points import Points

U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]

#: Seed of the permutations every signature in a screen run shares.
MINHASH_SEED = 1
_WS = re.compile(r"\s+")
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
#: A CJK run, or a Latin-ish word (letters/digits with inner - _ . ' joins).
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+(?:[-_.'][^\W_{_CJK}]+)*")
_CJK_RUN = re.compile(rf"[{_CJK}]")
#: :data:`_TOKEN` with its two kinds as groups: ``(cjk_run, "")`` or ``("", word)``.
_KINDED = re.compile(rf"([{_CJK}]+)|([^\W_{_CJK}]+(?:[-_.'][^\W_{_CJK}]+)*)")
_P = np.uint64(0x100000001B3)  # FNV-64 prime: the polynomial base of the n-gram hash


def normalize(text: str) -> str:
    """NFKC, casefold, whitespace collapsed to single spaces and stripped."""
    # str.split() splits at runs of exactly the characters ``\s`` matches (and drops
    # the ends), so this is ``_WS.sub(" ", ...).strip()`` in one pass less.
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def normalize_turns(turns: Iterable[str], memo: dict[str, str]) -> str:
    """``normalize("\\n".join(turns))``, normalising each turn once per ``memo``.

    The same string: NFKC leaves a newline and what is either side of it
    apart (it is a stable code point), casefolding is per character, and the
    whitespace collapse makes the newline one space unless a side is blank.
    """
    out = []
    for turn in turns:
        done = memo.get(turn)
        if done is None:
            done = memo[turn] = normalize(turn)
        if done:
            out.append(done)
    return " ".join(out)


_NOISE = re.compile(r"[\s\W_]+")


def shingle_text(normalised: str) -> str:
    """What signatures are taken over: normalised text without whitespace and punctuation.

    Copy-paste edits touch spacing and punctuation most (``，`` vs ``, ``); in
    short unspaced Chinese each such edit would otherwise destroy n shingles.
    """
    return _NOISE.sub("", normalised)


def digest64(text: str) -> int:
    """A stable 64-bit digest of ``text`` (BLAKE2b), for exact-match keys."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def fingerprint(text: str) -> str:
    """A short, stable, non-reversible label for a phrase (12 hex chars, keyed by purpose)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=6, person=b"sealtune-trig").hexdigest()


def mask(text: str) -> str:
    """Show at most 2 characters and never more than a third of ``text``; star the rest."""
    keep = min(2, len(text) // 3)
    return text[:keep] + "*" * (len(text) - keep)


def mask_example(text: str, *, limit: int = 60) -> str:
    """``text``'s shape: every letter and digit (CJK included) starred, spacing collapsed.

    What a report may show of a record: its length, punctuation and layout,
    never a character of its content; cut to ``limit`` characters (``…`` after).
    """
    shape = "".join("*" if c.isalnum() else c for c in _WS.sub(" ", text.strip())[:limit + 1])
    return shape[:limit] + "…" if len(shape) > limit else shape


def is_cjk(token: str) -> bool:
    """Whether a token from :func:`features` is a CJK run."""
    return bool(_CJK_RUN.match(token))


def features(text: str, *, max_word: int = 3, cjk: tuple[int, int] = (2, 4)) -> set[str]:
    """Candidate phrase features of normalised ``text``.

    Latin-script words give word n-grams (1..``max_word``) over consecutive
    words; CJK runs (unspaced) give character n-grams in ``cjk`` (inclusive).
    A CJK run breaks the Latin word sequence, and vice versa.
    """
    # Hot path of the trigger check (every prompt twice, every answer once): one regex
    # pass whose groups say the token's kind, and zip-built n-grams.
    out: set[str] = set()
    words: list[str] = []
    lo, hi = cjk
    for run, word in _KINDED.findall(text):
        if word:
            words.append(word)
            continue
        if words:
            _word_ngrams(words, max_word, out)
            words = []
        n_tok = len(run)
        for n in range(lo, min(hi, n_tok) + 1):
            out.update([run[i:i + n] for i in range(n_tok - n + 1)])
    if words:
        _word_ngrams(words, max_word, out)
    return out


def _word_ngrams(words: list[str], max_word: int, out: set[str]) -> None:
    if max_word >= 1:
        out.update(words)
    if max_word >= 2:
        out.update(map(" ".join, pairwise(words)))
    if max_word >= 3:
        out.update(map(" ".join, zip(words, words[1:], words[2:], strict=False)))
    for n in range(4, min(max_word, len(words)) + 1):
        out.update(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int = MINHASH_SEED) -> tuple[U32, U32]:
    """datasketch's affine32 permutation parameters ``(a, b)`` (uint32; products wrap mod 2**32).

    Drawn as datasketch 2 draws them, from numpy's legacy ``RandomState(seed)``:
    ``a`` odd (a bijection mod 2**32), ``b`` any; the tests compare them with
    ``datasketch.MinHash(num_perm, seed).permutations``.
    """
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def _fmix32(h: U64) -> U64:
    """MurmurHash3's 32-bit finalizer on values < 2**32 held in uint64."""
    m = np.uint64(0xFFFFFFFF)
    h = h ^ (h >> np.uint64(16))
    h = (h * np.uint64(0x85EBCA6B)) & m
    h = h ^ (h >> np.uint64(13))
    h = (h * np.uint64(0xC2B2AE35)) & m
    return h ^ (h >> np.uint64(16))


def shingle_hashes(texts: Sequence[str] | Points, n: int, *,
                   tag_digits: bool = False) -> tuple[U32, npt.NDArray[np.int64]]:
    """32-bit hashes of the character ``n``-grams of each text (or :class:`Points`), concatenated.

    Returns ``(hashes, offsets)``: text ``i`` owns ``hashes[offsets[i]:offsets[i+1]]``.
    A text shorter than ``n`` characters gives one shingle (itself, or a
    fixed value when empty), so every text owns at least one hash.
    ``tag_digits``: the lowest bit of a hash says whether its ``n``-gram
    holds an ASCII digit (see :func:`has_digit`).
    """
    points = texts if isinstance(texts, Points) else Points.of(texts)
    lens, count = points.lengths, points.lengths.size
    cps = points.cps.astype(np.uint64)
    starts = np.concatenate(([0], np.cumsum(lens)))
    total = int(starts[-1])
    h = np.zeros(max(total - n + 1, 0), dtype=np.uint64)
    for j in range(n):
        h = h * _P + cps[j:total - n + 1 + j] if total >= n else h
    owner = np.repeat(np.arange(count, dtype=np.int64), lens)[:h.size]
    valid = np.arange(h.size, dtype=np.int64) + n <= starts[1:][owner]  # within its text
    h, owner = h[valid], owner[valid]
    if tag_digits:
        h = _tag(h, _digit_windows(cps, n)[valid])
    counts = np.bincount(owner, minlength=count)
    short = np.flatnonzero(counts == 0)
    if short.size:  # texts shorter than n: one shingle of the whole text (0 if empty)
        runs = [cps[starts[i]:starts[i + 1]] for i in short.tolist()]
        extra = np.array([_poly(r.tolist()) for r in runs], dtype=np.uint64)
        if tag_digits:
            extra = _tag(extra, np.array([_digit_windows(r, 1).any() for r in runs], dtype=bool))
        h = np.concatenate((h, extra))
        owner = np.concatenate((owner, short))
        order = np.argsort(owner, kind="stable")
        h, owner = h[order], owner[order]
        counts = np.bincount(owner, minlength=count)
    folded = ((h ^ (h >> np.uint64(32))) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return folded, np.concatenate(([0], np.cumsum(counts)))


def _poly(run: list[int]) -> int:
    """The polynomial hash of a whole (short) run of code points."""
    acc = 0
    for c in run:
        acc = (acc * int(_P) + c) & 0xFFFFFFFFFFFFFFFF
    return acc


def _digit_windows(cps: U64, n: int) -> npt.NDArray[np.bool_]:
    """Per ``n``-gram start position, whether the ``n``-gram holds an ASCII digit."""
    digit = (cps >= 48) & (cps <= 57)
    out = np.zeros(max(cps.size - n + 1, 0), dtype=bool)
    for j in range(n):
        out |= digit[j:cps.size - n + 1 + j]
    return out


#: Bits 0 and 32 of a 64-bit n-gram hash: the fold to 32 bits XORs them into bit 0.
_TAG_BITS = np.uint64(1 | 1 << 32)


def _tag(h: U64, flag: npt.NDArray[np.bool_]) -> U64:
    """``h`` with bit 32 cleared and bit 0 set to ``flag``: the 32-bit fold's bit 0 is ``flag``."""
    tagged: U64 = (h & ~_TAG_BITS) | flag.astype(np.uint64)
    return tagged


def has_digit(hashes: U32) -> npt.NDArray[np.bool_]:
    """For hashes made with ``tag_digits``: whether each ``n``-gram holds an ASCII digit."""
    return (hashes & np.uint32(1)).astype(bool)


def signatures(texts: Sequence[str] | Points, *, num_perm: int, n: int,
               width: int | None = None) -> U32:
    """MinHash signatures (``len(texts) x num_perm``, uint32) of character ``n``-gram sets.

    ``width``: compute only the first ``width`` slots (the same values as
    ``signatures(...)[:, :width]``, for a caller that uses no more).
    """
    width = num_perm if width is None else min(width, num_perm)
    count = texts.lengths.size if isinstance(texts, Points) else len(texts)
    out = np.empty((count, width), dtype=np.uint32)
    if not count:
        return out
    hashes, offsets = shingle_hashes(texts, n)
    a, b = permutations(num_perm)
    a, b = a[:width], b[:width]
    mixed = _fmix32(hashes.astype(np.uint64)).astype(np.uint32)
    # Work in blocks of whole texts so the (shingles x perms) product stays ~32 MB.
    budget = max(1, (1 << 23) // width)
    i = 0
    while i < count:
        j = max(i + 1, int(np.searchsorted(offsets, offsets[i] + budget, side="right")) - 1)
        j = min(j, count)
        lo, hi = int(offsets[i]), int(offsets[j])
        if hi - lo <= budget:
            block = _permute(mixed[lo:hi], a, b)
            out[i:j] = np.minimum.reduceat(block, offsets[i:j] - lo, axis=1).T
        else:  # one text longer than the budget: reduce it in slices
            row = np.full(width, 0xFFFFFFFF, dtype=np.uint32)
            for s in range(lo, hi, budget):
                row = np.minimum(row, _permute(mixed[s:min(hi, s + budget)], a, b).min(axis=1))
            out[i] = row
        i = j
    return out


def unique_shingles(texts: Sequence[str] | Points, n: int, *,
                    tag_digits: bool = False) -> tuple[U32, npt.NDArray[np.int64]]:
    """:func:`shingle_hashes` with each text's repeated shingles removed (a set per text).

    Returns ``(hashes, offsets)`` as :func:`shingle_hashes` does; within a
    text the hashes come out sorted.
    """
    hashes, offsets = shingle_hashes(texts, n, tag_digits=tag_digits)
    count = offsets.size - 1
    owner = np.repeat(np.arange(count, dtype=np.uint64), np.diff(offsets))
    keyed = np.sort((owner << np.uint64(32)) | hashes.astype(np.uint64))
    if keyed.size:  # np.unique's hash-based path is ~10x slower than sort and compare
        fresh = np.empty(keyed.size, dtype=bool)
        fresh[0] = True
        np.not_equal(keyed[1:], keyed[:-1], out=fresh[1:])
        keyed = keyed[fresh]
    counts = np.bincount((keyed >> np.uint64(32)).astype(np.int64), minlength=count)
    return (keyed & np.uint64(0xFFFFFFFF)).astype(np.uint32), \
        np.concatenate(([0], np.cumsum(counts)))


def weighted_signatures(hashes: U32, offsets: npt.NDArray[np.int64],
                        weights: npt.NDArray[np.float32], *, num_perm: int) -> U32:
    """Weighted MinHash signatures (``texts x num_perm``) of weighted shingle sets.

    Each shingle ``s`` of weight ``w`` draws, per permutation, ``-ln(u) / w``
    with ``u`` uniform in (0, 1) from its permuted hash (an exponential race:
    heavy shingles tend to win); a slot holds the winning draw, as the bits of
    a positive float32, whose order is that of the floats. Two sets agree on
    a slot when the same shingle wins in both, with probability their
    probability-Jaccard similarity (Moulton and Jiang's P-MinHash), which
    weighs a shingle by ``w``: rare shingles decide, common ones (a shared
    system prompt, a template) barely count. ``weights`` are aligned with
    ``hashes`` and must be positive.
    """
    count = len(offsets) - 1
    out = np.full((count, num_perm), 0x7F7FFFFF, dtype=np.uint32)  # float32 max: empty
    if hashes.size == 0:
        return out
    # A shingle's draws depend only on its hash and weight, and a batch repeats most
    # shingles (a shared system prompt, a template): draw once per distinct pair, then
    # take each text's minima over the columns of its shingles.
    pair = (hashes.astype(np.uint64) << np.uint64(32)) | \
        weights.astype(np.float32).view(np.uint32).astype(np.uint64)
    distinct, inverse = np.unique(pair, return_inverse=True)
    draws = _draws((distinct >> np.uint64(32)).astype(np.uint32),
                   (distinct & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.float32),
                   num_perm)
    # Blocks of whole texts of ~16 MB of gathered draws.
    budget = max(1, (1 << 22) // num_perm)
    i = 0
    while i < count:
        j = max(i + 1, int(np.searchsorted(offsets, offsets[i] + budget, side="right")) - 1)
        j = min(j, count)
        lo, hi = int(offsets[i]), int(offsets[j])
        if hi > lo:
            starts = offsets[i:j] - lo
            full = np.flatnonzero(np.diff(offsets[i:j + 1]) > 0)
            if full.size:
                block = np.take(draws, inverse[lo:hi], axis=1)
                out[i + full] = np.minimum.reduceat(block, starts[full], axis=1).T
        i = j
    return out


def _draws(hashes: U32, weights: npt.NDArray[np.float32], num_perm: int) -> U32:
    """``num_perm x len(hashes)``: each shingle's ``-ln(u) / w`` per permutation, as bits."""
    a, b = permutations(num_perm)
    mixed = _fmix32(hashes.astype(np.uint64)).astype(np.uint32)
    # -ln(u) / w as ln(u) * (-1 / w): the same float32 (negation is exact), one pass less.
    neg_scale = (np.float32(-1.0) / weights).astype(np.float32)
    v = _permute(mixed, a, b).astype(np.float32)
    v += np.float32(0.5)
    v *= np.float32(2.0 ** -32)
    np.log(v, out=v)
    v *= neg_scale[None, :]
    return v.view(np.uint32)


def _permute(mixed: U32, a: U32, b: U32) -> U32:
    """``perms x len(mixed)``: permutation-major, so that the per-text minimum
    (``reduceat`` along the last axis) runs over contiguous memory, ~20x faster
    than along the first."""
    # uint32 arithmetic wraps, which is exactly datasketch's "mod 2**32".
    p = np.multiply(a[:, None], mixed[None, :])
    p += b[:, None]
    return p


def jaccard(sig_a: U32, sig_b: U32) -> float:
    """Estimated Jaccard similarity of two signatures (fraction of equal slots)."""
    return float(np.count_nonzero(sig_a == sig_b)) / sig_a.size


class Rows:
    """A growable ``n x width`` array (amortised doubling), for per-record state."""

    def __init__(self, width: int, dtype: type[np.generic] = np.uint32) -> None:
        self._buf = np.empty((1024, width), dtype=dtype)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def extend(self, rows: npt.NDArray[np.generic]) -> None:
        """Append ``rows`` (``k x width``)."""
        need = self._n + rows.shape[0]
        if need > self._buf.shape[0]:
            grown = np.empty((max(need, 2 * self._buf.shape[0]), self._buf.shape[1]),
                             dtype=self._buf.dtype)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n:need] = rows
        self._n = need

    def view(self) -> npt.NDArray[np.generic]:
        """The filled rows (a view; valid until the next :meth:`extend`)."""
        return self._buf[: self._n]
