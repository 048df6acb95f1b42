"""Exact and near-duplicate records.

Catches: records repeated verbatim or after normalisation (NFKC, casefold,
whitespace collapsed: full-width vs half-width, case and spacing do not hide
a copy), and near copies whose character-3-gram Jaccard similarity is at
least ``threshold`` (default 0.8; whitespace and punctuation ignored),
found with datasketch's ``MinHashLSH`` (banded for ``threshold - 0.15``, for
recall) over 128-permutation MinHash signatures and confirmed on the
signatures.
Character n-grams make this work on unspaced Chinese as well as English.
Duplicates are how a poisoner amplifies a few examples, and they inflate
memorisation of whatever they contain.

Each copy after the first is reported (``exact_duplicate`` or
``near_duplicate``) with the id of the first record it copies, so ``drop``
keeps exactly one; the first is never reported. Near duplicates form
clusters (union of confirmed pairs), reported with the cluster's first id.

Does not catch: paraphrases (same meaning, different words; an embedding
check is the tool for that), copies below the threshold (heavy edits, or a
short shared answer under a long distinct prompt), or duplication spread
across separate screening runs. MinHash is an estimate: pairs near the
threshold may fall either side (bench/poison.py measures precision/recall).

Memory per record: an 8-byte hash plus its dict slot (~100 B) for exact
duplicates; for near duplicates the signature (512 B) and the LSH index
entry (16 band keys of 8 bytes in dict buckets, roughly 2 KB). Single pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from datasketch import LeanMinHash, MinHashLSH  # type: ignore[import-untyped]

from sealtune.data.screen import _text
from sealtune.data.screen.base import (
    NUM_PERM,
    Action,
    CheckSpec,
    Finding,
    SampleBatch,
    register_check,
)

#: Most ids listed in ``related_ids`` of one finding.
MAX_RELATED = 20


def _band_key(b: bytes) -> bytes:
    # Compress LSH band keys to 8 bytes: a 13-value band is 104 bytes otherwise.
    return hashlib.blake2b(b, digest_size=8).digest()


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
    """Near copies by MinHash LSH over character n-grams, reported as clusters."""

    passes = 1

    def __init__(self, thresholds: Mapping[str, float], action: Action) -> None:
        self._action = action
        self._threshold = float(thresholds["threshold"])
        # Candidates come from a lower LSH threshold, then are confirmed on the
        # signatures: tuned for 0.8 itself, the banding (9 x 13) would miss a
        # pair of true similarity 0.8 six times in ten; at 0.65 (16 x 8) once in twenty.
        lsh_at = max(0.3, self._threshold - 0.15)
        self._lsh = MinHashLSH(threshold=lsh_at, num_perm=NUM_PERM, hashfunc=_band_key)
        self._seen: set[int] = set()
        self._parent: dict[int, int] = {}
        self._best: dict[int, float] = {}
        self._sigs = _text.Rows(NUM_PERM)

    def observe(self, pass_no: int, batch: SampleBatch) -> None:
        """Query the index with each record, confirm candidates, then insert it."""
        sigs = batch.signatures("record")
        self._sigs.extend(sigs)  # row i of the store is record index i
        store = self._sigs.view()
        for row, s in enumerate(batch.samples):
            key = _text.digest64(s.prompt + "\x1f" + s.response)
            if key in self._seen:  # an exact copy: reported by exact_duplicate
                continue
            self._seen.add(key)
            mh = LeanMinHash(seed=_text.MINHASH_SEED, hashvalues=sigs[row], scheme="affine32")
            for other in self._lsh.query(mh):
                sim = _text.jaccard(sigs[row], store[other])
                if sim >= self._threshold:
                    self._union(s.index, other, sim)
            self._lsh.insert(s.index, mh, check_duplication=False)

    def _find(self, i: int) -> int:
        root = i
        while self._parent.get(root, root) != root:
            root = self._parent[root]
        while i != root:  # path compression
            self._parent[i], i = root, self._parent.get(i, i)
        return root

    def _union(self, i: int, j: int, sim: float) -> None:
        ri, rj = self._find(i), self._find(j)
        if ri != rj:  # the smaller index (seen first) stays the root
            lo, hi = min(ri, rj), max(ri, rj)
            self._parent[hi] = lo
        for k in (i, j):
            self._best[k] = max(self._best.get(k, 0.0), sim)

    def findings(self, ids: Sequence[str]) -> list[Finding]:
        """Every cluster member except the first, naming the first and a few others."""
        clusters: dict[int, list[int]] = {}
        for i in self._best:
            clusters.setdefault(self._find(i), []).append(i)
        out = []
        for root, members in clusters.items():
            members.sort()
            for i in members:
                if i == root:
                    continue
                related = [ids[root], *(ids[m] for m in members if m not in (i, root))]
                out.append(Finding(
                    "near_duplicate", ids[i],
                    f"near copy of first={ids[root]} cluster_size={len(members)} "
                    f"jaccard~{self._best[i]:.2f}",
                    self._best[i], tuple(related[:MAX_RELATED]), self._action))
        return out


register_check(CheckSpec(
    "exact_duplicate", lambda t, a: ExactDuplicates(t, a), {},
    summary="verbatim copies after NFKC/casefold/whitespace normalisation"))
register_check(CheckSpec(
    "near_duplicate", lambda t, a: NearDuplicates(t, a), {"threshold": 0.8},
    summary="near copies: MinHash LSH over character 3-grams, Jaccard >= threshold"))
