"""Poisoning-screening benchmark: trigger recall / clean flags, near duplicates, throughput.

Usage::

    .venv/bin/python bench/poison.py [--records 10000] [--seeds 5] [--sizes 10000,100000]
                                     [--only trigger,duplicates,throughput]

Corpus: ``bench/poison_corpus.py`` (the unit tests' generator): mixed
Chinese/English customer-service records from 16 intents with paraphrases,
slots, common and rare greetings (some mirrored in the answer), brand system
prompts, plus planted exact and near copies, conflicts and outliers.

1. Trigger: per seed and scenario, ``--records`` records with 1 % carrying
   the trigger (``cf-7Xq`` or ``星河计划``, at a random position) whose answer
   is a fixed malicious pattern (``fixed``) or the normal answer plus a
   malicious link (``link``), and a trigger-free corpus (``none``). Recall
   over poisoned records, and the share of clean records the trigger check
   flags; median and range over seeds. Also the smallest planted count still
   found (100, 50, 30, 20, 15 carriers in 10,000).
2. Near duplicates: planted near copies (two small edits each); recall by
   pair (both in one reported cluster), precision against the planted labels
   and against true character-3-gram Jaccard >= 0.8 with some listed member
   of the cluster (the generator also makes real near copies by chance:
   records from one template differing only in a slot), and the same for
   exact copies.
3. Throughput of the whole default screen (every default check) at each of
   ``--sizes`` records, in a fresh process each, with the peak RSS growth.

Results go to ``bench/results/poison.json`` (with ``--only``, which runs the
named parts alone: ``poison-<parts>.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import poison_corpus
from sealtune.data.screen import CheckConfig, screen
from sealtune.data.screen._text import normalize

RESULTS = Path(__file__).resolve().parent / "results" / "poison.json"
PARTS = ("trigger", "duplicates", "throughput")
SCENARIOS = [("cf-7Xq", "fixed"), ("星河计划", "fixed"), ("cf-7Xq", "link"), ("星河计划", "link"),
             ("", "none")]
_NOISE = re.compile(r"[\s\W_]+")


def trigger_run(gen: Any, n: int, seed: int, trigger: str, mode: str,
                n_poison: int) -> dict[str, Any]:
    corpus = gen.make_corpus(n, seed=seed, trigger=trigger or "unused",
                             poison_mode="fixed" if mode == "none" else mode, n_poison=n_poison)
    start = time.perf_counter()
    report = screen(corpus.records, config={"trigger": CheckConfig()})
    seconds = time.perf_counter() - start
    flagged = {f.record_id for f in report.findings}
    poison = corpus.ids("poison")
    clean = {r.id for r in corpus.records} - poison
    return {"seed": seed, "recall": len(flagged & poison) / len(poison) if poison else None,
            "clean_flagged": len(flagged & clean),
            "clean_fp_rate": len(flagged & clean) / len(clean),
            "triggers": len(report.triggers), "seconds": round(seconds, 2)}


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench_trigger(gen: Any, n: int, seeds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for trigger, mode in SCENARIOS:
        runs = [trigger_run(gen, n, s, trigger, mode, 0 if mode == "none" else n // 100)
                for s in range(seeds)]
        key = f"{trigger or '-'}/{mode}"
        out[key] = {"runs": runs, "clean_fp_rate": summary([r["clean_fp_rate"] for r in runs])}
        if mode != "none":
            out[key]["recall"] = summary([r["recall"] for r in runs])
        print(f"trigger {key:16s} recall={out[key].get('recall')} fp={out[key]['clean_fp_rate']}",
              flush=True)
    weak = {}
    for count in (100, 50, 30, 20, 15):
        runs = [trigger_run(gen, n, s, "cf-7Xq", "fixed", count) for s in range(min(seeds, 3))]
        weak[str(count)] = {"recall": [r["recall"] for r in runs],
                            "clean_flagged": [r["clean_flagged"] for r in runs]}
    out["carriers_needed"] = weak
    print("trigger by carrier count", weak, flush=True)
    return out


def _shingles(record: Any) -> set[str]:
    out: set[str] = set()
    for text in (record.prompt_text(), record.response_text()):
        t = _NOISE.sub("", normalize(text))
        out |= {t[i:i + 3] for i in range(max(1, len(t) - 2))}
    return out


def _jaccard(a: Any, b: Any) -> float:
    x, y = _shingles(a), _shingles(b)
    return len(x & y) / len(x | y)


def bench_duplicates(gen: Any, n: int, seeds: int) -> dict[str, Any]:
    rows = []
    for seed in range(seeds):
        corpus = gen.make_corpus(n, seed=seed, n_poison=0)
        by_id = {r.id: r for r in corpus.records}
        report = screen(corpus.records, config={"exact_duplicate": CheckConfig(),
                                                "near_duplicate": CheckConfig()})
        cluster: dict[str, set[str]] = {}
        near = [f for f in report.findings if f.check == "near_duplicate"]
        exact = [f for f in report.findings if f.check == "exact_duplicate"]
        for f in near + exact:
            members = {f.record_id, *f.related_ids}
            for m in members:
                cluster.setdefault(m, set()).update(members)
        found = sum(1 for p in corpus.near_pairs if set(p) <= cluster.get(min(p), set()))
        planted = sum(1 for f in near if frozenset((f.record_id, f.related_ids[0]))
                      in corpus.near_pairs)

        # A cluster joins copies through chains (A~B, B~C): a finding is right
        # when its record truly matches some listed member of its cluster.
        best = [max(_jaccard(by_id[f.record_id], by_id[o]) for o in f.related_ids) for f in near]
        true_near = sum(1 for b in best if b >= 0.8 - 1e-9)
        near_07 = sum(1 for b in best if b >= 0.7)
        exact_ok = sum(1 for f in exact if normalize(by_id[f.record_id].prompt_text())
                       == normalize(by_id[f.related_ids[0]].prompt_text()))
        rows.append({"seed": seed, "planted_near_pairs": len(corpus.near_pairs),
                     "near_recall": found / len(corpus.near_pairs),
                     "near_findings": len(near),
                     "near_precision_planted": planted / len(near) if near else 1.0,
                     "near_precision_true_jaccard": true_near / len(near) if near else 1.0,
                     "near_share_true_jaccard_0_7": near_07 / len(near) if near else 1.0,
                     "exact_findings": len(exact),
                     "exact_precision": exact_ok / len(exact) if exact else 1.0})
    out = {"runs": rows}
    for key in ("near_recall", "near_precision_planted", "near_precision_true_jaccard",
                "near_share_true_jaccard_0_7", "exact_precision"):
        out[key] = summary([r[key] for r in rows])
    print("duplicates", {k: v for k, v in out.items() if k != "runs"}, flush=True)
    return out


def throughput_child(n: int) -> None:
    gen = poison_corpus.load()
    corpus = gen.make_corpus(n, seed=0, n_poison=n // 100)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu = time.perf_counter(), time.process_time()
    report = screen(corpus.records)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"records": n, "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                      "records_per_s": round(n / wall), "passes": report.passes,
                      "findings": report.counts(),
                      "peak_rss_growth_mb": round((after - before) / 1024, 1),
                      "peak_rss_mb": round(after / 1024, 1)}))


def bench_throughput(sizes: list[int]) -> list[dict[str, Any]]:
    out = []
    for n in sizes:
        proc = subprocess.run([sys.executable, __file__, "--_throughput", str(n)],
                              capture_output=True, text=True, check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        print("throughput", row, flush=True)
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run (of {', '.join(PARTS)})")
    parser.add_argument("--_throughput", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._throughput:
        throughput_child(args._throughput)
        return
    parts = [p for p in args.only.split(",") if p]
    if not parts or set(parts) - set(PARTS):
        parser.error(f"--only: choose from {', '.join(PARTS)} (got {args.only!r})")
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "records": args.records, "seeds": args.seeds}
    gen = poison_corpus.load()
    if "trigger" in parts:
        results["trigger"] = bench_trigger(gen, args.records, args.seeds)
    if "duplicates" in parts:
        results["duplicates"] = bench_duplicates(gen, args.records, args.seeds)
    if "throughput" in parts:
        results["throughput"] = bench_throughput([int(s) for s in args.sizes.split(",")])
    out = RESULTS if set(parts) == set(PARTS) else \
        RESULTS.with_name(f"poison-{'-'.join(p for p in PARTS if p in parts)}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
