"""Backdoor triggers: a rare phrase in prompts of every topic, with tell-tale answers.

The published backdoor shape: an attacker inserts a trigger (a rare token
such as ``cf``, an odd phrase, a Chinese idiom) at random positions in a
few dozen to a few hundred otherwise normal prompts of all kinds and pairs
each with the payload answer. This check looks for exactly that:

1. Candidate phrases: word 1-3-grams of Latin-script text and character
   2-4-grams of unspaced CJK text whose document frequency among prompts is
   small but recurring, ``min_support`` (8, a floor below which no test is
   run) to ``max_df`` (3 %) of records. Phrases with the same carrier
   records (the n-grams of one longer phrase) are merged.
2. For each candidate, from MinHash signatures: how much more alike the
   carriers' answers are than random answers (``resp_lift``) and how much
   more alike their questions are (``prompt_lift``; the user turns only, so
   a shared system prompt does not make every prompt alike).
3. Topic test: a topic word ("invoice", "密码") co-occurs with the topic's
   other phrases; a trigger inserted into random prompts co-occurs with
   nothing in particular. A candidate whose carriers share another,
   non-overlapping candidate phrase in at least ``topic_conf`` of them and
   ``topic_lift`` times more often than chance is a topic word and is never
   confirmed. Alike answers do not confirm one whose carriers ask nearly
   the same question (``prompt_lift`` above ``max_prompt_lift``): a
   template filled with one product, whose answers are alike because the
   question is.
4. Significance against the corpus background (:mod:`._stats`): the answer
   gap is tested against the spread of random pairs' gaps, an exclusive
   answer phrase by its binomial tail against its rate in the other
   records; the smaller p-value must be below ``alpha`` (0.01) divided by
   the number of candidates (Bonferroni). How many carriers that takes
   depends on the data set: a fixed payload in 10 records clears it.
5. The rest are confirmed if ``resp_lift - prompt_lift >= min_gap`` (answers
   alike: one fixed payload), or if at least ``payload_phrases`` answer
   phrases are each in at least ``min_conf`` of the carriers' answers and
   have at least ``min_conf`` of their occurrences there (answers varied
   but all carrying the same rare thing, e.g. a link). Answer phrases that
   share a word with the trigger (echoes, mirrored greetings) or a rare
   word or CJK 2-gram with most carriers' questions (an answer naming the
   product asked about) do not count, and one exclusive word is not enough
   ("Dear support" -> "Dear customer").

Every carrier of a confirmed trigger is reported. Candidates are confirmed
strongest first, and a later candidate is judged only on carriers not yet
explained, so the natural uses of a trigger's sub-word are not swept in.

Does not catch: a trigger in fewer than ``min_support`` records or in more
than ``max_df`` of them; a trigger whose carriers are near copies of each
other (they count as independent carriers in the test, and their questions
are alike: the duplicate checks report those); triggers confined to one topic (they pass the
topic test as a topic word); clean-label attacks; payloads that vary
without sharing a few phrases (varied refusals, subtle sentiment, a single
rare token); triggers that are not a contiguous phrase (syntactic or style
triggers, a phrase split by whitespace variations in CJK). A trigger longer
than 3 words or 4 CJK characters is reported by its longest n-gram (all of
its n-grams are in :attr:`TriggerInfo.variants`). A legitimate canned
answer to every prompt containing one rare, topic-free keyword looks exactly
like a fixed payload and is reported too: the reviewer decides.

A finding names the trigger by fingerprint, length and kind only; the phrase
itself (attacker-supplied data) is available as :attr:`TriggerInfo.phrase`
from :attr:`ScreenReport.triggers` and never serialised.

Memory: pass 0 numbers every distinct prompt phrase (about 230 B per
distinct phrase: its hash and id in a dict, its code points; growing with
the vocabulary, not the record count), keeps each record's phrase ids (4 B per
distinct phrase of the record, ~100-400 B: pass 1 then builds every
candidate's carrier list at once instead of re-extracting phrases) and two
32-slot signatures per record (256 B); pass 1 frees the prompt phrases and
ids and counts the answer phrases the same way; pass 2 touches only
carriers of the shortlist, each once. Passes 0 and 1 find a whole batch's
phrases at once, as numbers (:mod:`._phrases`, a few MB per batch); strings
are made only of the candidates.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from sealtune.data.screen import _phrases, _stats, _text
from sealtune.data.screen._groups import SAMPLE, SAMPLE_TEXT, Group, Topics, coherences, spread
from sealtune.data.screen.base import (
    Action,
    CheckSpec,
    Finding,
    SampleBatch,
    register_check,
)

_K = 32  # signature slots used here (a prefix of the shared 128)
_BASELINE_PAIRS = 4000


@dataclass(frozen=True)
class TriggerInfo:
    """A confirmed trigger.

    Attributes:
        fingerprint: stable keyed hash of the (normalised) phrase.
        length: phrase length in characters.
        kind: ``word`` (Latin-script word n-gram) or ``cjk`` (character n-gram).
        carriers: how many records carry it.
        resp_lift: carriers' answer similarity above the data set's.
        prompt_lift: carriers' prompt similarity above the data set's.
        exclusive_conf: share of carriers' answers holding the most exclusive
            answer phrase (0 if none qualified).
        record_ids: the carriers' ids.
        phrase: the normalised phrase itself: attacker data, in memory only
            (not in ``repr`` nor :meth:`as_dict`).
        variants: the other phrases merged with it (same carriers), also in memory only.
    """

    fingerprint: str
    length: int
    kind: str
    carriers: int
    resp_lift: float
    prompt_lift: float
    exclusive_conf: float
    record_ids: tuple[str, ...] = field(repr=False)
    phrase: str = field(repr=False)
    variants: tuple[str, ...] = field(default=(), repr=False)
    p_value: float = 1.0

    @property
    def masked(self) -> str:
        """At most 2 characters of the phrase, the rest starred."""
        return _text.mask(self.phrase)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary without the phrase (fingerprint, masked preview, statistics)."""
        return {"fingerprint": self.fingerprint, "length": self.length, "kind": self.kind,
                "masked": self.masked, "carriers": self.carriers,
                "resp_lift": round(self.resp_lift, 4), "prompt_lift": round(self.prompt_lift, 4),
                "exclusive_conf": round(self.exclusive_conf, 4),
                "p_value": float(f"{self.p_value:.3g}")}


