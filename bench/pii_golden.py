"""Golden findings of the pattern tier, to prove that speed work changes none.

Usage::

    .venv/bin/python bench/pii_golden.py [--out tests/vectors/data/pii/golden.json.gz]

The corpus: records of both ``bench/pii_corpus.py`` styles (fixed seeds) and
every string literal of the PII unit tests (``tests/unit/data/pii/``), plus
each literal with its neighbours in one text. For each text the golden file
holds the text and every finding of the default pattern-tier
:class:`Analyzer` as ``[type, start, end]`` (the texts are stored, so new
unit tests do not shift the corpus). ``tests/unit/data/pii/test_pii_golden.py``
runs the analyzer on the stored texts and compares the findings exactly:
rebuild the file only when a finding is meant to change, and say so in the
commit.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pii_corpus import generate

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "vectors" / "data" / "pii" / "golden.json.gz"
TEST_DIR = ROOT / "tests" / "unit" / "data" / "pii"
STYLES = (("dense", 20240601, 3000), ("dialogue", 20240602, 1000))


def _literals(path: Path) -> list[str]:
    """Short string literals of a test module (long ones are adversarial inputs)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = [node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    return [s for s in found if 3 <= len(s) <= 2000]


def corpus() -> list[str]:
    """The texts, deterministic: generated records, then test literals."""
    texts = [rec.text for style, seed, n in STYLES for rec in generate(n, seed, style=style)]
    literals: list[str] = []
    for path in sorted(TEST_DIR.glob("test_*.py")):
        if path.name != "test_pii_golden.py":
            literals += _literals(path)
    literals = list(dict.fromkeys(literals))
    texts += literals
    # Neighbours joined: a literal's context (a cue, a line start) changes.
    texts += [" ".join(literals[i:i + 3]) for i in range(0, len(literals), 2)]
    texts += ["\n".join(literals[i:i + 2]) for i in range(1, len(literals), 3)]
    return texts


def findings(texts: list[str]) -> list[list[list[object]]]:
    from sealtune.data.pii import Analyzer

    analyzer = Analyzer()
    return [[[e.type, e.start, e.end] for e in analyzer.analyze(t)] for t in texts]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=GOLDEN)
    args = ap.parse_args()
    texts = corpus()
    found = findings(texts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(args.out, "wb", mtime=0) as f:
        f.write(json.dumps({"texts": texts, "findings": found}, ensure_ascii=False,
                           separators=(",", ":")).encode())
    print(f"{len(texts)} texts, {sum(map(len, found))} findings -> {args.out}")


if __name__ == "__main__":
    main()
