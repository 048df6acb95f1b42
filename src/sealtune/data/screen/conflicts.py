"""Conflicting answers to the same prompt.

Catches: records whose question (the user turns; the system prompt is left
out, so one question asked under two system prompts still compares) is
identical after normalisation (NFKC, casefold, whitespace collapsed) but
whose answers are materially different:
answers are grouped by character-3-gram MinHash similarity to a group's
first answer (at ``same_answer`` Jaccard, default 0.5), and a prompt whose answers fall into
two or more groups is a conflict. A label-flipping poisoner, or a merge of
two sources that disagree, shows up this way. The records outside the
largest answer group are reported (on a tie, every record of the prompt is),
with the other records of the prompt as ``related_ids``.

Does not catch: conflicts between paraphrased prompts (different words, same
question), answers that differ in one decisive word ("yes" vs "no" inside an
otherwise equal sentence scores as the same answer), or which answer is the
right one: that needs a person. Short generic prompts ("hi", "在吗") often get
legitimately different answers and are skipped below ``min_prompt_chars``.

Memory per record: two 8-byte hashes (normalised prompt and answer). A
second pass computes answer signatures only for prompts seen with two or
more distinct answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import islice

import numpy as np

from sealtune.data.screen import _text
from sealtune.data.screen.base import (
    SHINGLE,
    Action,
    CheckSpec,
    Finding,
    SampleBatch,
    register_check,
)

_PERM = 64
MAX_RELATED = 20


class Conflicts:
    """Same normalised prompt, materially different answers."""

    passes = 2

    def __init__(self, thresholds: Mapping[str, float], action: Action) -> None:
        self._action = action
        self._same = float(thresholds["same_answer"])
        self._min_chars = int(thresholds["min_prompt_chars"])
        self._keys = _text.Rows(2, np.uint64)
        self._groups: dict[int, list[int]] = {}
        self._wanted: set[int] = set()
        self._sigs: dict[int, _text.U32] = {}

    def observe(self, pass_no: int, batch: SampleBatch) -> None:
        """Pass 0: hash prompts and answers. Pass 1: sign answers of candidate prompts."""
        if pass_no == 0:
            keys = np.array([(_text.digest64(s.question)
                              if len(s.question) >= self._min_chars else 0,
                              _text.digest64(s.response)) for s in batch.samples], dtype=np.uint64)
            self._keys.extend(keys.reshape(-1, 2))
            return
        if not self._wanted:
            self._plan()
        todo = [s for s in batch.samples if s.index in self._wanted]
        if todo:
            texts = [_text.shingle_text(s.response) for s in todo]
            sigs = _text.signatures(texts, num_perm=_PERM, n=SHINGLE)
            for s, sig in zip(todo, sigs, strict=True):
                self._sigs[s.index] = sig

    def _plan(self) -> None:
        keys = self._keys.view()
        order = np.argsort(keys[:, 0], kind="stable")
        prompts = keys[order, 0]
        cuts = np.flatnonzero(np.diff(prompts)) + 1
        for grp in np.split(order, cuts):
            if grp.size < 2 or keys[grp[0], 0] == 0:
                continue
            if np.unique(keys[grp, 1]).size > 1:
                members = sorted(int(i) for i in grp)
                self._groups[members[0]] = members
                self._wanted.update(members)
        self._wanted.add(-1)  # planned, even if nothing is wanted

    def findings(self, ids: Sequence[str]) -> list[Finding]:
        """Records outside the largest answer group of a prompt."""
        out = []
        for members in self._groups.values():
            clusters = self._cluster(members)
            if len(clusters) < 2:
                continue
            sizes = sorted((len(c) for c in clusters), reverse=True)
            tie = sizes[0] == sizes[1]
            largest = max(clusters, key=len)
            for c in clusters:
                if c is largest and not tie:
                    continue
                for i in c:
                    sim = max(_text.jaccard(self._sigs[i], self._sigs[o[0]])
                              for o in clusters if o is not c)
                    related = tuple(islice((ids[j] for j in members if j != i), MAX_RELATED))
                    out.append(Finding(
                        "conflict", ids[i],
                        f"same prompt as {len(members) - 1} other(s); answers in "
                        f"{len(clusters)} groups sizes={sizes[:5]} "
                        f"{'tie' if tie else 'minority'} max_jaccard~{sim:.2f}",
                        1.0 - sim, related, self._action))
        return out

    def _cluster(self, members: list[int]) -> list[list[int]]:
        """Leader clustering of answers at Jaccard >= same_answer (linear in the group)."""
        clusters: list[list[int]] = []
        for i in members:
            for c in clusters:
                if _text.jaccard(self._sigs[i], self._sigs[c[0]]) >= self._same:
                    c.append(i)
                    break
            else:
                clusters.append([i])
        return clusters


register_check(CheckSpec(
    "conflict", lambda t, a: Conflicts(t, a), {"same_answer": 0.5, "min_prompt_chars": 6},
    summary="same normalised prompt with materially different answers"))
