"""Exact and near-duplicate records.

Catches: records repeated verbatim or after normalisation (NFKC, casefold,
whitespace collapsed: full-width vs half-width, case and spacing do not hide
a copy), and near copies: records whose character 3-grams (whitespace and
punctuation ignored, so unspaced Chinese works too), weighted by rarity,
agree at least ``threshold`` (default 0.8) and whose digits are the same.
Duplicates are how a poisoner amplifies a few examples, and they inflate
memorisation of whatever they contain.

Real support data is templated: a shared system prompt and canned sentences
make most of every record, and records of one template differ only in a
product, an amount, an error code or an order number. Plain n-gram
similarity calls them copies (it dropped 52-88 % of such sets). So:

* **rarity weights**: pass 0 counts in how many records each 3-gram occurs;
  a 3-gram weighs ``ln((N + 20) / (df + 20))`` squared (a system prompt or a
  template sentence next to nothing, a product or a value a lot), and a
  3-gram of one record only (an edit's debris, which no other record can
  share) next to nothing too. Similarity is the weighted MinHash estimate
  (:func:`._text.weighted_signatures`, 128 slots);
* **own text**: a record most of whose 3-grams occur in no other record
  (more than ``1 - threshold`` + 0.1 of them) is no one's copy, however rare
  what it shares: two records that share only a customer's name are not copies;
* **numbers must agree**: records whose digits differ (an amount, a card's
  last four digits, ``E20`` vs ``E3``) are different records, however alike.
  The digits are compared in text order with whatever lies between them
  ignored, so ``1,299``, ``1 299`` and ``1299`` agree (a re-export that
  formats a number, or an edit that splits one, does not hide a copy); the
  price is that numbers whose digits only shift between them (dates
  ``1/12`` and ``11/2``) agree too, and are then told apart by the text
  alone. Records with other digits never become candidates (the number
  digest is mixed into the band keys);
* **numbers are not likeness**: a 3-gram holding a digit weighs as little
  as the most common one. Numbers are compared exactly above; counted again
  as rare 3-grams, a shared error code (``E8`` in a few dozen records)
  outweighed the product, and chats of one template that differ only in
  the product were dropped as copies (2.1 % of 20,000 templated chats);
* **no chaining**: each record is compared with cluster representatives
  only (found through 16 LSH bands of 8 slots) and joins the most similar
  one at or above the threshold, else starts a cluster. Every member is
  within ``threshold`` of its representative, so a cluster cannot drift from
  ``My 电动牙刷 shows error E20`` to ``My 空气净化器 shows error E3``.

Each copy after the first is reported (``exact_duplicate`` or
``near_duplicate``) with the id of the first record it copies (a cluster's
representative), so ``drop`` keeps exactly one per cluster; the first is never
reported. A near-duplicate finding carries ``example_masked``: the shape of
the representative's user turn, every letter and digit starred.

Measured (bench/poison.py's near-duplicate part, tests): on clean templated
support chats where the product, amount or number differs, 0.3 % of 5,000
and 1.0-1.1 % of 20,000 records are dropped (88 % before rarity weights,
0.7 % and 2.1-2.3 % before numbers stopped counting as likeness); what is
still dropped are English chats whose product differs while their error code
is the same: the product's 3-grams (``router``: ``rou``, ``ute``) are
common English. Planted copies with two small edits are found at 92-95 %
by pair over 8 seeds (the rest mostly had a digit deleted: another number,
another record).

Does not catch: paraphrases (same meaning, different words; an embedding
check is the tool for that), copies below the threshold (heavy edits, or a
short shared answer under a long distinct prompt), a copy whose digits were
changed (one deleted or replaced), or duplication spread across separate
screening runs. MinHash is
an estimate: pairs near the threshold may fall either side.

Memory per record: an 8-byte hash plus its set slot (~100 B) for exact
duplicates and for near duplicates; per cluster representative the signature
(512 B), the number digest and 16 band-index entries (~1.5 KB); per member
its representative and similarity (~100 B); the document-frequency table is
16 MB whatever the size (hashed: a collision can only make a 3-gram look
more common). Three passes.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from sealtune.data.screen import _points, _text
from sealtune.data.screen.base import (
    SHINGLE,
    Action,
    CheckSpec,
    Finding,
    Sample,
    SampleBatch,
    register_check,
)

#: Most ids listed in ``related_ids`` of one finding.
MAX_RELATED = 20
#: Slots of the document-frequency table (hashed 3-grams; 16 MB of counts).
_DF_SLOTS = 1 << 22
_DF_MASK = np.uint32(_DF_SLOTS - 1)
#: 128 weighted MinHash slots in 16 bands of 8. A pair of weighted similarity
#: 0.8 shares a band with probability 0.95, 0.9 with 0.9999, 0.5 with 0.06:
#: records of one template (weighted similarity 0.4-0.5) rarely become candidates.
_PERM, _BANDS, _ROWS = 128, 16, 8
_MIX = np.random.default_rng(14).integers(1, 2**63, size=_ROWS, dtype=np.uint64) | np.uint64(1)
_PSEUDO = 20  # pseudo-records smoothing the document frequencies
_FLOOR = np.float32(0.01)  # the least weight: every 3-gram counts a little
#: How far beyond ``1 - threshold`` a record's own 3-grams (in no other record) may go
#: before it cannot be a near copy (see ``_own_fraction``).
_DEBRIS_SLACK = 0.1
_BAND_IDS = np.arange(_BANDS, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
_NUMBERS_MIX = np.uint64(0xC2B2AE3D27D4EB4F)


class ExactDuplicates:
    """Exact copies after normalisation of the whole conversation."""

    passes = 1

    def __init__(self, thresholds: Mapping[str, float], action: Action) -> None:
        self._action = action
        self._first: dict[int, int] = {}
        self._dups: list[tuple[int, int]] = []

    def observe(self, pass_no: int, batch: SampleBatch) -> None:
        """Hash each record; remember the first index per hash."""
        for s in batch.samples:
            key = _text.digest64(s.prompt + "\x1f" + s.response)
            first = self._first.setdefault(key, s.index)
            if first != s.index:
                self._dups.append((s.index, first))

    def findings(self, ids: Sequence[str]) -> list[Finding]:
        """One finding per copy after the first."""
        return [Finding("exact_duplicate", ids[i], f"exact copy (normalised) of first={ids[f]}",
                        1.0, (ids[f],), self._action) for i, f in self._dups]


class NearDuplicates:
    """Near copies by rarity-weighted MinHash, clustered around representatives.

    Pass 0 counts in how many records each character 3-gram occurs; pass 1
    signs each record with the 3-grams weighted by rarity and clusters it
    (below); pass 2 reads the representatives of clusters that got members,
    for their masked examples.
    """

    passes = 3

    def __init__(self, thresholds: Mapping[str, float], action: Action) -> None:
        self._action = action
        self._threshold = float(thresholds["threshold"])
        self._df = np.zeros(_DF_SLOTS, dtype=np.uint32)
        self._n = 0
        self._seen: set[int] = set()
        self._bands: list[dict[int, int | list[int]]] = [{} for _ in range(_BANDS)]
        self._reps = _text.Rows(_PERM)  # signatures of the representatives only
        self._rep_index = array("q")  # row of the store -> record index
        self._rep_numbers = array("Q")  # row of the store -> digest of the record's numbers
        self._joined: dict[int, tuple[int, float]] = {}  # member -> (representative, similarity)
        self._examples: dict[int, str] = {}

    def observe(self, pass_no: int, batch: SampleBatch) -> None:
        """Pass 0: document frequencies. Pass 1: cluster. Pass 2: representatives' examples."""
        if pass_no == 0:
            hashes, _ = _text.unique_shingles(_record_points(batch), SHINGLE, tag_digits=True)
            self._df += np.bincount(hashes & _DF_MASK, minlength=_DF_SLOTS).astype(np.uint32)
            self._n += len(batch.samples)
        elif pass_no == 1:
            self._cluster(batch)
        else:
            wanted = {rep for rep, _ in self._joined.values()}
            for s in batch.samples:
                if s.index in wanted:
                    self._examples[s.index] = _text.mask_example(_user_text(s))

    def _weights(self, hashes: _text.U32) -> npt.NDArray[np.float32]:
        """Rarity weights: squared smoothed inverse document frequency.

        ``ln((N + C) / (df + C))`` squared, with ``C`` pseudo-records so that
        a small data set (where frequencies say little) is weighed about
        evenly. A 3-gram of one record only cannot be shared, so it weighs
        as little as the most common one: an edit's debris does not tell
        copies apart, what two records share that few others have does.
        """
        df = self._df[hashes & _DF_MASK].astype(np.float32)
        total = np.float32(self._n + _PSEUDO)
        idf = np.log(total / (df + np.float32(_PSEUDO)))
        return np.where((df <= 1) | _text.has_digit(hashes), _FLOOR, np.maximum(idf * idf, _FLOOR))

    def _cluster(self, batch: SampleBatch) -> None:
        hashes, offsets = _text.unique_shingles(_record_points(batch), SHINGLE, tag_digits=True)
        sigs = _text.weighted_signatures(hashes, offsets, self._weights(hashes), num_perm=_PERM)
        numbers = np.fromiter((_numbers(s) for s in batch.samples), dtype=np.uint64,
                              count=len(batch.samples))
        keys = _band_keys(sigs, numbers)
        # Per record from here on: plain Python values, not numpy scalars.
        eligible = (self._own_fraction(hashes, offsets)
                    <= 1.0 - self._threshold + _DEBRIS_SLACK).tolist()
        key_rows, number_list, seen = keys.tolist(), numbers.tolist(), self._seen
        for row, s in enumerate(batch.samples):
            digest = _text.digest64(s.prompt + "\x1f" + s.response)
            if digest in seen:  # an exact copy: reported by exact_duplicate
                continue
            seen.add(digest)
            if eligible[row]:
                rep, sim = self._best_rep(sigs[row], key_rows[row], number_list[row])
                if rep >= 0:
                    self._joined[s.index] = (rep, sim)
                    continue
            stored = len(self._rep_index)
            self._reps.extend(sigs[row:row + 1])
            self._rep_index.append(s.index)
            self._rep_numbers.append(number_list[row])
            for band, key in zip(self._bands, key_rows[row], strict=True):
                held = band.get(key)
                if held is None:
                    band[key] = stored
                elif isinstance(held, int):
                    band[key] = [held, stored]
                else:
                    held.append(stored)

    def _own_fraction(self, hashes: _text.U32,
                      offsets: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Per record, the share of its 3-grams that no other record has.

        Rarity weights make such 3-grams count next to nothing, so that an
        edit's debris does not hide a copy; but a record made mostly of its
        own text is no one's copy, however rare what it shares (two records
        that share only a customer's name). A near copy's own 3-grams are
        its edits, at most about ``1 - threshold`` of it.
        """
        single = np.concatenate(([0], np.cumsum(self._df[hashes & _DF_MASK] <= 1)))
        sums = (single[offsets[1:]] - single[offsets[:-1]]).astype(np.float32)
        counts = np.diff(offsets).astype(np.float32)
        return (sums / np.maximum(counts, np.float32(1.0))).astype(np.float32)

    def _best_rep(self, sig: _text.U32, keys: list[int], numbers: int) -> tuple[int, float]:
        """The most similar representative at or above the threshold with the same numbers.

        Returns (record index, similarity), or (-1, 0.0).
        """
        hits = [held for held in map(dict.get, self._bands, keys) if held is not None]
        if not hits:  # the common case: no representative shares a band
            return -1, 0.0
        found: set[int] = set()
        for held in hits:
            if isinstance(held, int):
                found.add(held)
            else:
                found.update(held)
        found = {row for row in found if self._rep_numbers[row] == numbers}
        if not found:
            return -1, 0.0
        rows = np.fromiter(found, dtype=np.int64, count=len(found))
        rows.sort()  # ties go to the earliest representative
        sims = (self._reps.view()[rows] == sig).mean(axis=1)
        best = int(np.argmax(sims))
        if sims[best] < self._threshold:
            return -1, 0.0
        return int(self._rep_index[int(rows[best])]), float(sims[best])

    def findings(self, ids: Sequence[str]) -> list[Finding]:
        """Every member of a cluster (never its representative), naming the representative."""
        clusters: dict[int, list[int]] = {}
        for member, (rep, _) in self._joined.items():
            clusters.setdefault(rep, []).append(member)
        out = []
        for rep, members in sorted(clusters.items()):
            members.sort()
            size = len(members) + 1
            for i in members:
                sim = self._joined[i][1]
                related = [ids[rep], *(ids[m] for m in members if m != i)]
                out.append(Finding(
                    "near_duplicate", ids[i],
                    f"near copy of first={ids[rep]} cluster_size={size} jaccard~{sim:.2f}",
                    sim, tuple(related[:MAX_RELATED]), self._action,
                    example=self._examples.get(rep)))
        return out


def _record_points(batch: SampleBatch) -> _points.Points:
    """Each record's shingle text, ``shingle_text(prompt + " " + response)``, as code points:
    the two sides' (cached by the batch) joined, as no separator survives."""
    return batch.shingled("prompt").concat(batch.shingled("response"))


_NON_DIGITS = re.compile(r"\D+")  # all but Unicode digits; the 3-gram tags see ASCII ones (NFKC'd)


def _numbers(sample: Sample) -> int:
    """A digest of the record's digits in text order: records that differ in a number differ.

    What lies between digits is ignored, so that ``1,299``, ``1 299`` and ``1299`` (a
    number formatted or split by an edit) agree.
    """
    digits = _NON_DIGITS.sub("", sample.prompt) + _NON_DIGITS.sub("", sample.response)
    return _text.digest64(digits) if digits else 0


def _user_text(sample: Sample) -> str:
    return "\n".join(m.content for m in sample.record.messages if m.role == "user")


def _band_keys(sigs: _text.U32, numbers: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """``len(sigs) x _BANDS`` 64-bit keys, one per band of ``_ROWS`` slots (wrapping arithmetic).

    The record's number digest is mixed in: only records with the same numbers can be
    near copies, so records of one template with other numbers never become candidates.
    """
    bands = sigs.reshape(len(sigs), _BANDS, _ROWS).astype(np.uint64)
    with np.errstate(over="ignore"):
        keys: npt.NDArray[np.uint64] = (bands * _MIX).sum(axis=2, dtype=np.uint64) + _BAND_IDS
        keys += numbers[:, None] * _NUMBERS_MIX
    return keys


register_check(CheckSpec(
    "exact_duplicate", lambda t, a: ExactDuplicates(t, a), {},
    summary="verbatim copies after NFKC/casefold/whitespace normalisation"))
register_check(CheckSpec(
    "near_duplicate", lambda t, a: NearDuplicates(t, a), {"threshold": 0.8},
    summary="near copies: MinHash LSH over character 3-grams, Jaccard >= threshold"))
