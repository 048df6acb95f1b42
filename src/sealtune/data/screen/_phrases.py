"""Phrase features of a whole batch of texts as numbers, and their exact interning.

Private engine of the trigger check. :func:`batch_phrases` finds, for many
texts at once and in a few numpy operations, exactly the phrases that
:func:`._text.features` finds per text (word 1..``max_word``-grams of
Latin-script words, character ``cjk``-grams of CJK runs), each as a span of a
canonical buffer (the tokens laid out with one space between the words of a
run) and a 64-bit polynomial hash. :class:`PhraseTable` turns the hashes into
dense phrase ids.

Hashes are never trusted: a polynomial hash modulo 2**64 is easy to collide
on purpose, and the texts are attacker data. Every occurrence is compared
code point by code point with the first occurrence of its hash in the batch,
and that one with the phrase the table holds for the hash; an occurrence that
differs (a collision) is interned by its string instead. Collisions cost
speed, never a wrong id: two phrases share an id exactly when they are equal.

Memory: per batch, a few arrays the size of the batch's phrase occurrences
(about 40 B per occurrence); per distinct phrase interned, its hash and id
in a dict (~130 B) and its code points (4 B a character, up to twice that
in the growing buffer). Nothing per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from sealtune.data.screen import _points, _text

I64 = npt.NDArray[np.int64]
_P = int(_text._P)
_MASK64 = (1 << 64) - 1
_P_INV = pow(_P, -1, 1 << 64)  # P is odd: invertible mod 2**64
_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x3040, 0x30FF),
               (0xAC00, 0xD7AF))
_BLOCK = 1 << 17  # code points compared per block (see _same)
_JOINERS = np.array([ord(c) for c in "-_.'"], dtype=np.uint32)
@dataclass(frozen=True)
class Phrases:
    """The phrase occurrences of a batch of texts.

    Attributes:
        buf: the canonical buffer (code points); occurrence ``i`` is
            ``buf[start[i]:start[i] + length[i]]``.
        owner: index of the text each occurrence comes from (ascending).
        start: where each occurrence begins in ``buf``.
        length: its length in code points.
        key: its 64-bit polynomial hash (not unique: see :class:`PhraseTable`).
    """

    buf: npt.NDArray[np.uint32]
    owner: I64
    start: I64
    length: I64
    key: npt.NDArray[np.uint64]

    def text(self, i: int) -> str:
        """Occurrence ``i`` as a string."""
        s = int(self.start[i])
        return self.buf[s:s + int(self.length[i])].tobytes().decode("utf-32-le", "surrogatepass")


def phrase_key(phrase: str) -> int:
    """The 64-bit hash :func:`batch_phrases` gives ``phrase``."""
    acc = 0
    for c in phrase:
        acc = (acc * _P + ord(c)) & _MASK64
    return acc


def _tokens(cps: npt.NDArray[np.uint32]) -> tuple[I64, I64, npt.NDArray[np.bool_]]:
    """Spans ``(start, end)`` and kinds (CJK or not) of :data:`._text._TOKEN`'s matches.

    A CJK token is a maximal run of CJK characters; a word token a maximal
    run of word characters and of joiners (``-_.'``) with a word character
    on both sides, which is what the regex's leftmost-greedy matches are.
    """
    cjk = np.zeros(cps.size, dtype=bool)
    for lo, hi in _CJK_RANGES:
        cjk |= (cps >= lo) & (cps <= hi)
    word = _points.word_chars(cps) & ~cjk
    inner = np.zeros(cps.size, dtype=bool)
    if cps.size > 2:
        inner[1:-1] = np.isin(cps[1:-1], _JOINERS) & word[:-2] & word[2:]
    word |= inner
    kind = cjk.astype(np.int8) - word.astype(np.int8)  # 1 CJK, -1 word, 0 neither
    edges = np.flatnonzero(np.diff(kind, prepend=np.int8(0), append=np.int8(0)))
    starts, ends = edges[:-1], edges[1:]
    keep = kind[starts] != 0
    starts, ends = starts[keep], ends[keep]
    return starts, ends, cjk[starts]


def batch_phrases(texts: Sequence[str], *, max_word: int = 3,
                  cjk: tuple[int, int] = (2, 4)) -> Phrases:
    """Every phrase occurrence of every text, as :func:`._text.features` would find them.

    ``features(texts[j]) == {p.text(i) for i in range(len(p.key)) if p.owner[i] == j}``;
    a phrase may occur several times in one text.
    """
    cps = _points.Points.of(["\x00".join(texts)]).cps
    bounds = np.cumsum([len(t) + 1 for t in texts], dtype=np.int64)
    t_start, t_end, t_cjk = _tokens(cps)
    tok_owner = np.searchsorted(bounds, t_start, side="right")
    count = t_start.size
    # Runs of words: broken by a CJK token (which is a run of its own) or a new text.
    brk = np.ones(count, dtype=bool)
    if count > 1:
        brk[1:] = (tok_owner[1:] != tok_owner[:-1]) | t_cjk[1:] | t_cjk[:-1]
    run = np.cumsum(brk)
    # The canonical buffer: each token, then a space if the next token continues its run.
    t_len = t_end - t_start
    c_start = np.concatenate(([0], np.cumsum(t_len + 1)[:-1])).astype(np.int64)
    buf = np.zeros(int(t_len.sum()) + count, dtype=np.uint32)
    in_tok = np.repeat(np.arange(count, dtype=np.int64), t_len)
    src = np.arange(in_tok.size, dtype=np.int64) + np.repeat(t_start - np.concatenate(
        ([0], np.cumsum(t_len)[:-1])).astype(np.int64), t_len)
    buf[np.arange(in_tok.size, dtype=np.int64) + in_tok] = cps[src]
    buf[(c_start + t_len)[:-1][~brk[1:]]] = 0x20
    parts: list[tuple[I64, I64, I64]] = []  # (owner, start, length)
    words = np.flatnonzero(~t_cjk)
    for n in range(1, max_word + 1):
        first = words[words + n - 1 < count]
        first = first[run[first + n - 1] == run[first]]
        last_end = c_start[first + n - 1] + t_len[first + n - 1]
        parts.append((tok_owner[first], c_start[first], last_end - c_start[first]))
    runs = np.flatnonzero(t_cjk)
    for n in range(cjk[0], cjk[1] + 1):
        each = np.maximum(t_len[runs] - n + 1, 0)
        tok = np.repeat(runs, each)
        offset = np.arange(tok.size, dtype=np.int64) - np.repeat(
            np.cumsum(each) - each, each)
        parts.append((tok_owner[tok], c_start[tok] + offset, np.full(tok.size, n, np.int64)))
    owner, start, length = (np.concatenate([p[k] for p in parts]).astype(np.int64)
                            for k in range(3))
    order = np.argsort(owner, kind="stable")
    owner, start, length = owner[order], start[order], length[order]
    return Phrases(buf, owner, start, length, _keys(buf, start, length))


def distinct_ids(table: PhraseTable, texts: list[str]) -> tuple[npt.NDArray[np.uint32], I64]:
    """Each text's distinct phrase ids, interned in ``table`` (text by text, ascending),
    and how many each text has."""
    found = batch_phrases(texts)
    pairs = np.sort((found.owner.astype(np.uint64) << np.uint64(32))
                    | table.intern(found).astype(np.uint64))
    if pairs.size:  # np.unique's hash-based path is slower than sort and compare
        pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]
    ids = (pairs & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    counts = np.bincount((pairs >> np.uint64(32)).astype(np.int64), minlength=len(texts))
    return ids, counts


def _keys(buf: npt.NDArray[np.uint32], start: I64, length: I64) -> npt.NDArray[np.uint64]:
    """Polynomial hashes of spans: ``sum c[t] P**(end-1-t)``, from one prefix sum.

    With ``S[k] = sum_{t<k} c[t] P**-t``, a span's hash is ``P**(end-1) (S[end] - S[start])``
    (all mod 2**64, where ``P`` is invertible).
    """
    if start.size == 0:
        return np.zeros(0, dtype=np.uint64)
    p_pow = np.empty(buf.size + 1, dtype=np.uint64)
    p_pow[0] = 1
    q_pow = p_pow.copy()
    p_pow[1:] = _P
    q_pow[1:] = _P_INV
    np.cumprod(p_pow, out=p_pow)  # uint64 products wrap: powers mod 2**64
    np.cumprod(q_pow, out=q_pow)
    prefix = np.zeros(buf.size + 1, dtype=np.uint64)
    np.cumsum(buf.astype(np.uint64) * q_pow[:-1], out=prefix[1:])
    end = start + length
    key: npt.NDArray[np.uint64] = p_pow[end - 1] * (prefix[end] - prefix[start])
    return key


def _same(buf_a: npt.NDArray[np.uint32], a: I64, buf_b: npt.NDArray[np.uint32], b: I64,
          length: I64) -> npt.NDArray[np.bool_]:
    """Whether spans ``buf_a[a:a+length]`` and ``buf_b[b:b+length]`` are equal, pairwise.

    Compared code point by code point, in blocks of about ``_BLOCK`` code points
    (so the index arrays stay a few MB whatever the batch).
    """
    same = np.ones(a.size, dtype=bool)
    ends = np.cumsum(length)
    lo = 0
    while lo < a.size:
        hi = max(lo + 1, int(np.searchsorted(ends, ends[lo] - length[lo] + _BLOCK)))
        part = length[lo:hi]
        pair = np.repeat(np.arange(part.size, dtype=np.int64), part)
        offset = np.arange(pair.size, dtype=np.int64) - np.repeat(np.cumsum(part) - part, part)
        differs = (buf_a[np.repeat(a[lo:hi], part) + offset]
                   != buf_b[np.repeat(b[lo:hi], part) + offset])
        same[lo:hi] = np.bincount(pair[differs], minlength=part.size) == 0
        lo = hi
    return same


class PhraseTable:
    """Dense ids for phrases, interned from :class:`Phrases` by hash and verified exactly.

    Ids are given in order of first sight. Holds each distinct phrase once
    (its code points and hash); :meth:`text` gives it back as a string.
    """

    def __init__(self) -> None:
        self._by_key: dict[int, int] = {}  # hash -> id of the first phrase seen with it
        self._by_text: dict[str, int] = {}  # phrases whose hash an earlier, other phrase holds
        self._cps = Grow(np.uint32)  # every phrase's code points, one after another
        self._ends = Grow(np.int64)  # phrase i is _cps[_ends[i - 1]:_ends[i]] (0 for i = 0)

    def __len__(self) -> int:
        return len(self._ends)

    def text(self, i: int) -> str:
        """Phrase ``i`` as a string."""
        ends = self._ends.view()
        lo = int(ends[i - 1]) if i else 0
        return self._cps.view()[lo:int(ends[i])].tobytes().decode("utf-32-le", "surrogatepass")

    def find(self, phrase: str) -> int:
        """The id of ``phrase``, or -1 if it was never interned."""
        i = self._by_key.get(phrase_key(phrase))
        if i is not None and self.text(i) == phrase:
            return i
        return self._by_text.get(phrase, -1)

    def intern(self, p: Phrases) -> npt.NDArray[np.uint32]:
        """The id of every occurrence of ``p`` (new phrases get the next ids)."""
        keys, first, inverse = np.unique(p.key, return_index=True, return_inverse=True)
        rep = first[inverse]  # each occurrence's first occurrence with the same hash
        ok = p.length == p.length[rep]
        check = np.flatnonzero(ok & (rep != np.arange(rep.size)))
        ok[check] = _same(p.buf, p.start[check], p.buf, p.start[rep[check]], p.length[check])
        ids = np.fromiter(map(self._by_key.get, keys.tolist(), repeat(-1)), dtype=np.int64,
                          count=keys.size)
        fresh = np.flatnonzero(ids < 0)
        ids[fresh] = np.arange(len(self), len(self) + fresh.size)
        self._by_key.update(zip(keys[fresh].tolist(), ids[fresh].tolist(), strict=True))
        # A hash held from an earlier batch: is this batch's phrase the one held for it?
        held = np.flatnonzero(ids < len(self))
        rows = ids[held]
        ends = self._ends.view()
        lows = np.where(rows > 0, ends[np.maximum(rows - 1, 0)], 0)
        stored_len = ends[rows] - lows
        equal = stored_len == p.length[first[held]]
        equal[equal] = _same(p.buf, p.start[first[held[equal]]], self._cps.view(),
                             lows[equal], stored_len[equal])
        self._append(p, first[fresh])
        ok &= np.isin(inverse, held[~equal], invert=True)
        out = ids[inverse]
        for o in np.flatnonzero(~ok).tolist():  # hash collisions: intern by the string
            out[o] = self._exact(p.text(o), int(p.key[o]))
        return out.astype(np.uint32)

    def _exact(self, phrase: str, key: int) -> int:
        i = self._by_key.get(key)
        if i is not None and self.text(i) == phrase:
            return i
        i = self._by_text.get(phrase)
        if i is None:
            i = self._by_text[phrase] = len(self)
            cps = np.frombuffer(phrase.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
            self._cps.extend(cps)
            self._ends.extend(np.array([len(self._cps)], dtype=np.int64))
        return i

    def _append(self, p: Phrases, occ: I64) -> None:
        """Store the phrases of occurrences ``occ`` (in order) as the next ids."""
        length = p.length[occ]
        offset = np.arange(int(length.sum()), dtype=np.int64) - np.repeat(
            np.cumsum(length) - length, length)
        self._cps.extend(p.buf[np.repeat(p.start[occ], length) + offset])
        self._ends.extend(len(self._cps) - int(length.sum()) + np.cumsum(length))


class Grow:
    """A growable 1-D array (amortised doubling)."""

    def __init__(self, dtype: type[np.generic]) -> None:
        self._buf = np.empty(1024, dtype=dtype)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def extend(self, values: npt.NDArray[np.generic]) -> None:
        """Append ``values``."""
        need = self._n + values.size
        if need > self._buf.size:
            grown = np.empty(max(need, 2 * self._buf.size), dtype=self._buf.dtype)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n:need] = values
        self._n = need

    def view(self) -> npt.NDArray[Any]:
        """The filled part (a view; valid until the next :meth:`extend`)."""
        return self._buf[: self._n]
