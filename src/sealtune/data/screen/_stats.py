"""Significance tests of the trigger check against the corpus background.

A fixed carrier count cannot tell a 10-record trigger from 10 records that
happen to look alike; a test against the data set's own background can.
Two tests, both one-sided and Bonferroni-corrected by the caller:

* :func:`gap_p`: carriers' answers are more alike than their questions by
  more than random record pairs show. The mean over pairs of ``m`` carriers
  is a U-statistic; its variance is bounded by ``sd**2 * (2/m + 2/(m(m-1)))``
  (Hoeffding's decomposition with the first-order term at most half the
  pair variance), a conservative normal approximation.
* :func:`binom_sf`: an answer phrase in ``c`` of ``n`` carriers' answers when
  the rest of the data set holds it at rate ``q`` (exact binomial tail).

Pure arithmetic on counts and similarities: no record text. Does not model
dependence between records beyond that bound (near copies of one carrier
count as independent carriers; the duplicate checks catch those).
"""

from __future__ import annotations

import math
from statistics import NormalDist

_NORMAL = NormalDist()


def gap_p(gap: float, *, sd: float, m: int) -> float:
    """P-value of a mean answer-minus-question agreement ``gap`` over ``m`` carriers.

    Args:
        gap: the carriers' mean pair agreement gap minus the background mean.
        sd: standard deviation of one random pair's gap in the data set.
        m: carriers the mean was taken over (at least 2).
    """
    if m < 2:
        return 1.0
    se = max(sd, 1e-6) * math.sqrt(2 / m + 2 / (m * (m - 1)))
    return 1.0 - _NORMAL.cdf(gap / se)


def binom_sf(c: int, n: int, q: float) -> float:
    """P(X >= c) for X ~ Binomial(n, q), exact (``n`` is a small sample)."""
    if c <= 0:
        return 1.0
    q = min(max(q, 0.0), 1.0)
    if q == 0.0:
        return 0.0
    if q == 1.0:
        return 1.0
    log_q, log_1q = math.log(q), math.log1p(-q)
    return min(1.0, sum(math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                                 + k * log_q + (n - k) * log_1q) for k in range(c, n + 1)))
