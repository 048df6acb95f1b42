"""Memorisation measures: canary exposure, loss-attack AUC, held-out perplexity.

**Exposure** (Carlini et al., "The Secret Sharer", 2019). For a canary with
secret s drawn uniformly from a space R, rank the candidates of R by the
model's log-likelihood of the secret part given the canary's context;
exposure = log2 |R| − log2 rank(s). A secret the model never saw has an
expected exposure of about 1/ln 2 ≈ 1.44 bits (rank uniform); a memorised one
approaches log2 |R|. Scoring all of R (10^6 here) is too slow, so we use the
paper's sampling estimate: exposure = −log2 Pr[score(r) ≥ score(s)] for r
uniform in R, with the probability estimated from N uniform samples as
(c + 1) / (N + 1), c = the number of sampled candidates that score at least as
high as s (ties count against the secret). That is log2 (N + 1) − log2 (c + 1):
the exposure of s when ranked among the N candidates plus itself. It is
unbiased in the tail probability up to the +1 smoothing, never infinite,
and capped at log2 (N + 1) bits (about 11 bits for 2,000 candidates): beyond
that the sample cannot tell, so compare gaps, not absolute values, with
the cap in mind.

**Loss-attack AUC** (Yeom et al., 2018): the attacker scores each canary
record by minus its loss (mean cross-entropy over the assistant tokens) and
guesses "member" for high scores; the AUC of included (members) against
left-out canaries (non-members) is the Mann-Whitney U statistic divided by
the number of pairs (ties count 1/2). 0.5 is chance.

**Perplexity**: exp of the mean token cross-entropy over the assistant tokens
of held-out clean records (the utility side of the privacy trade-off).

What these numbers are: an empirical lower bound on leakage for these
attacks and these canaries. What they are not: a proof of privacy (a low
exposure means these attacks failed; differential privacy's guarantee is
the proof) nor a bound on other attacks (extraction by generation, attacks
with reference models). Reports hold numbers and canary ids only, never
secrets. Models are only read (``eval`` mode, no gradients).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sealtune.assess.canaries import Canary, sample_candidates
from sealtune.data.records import Record
from sealtune.errors import UsageError

FloatArray = npt.NDArray[np.float64]


# -- pure math -------------------------------------------------------------------------


def exposure_from_rank(rank: int, space_size: int) -> float:
    """The Secret Sharer's exposure: ``log2(space_size) - log2(rank)`` (rank 1 = best)."""
    if space_size < 1 or not 1 <= rank <= space_size:
        raise UsageError("exposure: need 1 <= rank <= space_size")
    return math.log2(space_size) - math.log2(rank)