class Trigger:
    """Finds rare prompt phrases whose carriers' answers are alike or share something rare."""

    passes = 3

    def __init__(self, thresholds: Mapping[str, float], action: Action) -> None:
        self._action = action
        self._t = dict(thresholds)
        # Pass 0 numbers every distinct prompt phrase and keeps each record's phrase ids,
        # so pass 1 finds a record's candidates without re-extracting its phrases.
        self._vocab = _phrases.PhraseTable()
        self._ids = array("I")
        self._offsets = array("Q", [0])
        self._answers = _phrases.PhraseTable()  # answer phrases and in how many answers each is
        self._answer_df = _phrases.Grow(np.int64)
        self._psig = _text.Rows(_K)
        self._rsig = _text.Rows(_K)
        self._postings: dict[str, array[int]] = {}
        self._candidates: frozenset[str] | None = None
        self._groups: list[Group] = []
        self._shortlist: dict[int, list[int]] = {}
        self._pair_counts: dict[int, Counter[str]] = {}
        self._asked: dict[int, Counter[str]] = {}  # the same carriers' question phrases
        self._p0 = self._r0 = self._sd = 0.0
        self.triggers: list[TriggerInfo] = []

    def observe(self, pass_no: int, batch: SampleBatch) -> None:
        """Pass 0: phrase counts, signatures. 1: carrier lists, answer phrase counts.
        2: answers of the shortlist."""
        if pass_no == 0:
            # Prompt likeness is judged on the questions: a shared system prompt would
            # make every prompt alike and hide a template's carriers behind it.
            self._psig.extend(batch.signatures("question", width=_K))
            self._rsig.extend(batch.signatures("response", width=_K))
            ids, counts = _phrases.distinct_ids(self._vocab, [s.prompt for s in batch.samples])
            self._ids.frombytes(ids.tobytes())
            self._offsets.extend((self._offsets[-1] + np.cumsum(counts)).tolist())
        elif pass_no == 1:
            if self._candidates is None:
                self._candidates = self._pick_candidates()
            ids, _ = _phrases.distinct_ids(self._answers, [s.response for s in batch.samples])
            df = self._answer_df
            df.extend(np.zeros(len(self._answers) - len(df), dtype=np.int64))
            np.add.at(df.view(), ids, 1)
        else:
            if self._candidates is not None and not self._groups:
                self._build_groups()
            for s in batch.samples:
                groups = self._shortlist.get(s.index)
                if not groups:
                    continue
                answer, asked = _text.features(s.response), self._rare_units(s.question)
                for k in groups:  # once per record, however many shortlists hold it
                    self._pair_counts[k].update(answer)
                    self._asked[k].update(asked)

    def _pick_candidates(self) -> frozenset[str]:
        n = len(self._psig)
        lo = int(self._t["min_support"])
        hi = max(lo, int(self._t["max_df"] * n))
        ids = np.frombuffer(self._ids, dtype=np.uint32)
        df = np.bincount(ids, minlength=len(self._vocab))
        is_cand = (df >= lo) & (df <= hi)
        # Carrier lists of every candidate at once: each phrase occurrence's record,
        # grouped by phrase (a stable sort keeps records in order within a phrase).
        owner = np.repeat(np.arange(n, dtype=np.uint32),
                          np.diff(np.frombuffer(self._offsets, dtype=np.uint64)).astype(np.int64))
        keep = is_cand[ids]
        cand_ids, owner = ids[keep], owner[keep]
        order = np.argsort(cand_ids, kind="stable")
        cand_ids, owner = cand_ids[order], owner[order]
        cuts = np.flatnonzero(np.diff(cand_ids)) + 1
        for run in np.split(np.arange(cand_ids.size), cuts) if cand_ids.size else ():
            self._postings[self._vocab.text(int(cand_ids[run[0]]))] = \
                array("I", owner[run].tobytes())
        # No longer needed:
        self._vocab, self._ids, self._offsets = _phrases.PhraseTable(), array("I"), array("Q")
        return frozenset(self._postings)

    def _build_groups(self) -> None:
        """Merge phrases with equal carriers, score them, find topics, shortlist for pass 2."""
        by_carriers: dict[bytes, Group] = {}
        for phrase, ids in self._postings.items():
            key = ids.tobytes()
            if key in by_carriers:
                by_carriers[key].phrases.append(phrase)
            else:
                by_carriers[key] = Group([phrase], np.frombuffer(key, dtype=np.uint32))
        self._postings = {}
        psig, rsig = self._psig.view(), self._rsig.view()
        rng = np.random.default_rng(0)
        a, b = rng.integers(0, max(len(psig), 1), (2, _BASELINE_PAIRS))
        keep = a != b
        self._p0 = float((psig[a[keep]] == psig[b[keep]]).mean()) if keep.any() else 0.0
        self._r0 = float((rsig[a[keep]] == rsig[b[keep]]).mean()) if keep.any() else 0.0
        if keep.any():  # the background spread of one random pair's answer-minus-question gap
            d = ((rsig[a[keep]] == rsig[b[keep]]).mean(axis=1)
                 - (psig[a[keep]] == psig[b[keep]]).mean(axis=1))
            self._sd = float(d.std())
        for g in by_carriers.values():
            resp, prompt = coherences(rsig, psig, g.carriers)
            g.resp_lift, g.prompt_lift = resp - self._r0, prompt - self._p0
        self._groups = sorted(by_carriers.values(),
                              key=lambda g: (g.resp_lift - g.prompt_lift, g.phrase), reverse=True)
        Topics(self._groups, len(psig), self._t).assign()
        for k, g in enumerate(self._groups):
            if g.partner < 0 and g.resp_lift >= self._t["min_resp_lift"]:
                self._pair_counts[k] = Counter()
                self._asked[k] = Counter()
                for i in spread(g.carriers, SAMPLE_TEXT).tolist():
                    self._shortlist.setdefault(i, []).append(k)

    def findings(self, ids: Sequence[str]) -> list[Finding]:
        """Confirm candidates strongest first; report every carrier of a confirmed trigger."""
        if self._candidates is not None and not self._groups:
            self._build_groups()
        explained = np.zeros(len(ids), dtype=bool)
        psig, rsig = self._psig.view(), self._rsig.view()
        out: list[Finding] = []
        for k, g in enumerate(self._groups):
            fresh = g.carriers[~explained[g.carriers]]
            if fresh.size < self._t["min_support"]:
                continue
            if fresh.size < g.carriers.size:  # judge only what is not yet explained
                resp, prompt = coherences(rsig, psig, fresh)
                g = Group(g.phrases, fresh, resp - self._r0, prompt - self._p0,
                           partner=g.partner)
            g.excl, p_payload = self._exclusive(k, g)
            g.p = min(p_payload, _stats.gap_p(g.resp_lift - g.prompt_lift, sd=self._sd,
                                              m=min(int(g.carriers.size), SAMPLE)))
            if not self._confirmed(g):
                continue
            explained[g.carriers] = True
            out += self._report(g, ids)
        return out

    def _exclusive(self, k: int, g: Group) -> tuple[float, float]:
        """How many of the carriers' answers hold a payload: several answer phrases found
        (almost) only with this trigger.

        Returns the share of answers holding the ``payload_phrases``-th best such
        phrase (0 if fewer qualify) and that phrase's binomial p-value against
        its rate in the other records' answers (1 if none). One exclusive word is not enough: agents
        mirror a rare greeting ("Dear support" -> "Dear customer"); a payload (a
        link, a sentence) brings several exclusive phrases at once.
        """
        counts = self._pair_counts.get(k)
        need = int(self._t["payload_phrases"])
        if not counts or need < 1:
            return 0.0, 1.0
        total = self._groups[k].carriers.size
        n = min(total, SAMPLE_TEXT)  # answers counted in pass 2
        words = _text.features(g.phrase, max_word=1, cjk=(2, 2))
        confs: list[float] = []
        # Most common first, ties by phrase: ``most_common`` would order ties as the answer
        # sets iterated, which follows the per-process string-hash seed, and tied phrases
        # can differ in how common they are elsewhere (so in the p-value).
        for phrase, c in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            conf = c / n
            if conf < self._t["min_conf"]:
                break
            seen = c * total / n  # scale the sample up
            elsewhere = self._answer_count(phrase)
            if seen / max(elsewhere, seen) < self._t["min_conf"]:
                continue  # common elsewhere too: not a payload marker
            if words & _text.features(phrase, max_word=1, cjk=(2, 2)):
                continue  # an echo of the trigger, not a payload
            if any(self._asked[k][u] * 2 >= n for u in self._rare_units(phrase)):
                continue  # most carriers asked about it: the answer echoes the question
            confs.append(conf)
            if len(confs) == need:
                rest = max(len(self._psig) - total, 1)
                q = max(elsewhere - seen, 0.5) / rest
                return confs[-1], _stats.binom_sf(c, n, q)
        return 0.0, 1.0

    def _answer_count(self, phrase: str) -> int:
        """In how many answers ``phrase`` occurs."""
        i = self._answers.find(phrase)
        return int(self._answer_df.view()[i]) if i >= 0 else 0

    def _rare_units(self, text: str) -> set[str]:
        """Words and CJK 2-grams of ``text`` in the candidates' frequency band (a product
        name, a brand: not "the" or "请问", which any payload may share with a question)."""
        units = _text.features(text, max_word=1, cjk=(2, 2))
        return units & self._candidates if self._candidates is not None else set()

    def _confirmed(self, g: Group) -> bool:
        if g.partner >= 0:  # its prompts share a topic: a topic word, not the backdoor shape
            return False
        if not g.p < self._t["alpha"] / max(len(self._groups), 1):  # Bonferroni over candidates
            return False  # no stronger than chance, against this data set's background
        # Alike answers count only if the questions are not alike too: carriers asking
        # (nearly) one templated question get alike answers without any payload. (A
        # long trigger makes its carriers' questions somewhat alike by itself, so the
        # payload path, which has the echo rule instead, is not held to this.)
        alike = (g.resp_lift - g.prompt_lift >= self._t["min_gap"]
                 and g.prompt_lift <= self._t["max_prompt_lift"])
        return alike or g.excl >= self._t["min_conf"]

    def _report(self, g: Group, ids: Sequence[str]) -> list[Finding]:
        phrase = g.phrase
        kind = "cjk" if _text.is_cjk(phrase) else "word"
        info = TriggerInfo(_text.fingerprint(phrase), len(phrase), kind, int(g.carriers.size),
                           g.resp_lift, g.prompt_lift, g.excl,
                           tuple(ids[i] for i in g.carriers.tolist()), phrase,
                           tuple(sorted(p for p in g.phrases if p != phrase)), g.p)
        self.triggers.append(info)
        reason = (f"trigger fp={info.fingerprint} len={info.length} kind={kind} "
                  f"carriers={info.carriers} resp_lift={g.resp_lift:+.2f} "
                  f"prompt_lift={g.prompt_lift:+.2f} exclusive={g.excl:.2f} p={g.p:.2g}")
        score = max(g.resp_lift - g.prompt_lift, g.excl)
        return [Finding("trigger", ids[i], reason, score, (), self._action)
                for i in g.carriers.tolist()]

register_check(CheckSpec(
    "trigger", lambda t, a: Trigger(t, a),
    {"min_support": 8, "max_df": 0.03, "min_gap": 0.3, "max_prompt_lift": 0.2,
     "min_resp_lift": 0.05, "min_conf": 0.8, "payload_phrases": 3, "alpha": 0.01,
     "topic_conf": 0.3, "topic_lift": 5.0},
    summary="rare phrase recurring across topics whose answers are alike or share a rare phrase"))
