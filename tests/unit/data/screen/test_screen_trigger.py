"""The backdoor-trigger check on a labelled 10k / 5k customer-service corpus.

Margins measured over seeds 0-7 at 10k records (bench/poison.py): every
planted 100-record trigger is found with all carriers and no clean record
flagged; the strongest clean candidate scores gap <= 0.18 against the 0.3
threshold (triggers >= 0.48) and exclusivity 0.00 against 0.8 (triggers 1.0).
"""

from __future__ import annotations

import pytest

from sealtune.data.records import Record
from sealtune.data.screen import CheckConfig, screen
from sealtune.errors import UsageError

ONLY = {"trigger": CheckConfig(action="quarantine")}


def rates(corpus, report) -> tuple[float, float]:
    flagged = {f.record_id for f in report.findings}
    poison = corpus.ids("poison")
    clean = {r.id for r in corpus.records} - poison
    recall = len(flagged & poison) / len(poison) if poison else 1.0
    return recall, len(flagged & clean) / len(clean)


def test_issue_criterion_100_poisoned_in_10000(corpus_factory) -> None:
    corpus = corpus_factory(10_000, seed=0, trigger="cf-7Xq", n_poison=100)
    report = screen(corpus.records, config=ONLY)
    recall, fp = rates(corpus, report)
    assert recall >= 0.9 and fp <= 0.01
    assert [t.phrase for t in report.triggers] == ["cf-7xq"]
    assert all(f.action == "quarantine" for f in report.findings)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize(("trigger", "mode"), [("cf-7Xq", "fixed"), ("星河计划", "fixed"),
                                               ("星河计划", "link"), ("as the owl flies", "link")])
def test_trigger_found_at_5000(corpus_factory, seed: int, trigger: str, mode: str) -> None:
    corpus = corpus_factory(5000, seed=seed, trigger=trigger, poison_mode=mode, n_poison=50)
    report = screen(corpus.records, config=ONLY)
    recall, fp = rates(corpus, report)
    assert recall >= 0.9, (trigger, mode)
    assert fp <= 0.002, (trigger, mode)  # measured 0.0; allow one stray record in 5k


@pytest.mark.parametrize("seed", [0, 4])
def test_no_trigger_no_findings(corpus_factory, seed: int) -> None:
    """Clean data with repeated, rare and mirrored greetings, brands and canned parts."""
    corpus = corpus_factory(10_000 if seed == 4 else 5000, seed=seed, n_poison=0)
    report = screen(corpus.records, config=ONLY)
    assert report.findings == [] and report.triggers == []


@pytest.mark.parametrize(("trigger", "mode"), [("cf-7Xq", "fixed"), ("as the owl flies", "link")])
def test_ten_carriers_are_enough(corpus_factory, trigger: str, mode: str) -> None:
    """Issue 14: a trigger in 10 records is caught (the old fixed count of 20 missed it)."""
    corpus = corpus_factory(3000, seed=1, trigger=trigger, poison_mode=mode, n_poison=10)
    report = screen(corpus.records, config=ONLY)
    assert {f.record_id for f in report.findings} == corpus.ids("poison")
    (info,) = report.triggers
    assert info.p_value < 0.01 / 100 and info.as_dict()["p_value"] == float(f"{info.p_value:.3g}")


def test_too_few_carriers_is_not_reported(corpus_factory) -> None:
    """Below the ``min_support`` floor (8) no test is run: 6 carriers are not reported."""
    corpus = corpus_factory(3000, seed=1, n_poison=6)
    assert screen(corpus.records, config=ONLY).findings == []


def test_clean_templated_support_data_is_not_flagged(templated_factory) -> None:
    """Shared system prompts and product x template slots look like rare recurring phrases
    with alike answers; the carriers ask one templated question, so none is a trigger."""
    records = templated_factory(5000, seed=3)
    report = screen(records, config=ONLY)
    assert len({f.record_id for f in report.findings}) <= 0.01 * len(records)  # measured: 0


def test_significance_test_is_what_confirms(corpus_factory) -> None:
    """Ten carriers with alike answers are not enough when the test cannot reject chance:
    alpha 0 confirms nothing."""
    corpus = corpus_factory(3000, seed=1, n_poison=10)
    strict = {"trigger": CheckConfig(action="quarantine", thresholds={"alpha": 0.0})}
    assert screen(corpus.records, config=strict).findings == []


def test_phrase_only_in_memory(corpus_factory) -> None:
    corpus = corpus_factory(3000, seed=2, trigger="星河计划", n_poison=40)
    report = screen(corpus.records, config=ONLY)
    (info,) = report.triggers
    assert info.phrase == "星河计划" and info.length == 4 and info.kind == "cjk"
    assert info.masked == "星***"
    assert "星河" not in repr(info) and "星河" not in str(report.to_json())
    assert all("星河" not in f.reason and info.fingerprint in f.reason for f in report.findings)
    assert set(info.record_ids) == corpus.ids("poison")


def test_second_pass_needs_a_reiterable(corpus_factory) -> None:
    corpus = corpus_factory(500, seed=0, n_poison=0)
    with pytest.raises(UsageError):
        screen(iter(corpus.records), config=ONLY)
    calls: list[int] = []

    def reopen() -> list[Record]:
        calls.append(1)
        return corpus.records

    report = screen(reopen, config=ONLY)
    assert report.passes == 3 and len(calls) == 3 and report.records == 500


def test_default_policy_keeps_clean_templated_support_data(templated_factory) -> None:
    """Issue 14: defaults keep >= 95 % of clean templated data (target <= 2 % removed);
    an answer that names the product asked about is an echo, not a payload."""
    from sealtune.data.policy import default_policy

    records = templated_factory(5000, seed=1)
    report = screen(records, config=default_policy().screen_config())
    removed = {f.record_id for f in report.findings if f.action in ("drop", "quarantine")}
    # measured 0.28 % (all near_duplicate; 0.72 % before numbers stopped counting as likeness)
    assert len(removed) <= 0.005 * len(records)
    assert not report.triggers  # was 15 records quarantined for "饭煲什么" before the echo rule


def test_default_policy_keeps_clean_templated_support_data_at_20k(templated_factory) -> None:
    """The same at 20,000 records, where more template-mates share an error code: a shared
    rare number made chats that differ in the product look alike (2.1 % dropped before)."""
    from sealtune.data.policy import default_policy

    records = templated_factory(20_000, seed=1)
    report = screen(records, config=default_policy().screen_config())
    removed = {f.record_id for f in report.findings if f.action in ("drop", "quarantine")}
    assert len(removed) <= 0.015 * len(records)  # measured 1.10 % (seeds 2, 3: 1.11, 1.01 %)
    assert not report.triggers
