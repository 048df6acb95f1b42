"""The pattern tier finds exactly what the golden file says (bench/pii_golden.py).

Speed work on the recognizers must change no finding: the golden file holds
findings recorded before it, on generated records of both benchmark styles
and on the literals of the PII unit tests.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from sealtune.data.pii import Analyzer

GOLDEN = Path(__file__).resolve().parents[3] / "vectors" / "data" / "pii" / "golden.json.gz"


def test_pattern_tier_matches_golden_findings() -> None:
    golden = json.loads(gzip.decompress(GOLDEN.read_bytes()))
    texts, expected = golden["texts"], golden["findings"]
    assert len(texts) == len(expected) > 5000
    assert sum(map(len, expected)) > 8000  # the corpus is not empty of findings
    analyzer = Analyzer()
    diffs = []
    for i, (text, want) in enumerate(zip(texts, expected, strict=True)):
        got = [[e.type, e.start, e.end] for e in analyzer.analyze(text)]
        if got != want:
            diffs.append(f"text {i}: expected {want}, got {got}")
    assert not diffs, f"{len(diffs)} texts differ:\n" + "\n".join(diffs[:20])


def test_golden_comparison_can_fail() -> None:
    """A changed text changes the findings the comparison checks."""
    golden = json.loads(gzip.decompress(GOLDEN.read_bytes()))
    i = next(i for i, f in enumerate(golden["findings"]) if f)
    got = [[e.type, e.start, e.end] for e in Analyzer().analyze("xx " + golden["texts"][i])]
    assert got != golden["findings"][i]
