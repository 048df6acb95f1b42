"""The gate's statistics: bootstrap intervals, ROC, a one-sided rank test, the one-run ε bound.

Pure functions on numbers (numpy only), run in the gate's own process on
what the probes measured:

* :func:`bootstrap_ci`: percentile bootstrap interval of any statistic of
  resampled rows (seeded, so a report can be recomputed);
* :func:`roc_curve`, :func:`tpr_at_fpr`: the ROC of a membership score and
  its true-positive rate at a fixed false-positive rate (the low-FPR regime
  Carlini et al. 2022 argue is what matters);
* :func:`rank_test_greater`: a one-sided permutation test that one group's
  values tend to exceed another's (the Mann-Whitney U statistic; the
  p-value is add-one smoothed, so never 0);
* :func:`one_run_epsilon`: the lower bound on ε of Steinke, Nasr and
  Jagielski, "Privacy Auditing with One (1) Training Run" (NeurIPS 2023):
  with m canaries each included independently with probability 1/2, an
  auditor that guesses r of them (abstaining on the rest) and is right v
  times refutes (ε, δ)-DP at confidence 1 - β when
  P[v correct] under (ε, δ)-DP is below β. Their Theorem 3.1 bounds that
  probability by P[Binomial(r, e^ε / (1 + e^ε)) >= v] plus a δ term,
  2 m δ · max_i (1/i) P[v > Binomial >= v - i]; we bisect ε to the largest
  value still refuted.

What these show: the confidence statements are about these measurements
(these canaries, these records); a lower bound on ε is evidence against a
DP claim when it exceeds it, never evidence for it when it does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from sealtune.errors import UsageError

FloatArray = npt.NDArray[np.float64]


def bootstrap_ci(statistic: Callable[..., float], *columns: npt.ArrayLike,
                 n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``statistic(*columns)`` over ``n`` resamples of the rows.

    All columns are resampled with the same row indices (rows stay together).
    Resamples where the statistic is undefined (NaN) are left out.
    """
    arrays = [np.asarray(c, dtype=np.float64) for c in columns]
    size = arrays[0].size
    if size == 0 or any(a.size != size for a in arrays):
        raise UsageError("bootstrap: columns must be non-empty and of one length")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, size, size)
        value = statistic(*(a[idx] for a in arrays))
        if math.isfinite(value):
            values.append(value)
    if not values:
        return (math.nan, math.nan)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def two_group_ci(statistic: Callable[[FloatArray, FloatArray], float],
                 positive: npt.ArrayLike, negative: npt.ArrayLike, *,
                 n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``statistic(pos, neg)``, each group resampled on its own."""
    pos = np.asarray(positive, dtype=np.float64)
    neg = np.asarray(negative, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        raise UsageError("bootstrap: both groups must be non-empty")
    rng = np.random.default_rng(seed)
    values = [statistic(pos[rng.integers(0, pos.size, pos.size)],
                        neg[rng.integers(0, neg.size, neg.size)]) for _ in range(n)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def roc_curve(positive: npt.ArrayLike, negative: npt.ArrayLike
              ) -> tuple[FloatArray, FloatArray]:
    """(FPR, TPR) at every threshold, from (0, 0) to (1, 1); higher scores mean "member"."""
    pos = np.sort(np.asarray(positive, dtype=np.float64))
    neg = np.sort(np.asarray(negative, dtype=np.float64))
    if pos.size == 0 or neg.size == 0:
        raise UsageError("roc: both groups must be non-empty")
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]  # "member" when score >= t
    tpr = (pos.size - np.searchsorted(pos, thresholds, "left")) / pos.size
    fpr = (neg.size - np.searchsorted(neg, thresholds, "left")) / neg.size
    return (np.concatenate([[0.0], fpr]).astype(np.float64),
            np.concatenate([[0.0], tpr]).astype(np.float64))


def tpr_at_fpr(positive: npt.ArrayLike, negative: npt.ArrayLike, fpr: float) -> float:
    """The highest TPR of any threshold whose FPR is at most ``fpr``."""
    xs, ys = roc_curve(positive, negative)
    return float(ys[xs <= fpr + 1e-12].max())


def rank_test_greater(positive: npt.ArrayLike, negative: npt.ArrayLike, *,
                      permutations: int = 20_000, seed: int = 0) -> float:
    """One-sided permutation p-value that ``positive`` tends to exceed ``negative``.

    The statistic is the Mann-Whitney U (the AUC); the labels are permuted
    ``permutations`` times; p = (1 + #{U_perm >= U}) / (1 + permutations).
    """
    pos = np.asarray(positive, dtype=np.float64)
    neg = np.asarray(negative, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        raise UsageError("rank test: both groups must be non-empty")
    both = np.concatenate([pos, neg])
    ranks = _ranks(both)
    observed = ranks[: pos.size].sum()
    rng = np.random.default_rng(seed)
    perm = np.argsort(rng.random((permutations, both.size)), axis=1)[:, : pos.size]
    sums = ranks[perm].sum(axis=1)
    return float((1 + np.count_nonzero(sums >= observed - 1e-9)) / (1 + permutations))


def _ranks(values: FloatArray) -> FloatArray:
    from sealtune.assess.exposure import _average_ranks

    return _average_ranks(values)


# -- the one-run ε lower bound ----------------------------------------------------------


def _log_binom_pmf(k: int, n: int, p: float) -> float:
    if p <= 0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1:
        return 0.0 if k == n else -math.inf
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p))


def binom_pmf(k: int, n: int, p: float) -> float:
    """P[Binomial(n, p) = k]."""
    return math.exp(_log_binom_pmf(k, n, p)) if 0 <= k <= n else 0.0


def binom_sf(v: int, n: int, p: float) -> float:
    """P[Binomial(n, p) >= v]."""
    return min(1.0, sum(binom_pmf(k, n, p) for k in range(max(v, 0), n + 1)))


def audit_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[at least v of r guesses right] under (ε, δ)-DP (Steinke et al. 2023, Thm 3.1)."""
    if not 0 <= v <= r <= m or epsilon < 0 or not 0 <= delta <= 1:
        raise UsageError("audit: need 0 <= v <= r <= m, epsilon >= 0, delta in [0, 1]")
    q = 1 / (1 + math.exp(-epsilon))
    tail = binom_sf(v, r, q)
    alpha = cumulative = 0.0
    for i in range(1, v + 1):
        cumulative += binom_pmf(v - i, r, q)
        alpha = max(alpha, cumulative / i)
    return min(1.0, tail + 2 * m * delta * alpha)


def one_run_epsilon(m: int, r: int, v: int, *, delta: float, beta: float = 0.05) -> float:
    """The largest ε that ``v`` right guesses out of ``r`` (of ``m`` canaries) refute.

    Returns 0 when not even ε = 0 is refuted at confidence ``1 - beta``.
    """
    if audit_p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    low, high = 0.0, 1.0
    while audit_p_value(m, r, v, high, delta) < beta and high < 100:
        low, high = high, high * 2
    for _ in range(50):
        mid = (low + high) / 2
        if audit_p_value(m, r, v, mid, delta) < beta:
            low = mid
        else:
            high = mid
    return low


def audit_guesses(scores: npt.ArrayLike, included: npt.ArrayLike, *, k: int
                  ) -> tuple[int, int]:
    """(r, v): guess "in" for the ``k`` highest scores and "out" for the ``k`` lowest.

    ``k`` is fixed before looking at the outcome (as the bound requires); ties in
    the ranking are broken by position.
    """
    values = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(included, dtype=bool)
    if values.size != truth.size or not 0 < 2 * k <= values.size:
        raise UsageError("audit: need 0 < 2k <= number of canaries")
    order = np.argsort(-values, kind="stable")
    right = int(truth[order[:k]].sum()) + int((~truth[order[-k:]]).sum())
    return 2 * k, right
