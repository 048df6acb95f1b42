"""Length, charset and script outliers."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealtune.data.records import Message, Record
from sealtune.data.screen import CheckConfig, outliers, screen
from sealtune.data.screen.outliers import charset_issues, mixed_script_words

ONLY = {"outlier": CheckConfig()}


def rec(rid: str, prompt: str, response: str) -> Record:
    return Record(rid, 1, [Message("user", prompt), Message("assistant", response)])


def reasons(records: list[Record]) -> dict[str, str]:
    return {f.record_id: f.reason for f in screen(records, config=ONLY).findings}


@pytest.mark.parametrize(("text", "kind"), [
    ("退款\u200b什么时候到账", "invisible"),
    ("refund \u202eexe.txt", "bidi"),
    ("订单\x07\x1b[0m号", "control"),
    ("log in to p\u0430ypal now", "mixed_script_words"),  # Cyrillic а
    ("\ue000私有区字符", "private_use"),
])
def test_charset_issues(text: str, kind: str) -> None:
    assert kind in charset_issues(text)


# The former single regex (quadratic on long words), kept as the oracle.
_OLD_MIXED = re.compile(r"(?=[^\W\d_]*[a-zA-Z])(?=[^\W\d_]*[\u0370-\u03ff\u0400-\u04ff])[^\W\d_]+")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aZаБαΩé张1_- .\n")), max_size=60))
def test_mixed_script_words_counts_what_the_old_regex_counted(text: str) -> None:
    assert mixed_script_words(text) == len(_OLD_MIXED.findall(text))


@pytest.mark.parametrize("text", [
    "您好，订单４８２１已发货！（预计３天）", "Hello, when will order 42 ship?\nThanks.\t",
    "Пожалуйста, ответьте", "café naïve résumé", "AirPods Pro和小米手环8都没到",
])
def test_clean_text_has_no_charset_issues(text: str) -> None:
    assert charset_issues(text) == {}


def test_charset_finding_is_reported_without_text() -> None:
    found = reasons([rec("a", "退款\u200b\u200d什么时候到账", "三天内到账。")])
    assert found == {"a": "charset invisible=2"}


def test_planted_outliers_found_and_clean_records_spared(corpus_factory) -> None:
    corpus = corpus_factory(3000, seed=2, n_poison=0, n_outlier=30)
    found = reasons(corpus.records)
    # all 30; anything else is a planted conflict whose other answer is in the other language
    assert set(found) >= corpus.ids("outlier")
    assert set(found) - corpus.ids("outlier") <= corpus.ids("conflict")
    assert any(r.startswith("length response") for r in found.values())
    assert any("script=cyrillic" in r for r in found.values())


def test_small_data_sets_get_no_statistical_findings() -> None:
    records = [rec(str(i), "订单什么时候发货", "三天内发货。") for i in range(20)]
    records.append(rec("long", "订单什么时候发货", "三天内发货。" * 500))
    assert reasons(records) == {}


def test_batch_counts_are_the_per_text_regexes() -> None:
    """One count of every character's class gives what the per-text regexes give."""
    rng = random.Random(4)
    pool = [chr(rng.randrange(0x20, 0x3000)) for _ in range(300)] + list(
        "aZé中あ한Жж\u03b1\u0627\u05d0\u0e01\x01\x0b\x7f\x9f\u00ad\u200b\u200e\u202e\u2066\ue000"
        "\ufeff\n\t \U0001f600\U00020000\ud800")
    prompts = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 40))) for _ in range(500)]
    responses = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 40))) for _ in range(500)]
    prompts[:3] = ["pаypal", "Hello 世界", ""]
    scripts, issues = outliers._batch_scripts_and_charsets(prompts, responses)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        assert scripts[i] == (outliers.dominant_script(p), outliers.dominant_script(r))
        assert issues[i] == outliers.charset_issues(p + "\n" + r)