def sampled_exposure(secret_score: float, candidate_scores: npt.ArrayLike) -> float:
    """Exposure estimated from N sampled candidates: ``log2(N + 1) - log2(c + 1)``.

    ``c`` counts candidates scoring at least ``secret_score`` (ties count against
    the secret). The result lies in ``[0, log2(N + 1)]``.
    """
    scores = np.asarray(candidate_scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0 or not math.isfinite(secret_score):
        raise UsageError("exposure: need a finite secret score and a 1-d array of candidates")
    better = int(np.count_nonzero(scores >= secret_score))
    return math.log2(scores.size + 1) - math.log2(better + 1)


def auc(positive: npt.ArrayLike, negative: npt.ArrayLike) -> float:
    """Area under the ROC curve of ``positive`` vs ``negative`` scores (Mann-Whitney U).

    The probability that a random positive scores above a random negative,
    ties counting 1/2. 1.0: perfectly separated; 0.5: chance.
    """
    pos = np.asarray(positive, dtype=np.float64).ravel()
    neg = np.asarray(negative, dtype=np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        raise UsageError("auc: need at least one positive and one negative score")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise UsageError("auc: scores must be finite")
    both = np.concatenate([pos, neg])
    ranks = _average_ranks(both)
    u = float(ranks[: pos.size].sum()) - pos.size * (pos.size + 1) / 2
    return u / (pos.size * neg.size)


def _average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    sorted_values = values[order]
    i = 0
    while i < values.size:
        j = i
        while j + 1 < values.size and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


# -- model scores ----------------------------------------------------------------------


def secret_log_likelihoods(model: Any, tokenizer: Any, prefix: str, candidates: Sequence[str],
                           *, batch_size: int = 256) -> FloatArray:
    """Sum of log p(candidate tokens | prefix) for each candidate, in nats.

    The prefix is run once and its key/value cache reused for every batch of
    candidates. The prefix must tokenize the same way alone as in front of
    each candidate (:meth:`Canary.context` arranges that).

    Raises:
        UsageError: no candidates, or a candidate changes the prefix's tokens.
    """
    import torch

    if not candidates:
        raise UsageError("exposure: no candidates to score")
    prefix_ids = list(tokenizer(prefix, add_special_tokens=False)["input_ids"])
    tails: list[list[int]] = []
    for text in candidates:
        ids = list(tokenizer(prefix + text, add_special_tokens=False)["input_ids"])
        if ids[: len(prefix_ids)] != prefix_ids or len(ids) == len(prefix_ids):
            raise UsageError("exposure: a candidate merges with the prefix's last token",
                             hint="start the secret after whitespace or punctuation")
        tails.append(ids[len(prefix_ids):])
    model.eval()
    out = np.empty(len(tails), dtype=np.float64)
    with torch.no_grad():
        head = model(input_ids=torch.tensor([prefix_ids]), use_cache=True)
        first = torch.log_softmax(head.logits[0, -1].double(), dim=-1)
        for start in range(0, len(tails), batch_size):
            chunk = tails[start:start + batch_size]
            out[start:start + len(chunk)] = _score_tails(model, head.cache, first,
                                                         chunk, pad=len(prefix_ids))
    return out


def _score_tails(model: Any, cache: Any, first: Any, tails: list[list[int]], *,
                 pad: int) -> Any:
    import torch

    width = max(len(t) for t in tails)
    ids = torch.zeros((len(tails), width), dtype=torch.long)
    mask = torch.zeros((len(tails), width), dtype=torch.bool)
    for row, tail in enumerate(tails):
        ids[row, : len(tail)] = torch.tensor(tail)
        mask[row, : len(tail)] = True
    total = first[ids[:, 0]]
    if width > 1:
        batch_cache = copy.deepcopy(cache)
        batch_cache.batch_repeat_interleave(len(tails))
        attention = torch.ones((len(tails), pad + width - 1), dtype=torch.long)
        logits = model(input_ids=ids[:, :-1], cache=batch_cache,
                       attention_mask=attention, use_cache=True).logits.double()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        total = total + (logp * mask[:, 1:]).sum(dim=1)
    return total.numpy()


@dataclass(frozen=True)
class CanaryScore:
    """One canary's measures (no secret)."""

    id: str
    included: bool
    exposure: float
    loss: float


def canary_exposure(model: Any, tokenizer: Any, canary: Canary, candidates: Sequence[str],
                    *, batch_size: int = 256) -> float:
    """The sampled exposure of ``canary``'s secret among ``candidates`` (same format)."""
    prefix, lead = canary.context(tokenizer)
    scores = secret_log_likelihoods(model, tokenizer, prefix,
                                    [lead + canary.secret, *(lead + c for c in candidates)],
                                    batch_size=batch_size)
    return sampled_exposure(float(scores[0]), scores[1:])


def record_token_losses(model: Any, tokenizer: Any, records: Sequence[Record], *,
                        max_length: int = 512, batch_size: int = 32,
                        ) -> tuple[FloatArray, FloatArray]:
    """Per record: the summed cross-entropy (nats) over assistant tokens and their count.

    Records are encoded exactly as training encodes them (chat template,
    assistant-only labels).
    """
    import torch

    from sealtune.train.data import IGNORE_INDEX, Collator, ExampleDataset, encode_records

    data = ExampleDataset(encode_records(records, tokenizer, max_length=max_length))
    collate = Collator(int(tokenizer.pad_token_id))
    sums = np.empty(len(data), dtype=np.float64)
    counts = np.empty(len(data), dtype=np.float64)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            ids, mask, labels = collate([data[i] for i in
                                         range(start, min(start + batch_size, len(data)))])
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1, :].double()
            targets = labels[:, 1:]
            tokens = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                ignore_index=IGNORE_INDEX, reduction="none").view(targets.shape)
            end = start + ids.shape[0]
            sums[start:end] = tokens.sum(dim=1).numpy()
            counts[start:end] = (targets != IGNORE_INDEX).sum(dim=1).numpy()
    return sums, counts


