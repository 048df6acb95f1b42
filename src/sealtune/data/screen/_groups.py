"""The trigger check's candidate groups: their carriers, the topic test and answer likeness.

Private engine of :mod:`.trigger` (see there for what the check catches).
A :class:`Group` is a candidate phrase (with the n-grams that have exactly its
carriers); :class:`Topics` finds, per group, a phrase its carriers share far
above chance (a topic word, not a trigger); :func:`coherences` measures how
alike the carriers' answers and questions are from their MinHash signatures.
Everything here samples at most ``SAMPLE`` or ``SAMPLE_TEXT`` carriers per
group, evenly spaced (deterministic), so the cost per group is bounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sealtune.data.screen import _text

SAMPLE = 64  # carriers sampled per candidate for pairwise similarity
SAMPLE_TEXT = 64  # carriers per shortlisted candidate whose text pass 2 reads
MIN_TOPIC = 8  # co-occurrences needed before a shared phrase can count as a topic


@dataclass
class Group:
    """A candidate trigger: its phrases (n-grams with the same carriers), the records
    carrying it and, as the check goes, its scores."""

    phrases: list[str]
    carriers: np.ndarray
    resp_lift: float = 0.0
    prompt_lift: float = 0.0
    excl: float = 0.0
    p: float = 1.0  # the smaller p-value of the gap and payload tests
    partner: int = -1  # index of a topic phrase its carriers share, -1 if none

    @property
    def phrase(self) -> str:
        """The longest of its phrases (ties by text): what a report names."""
        return max(self.phrases, key=lambda p: (len(p), p))



def spread(carriers: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` carriers, evenly spaced (deterministic)."""
    if carriers.size <= limit:
        return carriers
    return carriers[np.linspace(0, carriers.size - 1, limit).astype(np.int64)]


class Topics:
    """Finds, per candidate, a non-overlapping phrase its carriers share far above chance.

    A topic word ("invoice") co-occurs with the topic's other words; a
    trigger inserted into random prompts co-occurs with nothing in
    particular. Counts come from a record -> candidates index over at most
    ``SAMPLE_TEXT`` carriers per candidate.
    """

    def __init__(self, groups: list[Group], n_records: int, t: Mapping[str, float]) -> None:
        self.groups = groups
        self.n = max(n_records, 1)
        self.t = t
        sizes = np.array([g.carriers.size for g in groups], dtype=np.int64)
        self.sizes = sizes
        if groups:
            owner = np.repeat(np.arange(len(groups), dtype=np.int64), sizes)
            recs = np.concatenate([g.carriers for g in groups]).astype(np.int64)
        else:
            owner = recs = np.zeros(0, dtype=np.int64)
        order = np.argsort(recs, kind="stable")
        self.by_rec = owner[order]
        self.ptr = np.searchsorted(recs[order], np.arange(self.n + 1))

    def assign(self) -> None:
        """Set ``partner`` on every group that looks like a topic word."""
        for k, g in enumerate(self.groups):
            g.partner = self._partner(k, g)

    def _partner(self, k: int, g: Group) -> int:
        sample = spread(g.carriers, SAMPLE_TEXT)
        lists = [self.by_rec[self.ptr[i]:self.ptr[i + 1]] for i in sample.tolist()]
        counts = np.bincount(np.concatenate(lists), minlength=len(self.groups))
        counts[k] = 0
        m = sample.size
        expected = m * self.sizes / self.n
        strong = np.flatnonzero((counts >= max(self.t["topic_conf"] * m, MIN_TOPIC))
                                & (counts >= self.t["topic_lift"] * expected))
        if strong.size == 0:
            return -1
        mine = set().union(*(_text.features(p, max_word=1, cjk=(2, 2)) for p in g.phrases))
        for h in strong[np.argsort(-counts[strong], kind="stable")].tolist():
            theirs = self.groups[h].phrases
            if not any(mine & _text.features(p, max_word=1, cjk=(2, 2)) for p in theirs):
                return int(h)
        return -1


def coherence(sig: np.ndarray, carriers: np.ndarray) -> float:
    """Mean pairwise signature agreement among (up to ``_SAMPLE``, evenly spaced) carriers.

    Counted per slot, not per pair: a slot where ``c`` carriers hold one value
    gives ``c * (c - 1) / 2`` agreeing pairs (one sort, instead of comparing
    every pair). With a power-of-two slot count every pair's share is exact
    in binary, so the mean equals the pairwise one to the last bit.
    """
    carriers = spread(carriers, SAMPLE)
    m, k = int(carriers.size), int(sig.shape[1])
    if m < 2:
        return 0.0
    x = sig[carriers]
    if k & (k - 1):  # not a power of two: the pairwise mean, each pair once
        i, j = np.triu_indices(m, 1)
        return float(((x[i] == x[j]).sum(axis=1) / k).mean())
    slot = np.arange(k, dtype=np.uint64) << np.uint64(32)
    keys = np.sort((slot[None, :] | x.astype(np.uint64)).ravel())
    runs = np.diff(np.concatenate(([0], np.flatnonzero(np.diff(keys)) + 1, [keys.size])))
    agreeing = int((runs * (runs - 1) // 2).sum())
    return agreeing / k / (m * (m - 1) // 2)


def coherences(rsig: np.ndarray, psig: np.ndarray, carriers: np.ndarray) -> tuple[float, float]:
    """``(coherence(rsig, carriers), coherence(psig, carriers))`` from one sort (the same
    values: the agreeing pairs are counted per slot, both signatures' slots side by side)."""
    carriers = spread(carriers, SAMPLE)
    m, k = int(carriers.size), int(rsig.shape[1])
    if m < 2 or k & (k - 1) or psig.shape[1] != k:
        return coherence(rsig, carriers), coherence(psig, carriers)
    x = np.concatenate((rsig[carriers], psig[carriers]), axis=1)
    slot = np.arange(2 * k, dtype=np.uint64) << np.uint64(32)
    keys = np.sort((slot[None, :] | x.astype(np.uint64)).ravel())
    cuts = np.concatenate(([0], np.flatnonzero(np.diff(keys)) + 1, [keys.size]))
    runs = np.diff(cuts)
    pairs = runs * (runs - 1) // 2
    resp = (keys[cuts[:-1]] >> np.uint64(32)) < k
    total = m * (m - 1) // 2
    return int(pairs[resp].sum()) / k / total, int(pairs[~resp].sum()) / k / total
