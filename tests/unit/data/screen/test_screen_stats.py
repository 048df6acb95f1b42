"""The trigger check's significance tests against known values."""

from __future__ import annotations

import math

import pytest

from sealtune.data.screen import _stats


def test_binomial_tail_known_values() -> None:
    assert _stats.binom_sf(0, 10, 0.3) == 1.0
    assert _stats.binom_sf(10, 10, 0.5) == pytest.approx(0.5 ** 10)
    assert _stats.binom_sf(1, 10, 0.1) == pytest.approx(1 - 0.9 ** 10)
    assert _stats.binom_sf(3, 10, 0.0) == 0.0 and _stats.binom_sf(3, 10, 1.0) == 1.0
    k_ge_8 = sum(math.comb(20, k) * 0.2 ** k * 0.8 ** (20 - k) for k in range(8, 21))
    assert _stats.binom_sf(8, 20, 0.2) == pytest.approx(k_ge_8)


def test_gap_p_falls_with_effect_and_carriers() -> None:
    assert _stats.gap_p(0.0, sd=0.1, m=10) == pytest.approx(0.5)
    assert _stats.gap_p(0.3, sd=0.1, m=10) < _stats.gap_p(0.1, sd=0.1, m=10)
    assert _stats.gap_p(0.1, sd=0.1, m=40) < _stats.gap_p(0.1, sd=0.1, m=10)
    assert _stats.gap_p(0.9, sd=0.1, m=1) == 1.0  # one carrier has no pairs