def perplexity(model: Any, tokenizer: Any, records: Sequence[Record], *,
               max_length: int = 512) -> float:
    """exp(mean token cross-entropy) over the assistant tokens of ``records``."""
    sums, counts = record_token_losses(model, tokenizer, records, max_length=max_length)
    if counts.sum() == 0:
        raise UsageError("perplexity: the records have no assistant tokens")
    return math.exp(float(sums.sum() / counts.sum()))


@dataclass(frozen=True)
class LeakageReport:
    """The canary measures of one model: numbers and canary ids only.

    Attributes:
        exposure_included, exposure_excluded: mean exposure (bits) of each group.
        exposure_gap: included minus left-out mean exposure (bits).
        exposure_cap: the largest measurable exposure, log2(N + 1) for N candidates.
        auc: loss-attack AUC, included (members) vs left-out canaries.
        canaries: per-canary scores.
    """

    exposure_included: float
    exposure_excluded: float
    exposure_gap: float
    exposure_cap: float
    auc: float
    canaries: tuple[CanaryScore, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"exposure_included": self.exposure_included,
                "exposure_excluded": self.exposure_excluded,
                "exposure_gap": self.exposure_gap, "exposure_cap": self.exposure_cap,
                "auc": self.auc,
                "canaries": [{"id": c.id, "included": c.included, "exposure": c.exposure,
                              "loss": c.loss} for c in self.canaries]}


def assess_canaries(model: Any, tokenizer: Any, canaries: Sequence[Canary], *,
                    n_candidates: int = 2000, seed: int = 0,
                    batch_size: int = 256) -> LeakageReport:
    """Exposure of every canary and the loss-attack AUC, included vs left-out.

    All canaries must share one format; the same ``n_candidates`` uniform
    samples (seeded) serve every canary.

    Raises:
        UsageError: no included or no left-out canary, or mixed formats.
    """
    if not any(c.included for c in canaries) or all(c.included for c in canaries):
        raise UsageError("assess: need both included and left-out canaries")
    if len({c.format for c in canaries}) != 1:
        raise UsageError("assess: all canaries must share one format")
    candidates = sample_candidates(canaries[0].format, n_candidates, seed=seed)
    sums, counts = record_token_losses(model, tokenizer, [c.record() for c in canaries])
    losses = sums / np.maximum(counts, 1)
    scores = tuple(
        CanaryScore(c.id, c.included,
                    canary_exposure(model, tokenizer, c, candidates, batch_size=batch_size),
                    float(loss))
        for c, loss in zip(canaries, losses, strict=True))
    inc = [s for s in scores if s.included]
    exc = [s for s in scores if not s.included]
    mean_inc = float(np.mean([s.exposure for s in inc]))
    mean_exc = float(np.mean([s.exposure for s in exc]))
    return LeakageReport(
        exposure_included=mean_inc, exposure_excluded=mean_exc,
        exposure_gap=mean_inc - mean_exc, exposure_cap=math.log2(n_candidates + 1),
        auc=auc([-s.loss for s in inc], [-s.loss for s in exc]), canaries=scores)
