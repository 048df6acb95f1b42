"""Every PII recognizer and screening check is linear in its input.

A regex that backtracks (nested quantifiers, lookaheads that rescan the
rest of a word from every position, a lazy body with no end in sight) or a
pairwise loop over findings turns one long field into minutes of work: the
former homoglyph regex of the charset check took 31 s on 40,000 letters.
Each recognizer and check gets long runs of every character class and of
adversarial units built for its own patterns (a ``-----BEGIN`` with no
``END``, a cue word repeated, a credential word repeated ...), at 10,000 and
40,000 characters; linear work takes about 4x as long on the longer one,
quadratic work 16x. The bound (8x plus 50 ms of slack for timer and cache
noise on a loaded machine) separates the two; a run over it is measured
again with the median of five before it fails.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

import pytest

from sealtune.data.pii import RECOGNIZERS, Analyzer
from sealtune.data.records import Message, Record
from sealtune.data.redact.spread import Matcher
from sealtune.data.screen import CHECKS, CheckConfig, screen
from sealtune.data.screen.outliers import charset_issues, dominant_script

SMALL, LARGE = 10_000, 40_000
RATIO, SLACK = 8.0, 0.05

#: Character classes and their alternations.
CLASSES = {
    "ascii lower": "a", "ascii upper": "A", "digits": "1", "cjk": "张", "spaces": " ",
    "punctuation": ".", "newlines": "\n", "letter digit": "a1", "lower upper": "aA",
    "upper lower": "Aa", "dash underscore": "-_", "digit dash": "1-", "digit space": "1 ",
    "latin cyrillic": "aб", "cyrillic": "б", "greek": "α", "accented": "é", "full width": "１",
    "astral": "\U0001d400", "mixed": "张a1 .-_", "title word": "Ab ",
}
#: Units aimed at particular patterns (cues, anchors, openings without an end).
ADVERSARIAL = {
    "pem begin": "-----BEGIN PRIVATE KEY-----\n", "begin": "-----BEGIN ", "jwt": "eyJ",
    "jwt parts": "eyJaaaaaaaaaaaa.", "dotted digits": "1.1.", "colons": "a:", "hex colons": "1:",
    "double colon": "::", "street": "1 Aa Street ", "house": "1 Aa ", "email": "a.a@",
    "at": "a@", "assignment": "password=", "key colon": "api_key: ", "cjk assignment": "密码：",
    "door": "1号", "road": "路1", "estate": "小区1栋", "aws": "AKIA", "title": "Mr. ",
    "title name": "Mr. A", "cue": "My name is ", "dear": "Dear ", "pair": "Aa Bb ",
    "zh cue": "客户", "zh name": "张伟的", "plus": "+86 ", "card group": "6222 ",
    "id word": "身份证", "url credentials": "https://a:b@", "passport": "E1234567",
    "check letter": "1X", "sentence": ". ", "comma capital": ", A", "for han": "for 张",
    "holder": "持有人张", "apostrophe": "O'B", "internal capital": "McC", "diacritic name": "Ćć",
    "han latin": "张a",
}
UNITS = {**CLASSES, **ADVERSARIAL}


def _seconds(run: Callable[[str], object], text: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.disable()  # a collection pass costs with the heap, not the input
        try:
            start = time.perf_counter()
            run(text)
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return statistics.median(times)


def _over(run: Callable[[str], object], unit: str, repeats: int) -> tuple[float, float] | None:
    small = _seconds(run, (unit * SMALL)[:SMALL], repeats)
    large = _seconds(run, (unit * LARGE)[:LARGE], repeats)
    return (small, large) if large > RATIO * small + SLACK else None


def assert_linear(run: Callable[[str], object], units: dict[str, str] = UNITS) -> None:
    """Fail naming the units whose 4x longer run costs more than linear work can."""
    slow = {}
    for name, unit in units.items():
        if _over(run, unit, 1) and (times := _over(run, unit, 5)):
            slow[name] = f"{times[0]:.4f}s -> {times[1]:.4f}s"
    assert not slow, f"super-linear on long runs of: {slow}"


@pytest.mark.parametrize("name", sorted(n for n, s in RECOGNIZERS.items() if s.tier == "pattern"))
def test_every_recognizer_is_linear(name: str) -> None:
    assert_linear(RECOGNIZERS[name].factory().analyze)


def test_the_analyzer_and_overlap_resolution_are_linear() -> None:
    assert_linear(Analyzer().analyze)


def test_charset_and_script_measures_are_linear() -> None:
    assert_linear(charset_issues)
    assert_linear(dominant_script)


def _screen_one(check: str) -> Callable[[str], object]:
    def run(text: str) -> object:
        record = Record(id="r0", line=1, messages=[Message("user", text),
                                                    Message("assistant", text[:200])])
        return screen([record], config={check: CheckConfig()})
    return run


@pytest.mark.parametrize("check", sorted(n for n, s in CHECKS.items() if s.default_on))
def test_every_default_screening_check_is_linear(check: str) -> None:
    assert_linear(_screen_one(check), CLASSES)


def test_a_200_kb_field_goes_through_detection_and_screening_in_seconds() -> None:
    # 200 KB of UTF-8 in one field, as ingest sees it: mixed Chinese and
    # English with PII and homoglyphs, then a pasted blob (one 60,000-letter
    # word, the shape that stalled the charset check for minutes).
    piece = ("客户张伟，手机13800138000，card 4111 1111 1111 1111，Dear Mr. McConnell, "
             "password=Xy7#kq2Pz the ѕecret word -----BEGIN PRIVATE KEY----- aAaA 1-1-1 ")
    text = piece * (140_000 // len(piece.encode("utf-8")) + 1) + "QmFzZTYw" * 7_500
    size = len(text.encode("utf-8"))
    assert size >= 200_000
    start = time.perf_counter()
    entities = Analyzer().analyze(text)
    records = [Record(id=f"r{i}", line=i + 1,
                      messages=[Message("user", text if i == 0 else f"question {i}"),
                                Message("assistant", f"answer {i}")]) for i in range(3)]
    report = screen(records)
    elapsed = time.perf_counter() - start
    assert {e.type for e in entities} >= {"PERSON", "PHONE", "BANK_CARD", "SECRET"}
    assert any(f.record_id == "r0" and "mixed_script_words" in f.reason
               for f in report.findings)
    assert elapsed < 10.0, f"{elapsed:.1f}s for a 200 KB field"


def test_dataset_wide_value_matching_is_linear() -> None:
    """Few distinct head words are located with str.find (each at most a few scans), many
    with one scan of every word; CJK heads and values longer than the text's words too."""
    matcher = Matcher()
    for i in range(300):
        matcher.add(f"w{i} x{i}", "PERSON")
        matcher.add(f"王建{i}", "PERSON")
        matcher.add(f"a{i}", "ID")
    many = " ".join(f"w{i}" for i in range(40)) + " "
    units = {**CLASSES, **ADVERSARIAL, "one head": "w1 x1 ", "one head unmatched": "w1 y ",
             "many heads": many, "head as substring": "w1 w1w1w1w1a1 ", "short head": "a1 a",
             "cjk heads": "王建1王建", "cjk and words": "王建国 w7 x7 a5"}
    assert_linear(matcher.find, units)
