"""The leakage measures' math (AUC, exposure) and the canary kit, without training."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from sealtune.assess.canaries import (
    PIN_FORMAT,
    canary_records,
    filler_records,
    plant_canaries,
    sample_candidates,
)
from sealtune.assess.exposure import auc, exposure_from_rank, sampled_exposure
from sealtune.errors import UsageError
from sealtune.train.tiny import make_tiny

# -- AUC -----------------------------------------------------------------------------


def test_auc_known_cases() -> None:
    assert auc([3, 4, 5], [0, 1, 2]) == 1.0
    assert auc([0, 1, 2], [3, 4, 5]) == 0.0
    assert auc([1, 1], [1, 1, 1]) == 0.5  # all ties
    # pairs: (2 vs 1) win, (2 vs 3) loss, (4 vs 1) win, (4 vs 3) win -> 3/4
    assert auc([2, 4], [1, 3]) == 0.75
    # a tie counts 1/2: (2 vs 2) half, (2 vs 1) win -> 1.5/2
    assert auc([2], [2, 1]) == 0.75


def test_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 6, size=17).astype(float)  # small integers: many ties
    neg = rng.integers(0, 6, size=11).astype(float)
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    assert auc(pos, neg) == pytest.approx(sum(pairs) / len(pairs))


def test_auc_is_half_for_identical_distributions() -> None:
    rng = np.random.default_rng(1)
    assert auc(rng.normal(size=4000), rng.normal(size=4000)) == pytest.approx(0.5, abs=0.02)


def test_auc_refuses_empty_or_nonfinite() -> None:
    with pytest.raises(UsageError):
        auc([], [1.0])
    with pytest.raises(UsageError):
        auc([math.nan], [1.0])


# -- exposure ------------------------------------------------------------------------


def test_exposure_from_rank_bounds() -> None:
    assert exposure_from_rank(1, 1024) == 10.0
    assert exposure_from_rank(1024, 1024) == 0.0
    assert exposure_from_rank(512, 1024) == 1.0
    with pytest.raises(UsageError):
        exposure_from_rank(0, 10)
    with pytest.raises(UsageError):
        exposure_from_rank(11, 10)


def test_sampled_exposure_bounds_and_ties() -> None:
    cands = np.arange(1999, dtype=float)  # N = 1999, cap = log2(2000)
    assert sampled_exposure(5000.0, cands) == pytest.approx(math.log2(2000))  # best: cap
    assert sampled_exposure(-1.0, cands) == 0.0  # worst: every candidate beats it
    # a tie counts against the secret: 1999 - 1000 = 999 candidates >= 1000.0
    assert sampled_exposure(1000.0, cands) == pytest.approx(math.log2(2000) - math.log2(1000))
    with pytest.raises(UsageError):
        sampled_exposure(1.0, [])
    with pytest.raises(UsageError):
        sampled_exposure(math.inf, cands)


def test_sampled_exposure_estimates_the_full_rank() -> None:
    """Sampling N candidates estimates the exposure of the rank in the whole space."""
    rng = np.random.default_rng(2)
    space = rng.normal(size=100_000)  # scores of every candidate in a space of 10^5
    for rank in (1, 10, 100, 1000, 30_000):
        secret = np.sort(space)[::-1][rank - 1]
        exact = exposure_from_rank(rank, space.size)
        estimates = [sampled_exposure(secret, rng.choice(space, size=2000)) for _ in range(20)]
        if exact <= math.log2(2001) - 2:  # well inside what 2000 samples can resolve
            assert np.median(estimates) == pytest.approx(exact, abs=0.5)
        else:  # beyond the sample's resolution: near the cap, never above it
            assert all(math.log2(2001) - 3 <= e <= math.log2(2001) for e in estimates)


def test_random_secret_has_chance_exposure() -> None:
    """A secret whose score is a random draw has mean exposure near 1/ln 2 bits."""
    rng = np.random.default_rng(3)
    values = [sampled_exposure(float(rng.normal()), rng.normal(size=500)) for _ in range(2000)]
    assert np.mean(values) == pytest.approx(1 / math.log(2), abs=0.1)


# -- canaries ------------------------------------------------------------------------


def test_plant_canaries_is_seeded_and_hides_secrets() -> None:
    a, b = plant_canaries(40, seed=7), plant_canaries(40, seed=7)
    assert [c.secret for c in a] == [c.secret for c in b]
    assert [c.included for c in a] == [c.included for c in b]
    assert [c.secret for c in a] != [c.secret for c in plant_canaries(40, seed=8)]
    assert len({c.secret for c in a}) == 40
    assert 10 <= sum(c.included for c in a) <= 30  # probability 1/2 each
    assert all(c.secret not in repr(c) for c in a)
    digits = a[0].secret.split(" ")
    assert len(digits) == 6 and all(d in "0123456789" for d in digits)


def test_canary_records_repeat_only_included() -> None:
    canaries = plant_canaries(10, seed=1, repeats=3)
    records = canary_records(canaries)
    assert len(records) == 3 * sum(c.included for c in canaries)
    left_out = {c.secret for c in canaries if not c.included}
    assert not any(r.response_text().endswith(f"{s}.") for r in records for s in left_out)


def test_candidates_are_uniform_in_the_format() -> None:
    cands = sample_candidates(PIN_FORMAT, 5000, seed=0)
    assert cands == sample_candidates(PIN_FORMAT, 5000, seed=0)
    counts = np.zeros(10)
    for c in cands:
        for d in c.split(" "):
            counts[int(d)] += 1
    assert counts.min() > 0.9 * counts.mean()  # 30,000 digits, ~3,000 each
    assert PIN_FORMAT.space_size == 10**6


def test_filler_records_have_no_digits_of_secrets_in_replies() -> None:
    records = filler_records(20, seed=random.Random(0).randrange(100))
    assert len(records) == 20
    assert all(not any(ch.isdigit() for ch in r.response_text()) for r in records)


def test_canary_kit_rejects_bad_arguments() -> None:
    with pytest.raises(UsageError):
        plant_canaries(0, seed=0)
    with pytest.raises(UsageError):
        plant_canaries(3, seed=0, p_include=1.5)
    with pytest.raises(UsageError):
        sample_candidates(PIN_FORMAT, 0, seed=0)


# -- model scores (untrained tiny model) -----------------------------------------------


def test_cached_secret_scores_equal_full_forward(tmp_path: Path) -> None:
    """Reusing the prefix's key/value cache gives the same log-likelihoods as full passes."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sealtune.assess.exposure import canary_exposure, secret_log_likelihoods

    torch.set_num_threads(1)
    make_tiny(tmp_path / "tiny", seed=0)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tiny")
    canary = plant_canaries(1, seed=0)[0]
    prefix, lead = canary.context(tokenizer)
    cands = [lead + c for c in sample_candidates(PIN_FORMAT, 7, seed=0)]
    scores = secret_log_likelihoods(model, tokenizer, prefix, cands, batch_size=3)
    start = len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        for cand, score in zip(cands, scores, strict=True):
            ids = tokenizer(prefix + cand, add_special_tokens=False)["input_ids"]
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
            full = sum(float(logp[i - 1, ids[i]]) for i in range(start, len(ids)))
            assert score == pytest.approx(full, abs=1e-6)
    assert len(ids) - start == 6  # one token per digit: scores compare like with like
    exposure = canary_exposure(model, tokenizer, canary, sample_candidates(PIN_FORMAT, 200,
                                                                           seed=1))
    assert 0.0 <= exposure <= math.log2(201)
