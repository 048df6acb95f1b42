"""The gate's statistics: known answers and the properties each test relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sealtune.assess.stats import (
    audit_guesses,
    audit_p_value,
    binom_sf,
    bootstrap_ci,
    one_run_epsilon,
    rank_test_greater,
    roc_curve,
    tpr_at_fpr,
)
from sealtune.errors import UsageError


def test_binomial_tail_matches_the_definition() -> None:
    assert binom_sf(0, 10, 0.3) == pytest.approx(1.0)
    assert binom_sf(10, 10, 0.5) == pytest.approx(0.5**10)
    assert binom_sf(3, 5, 0.5) == pytest.approx((10 + 5 + 1) / 32)


def test_one_run_epsilon_known_values() -> None:
    # 12 of 12 right: refutes eps while q**12 < 0.05, q = 1/(1+e^-eps): eps = ln(q/(1-q))
    q = 0.05 ** (1 / 12)
    assert one_run_epsilon(24, 12, 12, delta=0.0) == pytest.approx(math.log(q / (1 - q)),
                                                                   rel=1e-6)
    assert one_run_epsilon(24, 12, 6, delta=1e-5) == 0.0  # chance-level guesses refute nothing
    # delta only weakens the bound
    assert one_run_epsilon(1000, 200, 190, delta=1e-3) < one_run_epsilon(
        1000, 200, 190, delta=0.0)


def test_the_bound_is_valid_for_randomized_response_at_that_epsilon() -> None:
    # an eps-DP mechanism (randomized response on membership): the bound exceeds eps
    # in at most ~beta of the runs
    eps, beta, m = 1.0, 0.05, 200
    rng = np.random.default_rng(0)
    over = 0
    for _ in range(300):
        truth = rng.random(m) < 0.5
        keep = rng.random(m) < 1 / (1 + math.exp(-eps))
        score = np.where(truth == keep, 1.0, 0.0) + rng.random(m) * 1e-3
        r, v = audit_guesses(score, truth, k=50)
        over += one_run_epsilon(m, r, v, delta=0.0, beta=beta) > eps
    assert over / 300 <= beta + 0.03


def test_audit_p_value_is_monotone_in_epsilon() -> None:
    values = [audit_p_value(100, 40, 35, e, 1e-5) for e in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert values == sorted(values)


def test_audit_guesses_counts_top_and_bottom() -> None:
    assert audit_guesses([5, 4, 3, 2, 1, 0], [True, True, False, True, False, False],
                         k=2) == (4, 4)
    with pytest.raises(UsageError):
        audit_guesses([1, 2], [True, False], k=2)


def test_rank_test_separates_and_does_not_invent() -> None:
    rng = np.random.default_rng(1)
    assert rank_test_greater(rng.normal(3, 1, 12), rng.normal(0, 1, 12)) < 0.001
    null = [rank_test_greater(rng.normal(0, 1, 12), rng.normal(0, 1, 12), seed=i,
                              permutations=2000) for i in range(200)]
    assert 0.005 <= sum(p < 0.05 for p in null) / 200 <= 0.12  # about 5 % under the null


def test_roc_and_tpr_at_low_fpr() -> None:
    fpr, tpr = roc_curve([0.9, 0.8, 0.3], [0.5, 0.2, 0.1])
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert tpr_at_fpr([0.9, 0.8, 0.3], [0.5, 0.2, 0.1], 0.0) == pytest.approx(2 / 3)


def test_bootstrap_interval_covers_the_mean() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(5, 1, 200)
    low, high = bootstrap_ci(lambda x: float(np.mean(x)), values, n=500)
    assert low < 5 < high and high - low < 0.5
