"""Redacting every occurrence: what record- and dataset-wide matching costs.

On the demo-data corpus of ``bench/ingest.py`` (Chinese and English chats,
about half with PII), in one process and one run, medians of ``--repeats``:

* ``detect``: the PII analyzer over every turn (the baseline);
* ``spread_record`` / ``spread_dataset``: :func:`sealtune.data.redact.spread.spread`
  over the same turns with their detections, without / with the dataset
  dictionary built from the whole corpus;
* the dictionary alone at 1k to 200k values (the cap): time to find the
  values in the corpus (ratio to ``detect``), time to build the candidate
  pattern (and scan 4096 characters), and its memory (tracemalloc);
* ``ingest`` end to end with dataset-wide redaction on (the default) and off
  (``unsafe_no_dataset_wide_redaction``), alternating, after one warm-up round.

Usage: ``python bench/spread.py [--records 10000] [--repeats 3]``; writes
``bench/results/spread.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sealtune.data.formats import read_records
from sealtune.data.ingest import ingest
from sealtune.data.policy import default_policy, parse_policy
from sealtune.data.redact import DatasetValues
from sealtune.data.redact.spread import _view, spread
from sealtune.keys.keyfile import KdfParams
from sealtune.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "spread.json"


def _ingest_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_ingest", ROOT / "bench" / "ingest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ingest"] = module
    spec.loader.exec_module(module)
    return module


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_values(n: int, rng: random.Random) -> DatasetValues:
    values = DatasetValues(limit=n)
    surnames = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"
    given = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏志文辉力斌宇浩凯"
    letters = "abcdefghijklmnopqrstuvwxyz"
    while len(values.matcher) < n:
        if rng.random() < 0.6:
            values.learn("PERSON", rng.choice(surnames) + "".join(rng.sample(given, 2)))
        else:
            first = "".join(rng.choice(letters) for _ in range(rng.randint(4, 8)))
            last = "".join(rng.choice(letters) for _ in range(rng.randint(4, 9)))
            values.learn("PERSON", f"{first.title()} {last.title()}")
    return values


def run(records: int, repeats: int, work: Path) -> dict[str, object]:
    raw = work / "raw.jsonl"
    _ingest_bench().make_corpus(raw, records)
    with read_records(raw) as stream:
        texts = [[m.content for m in r.messages] for r in stream]
    analyzer = default_policy().analyzer()
    found = [[analyzer.analyze(t) for t in turns] for turns in texts]
    corpus = DatasetValues()
    for turns, entities in zip(texts, found, strict=True):
        for text, ents in zip(turns, entities, strict=True):
            for e in ents:
                corpus.learn(e.type, text[e.start:e.end])
    t_detect = median_time(lambda: [[analyzer.analyze(t) for t in turns] for turns in texts],
                           repeats)
    t_record = median_time(lambda: [spread(t, f) for t, f in zip(texts, found, strict=True)],
                           repeats)
    t_dataset = median_time(lambda: [spread(t, f, dataset=corpus)
                                     for t, f in zip(texts, found, strict=True)], repeats)
    views = [_view(t)[0] for turns in texts for t in turns]
    scale = {}
    rng = random.Random(5)
    for n in (1_000, 10_000, 100_000, 200_000):
        tracemalloc.start()
        values = synthetic_values(n, rng)
        memory = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        start = time.perf_counter()
        list(values.matcher.find("王" * 4096))  # builds the candidate pattern
        t_build = time.perf_counter() - start
        def find_all(v: DatasetValues = values) -> None:
            for x in views:
                list(v.matcher.find(x))

        t_find = median_time(find_all, repeats)
        scale[str(n)] = {"find_s": round(t_find, 3), "ratio_to_detect": round(t_find / t_detect, 3),
                         "pattern_build_s": round(t_build, 3),
                         "memory_mb": round(memory / 1e6, 1)}
    policies = {"dataset_wide_on": default_policy(), "dataset_wide_off": parse_policy(
        {"version": 1, "unsafe_no_dataset_wide_redaction": True}, source="bench")}
    times: dict[str, list[float]] = {label: [] for label in policies}
    for k in range(repeats + 1):  # the first round warms caches up and is not counted
        for label, policy in (policies.items() if k % 2 else reversed(policies.items())):
            ws = Workspace.init(work / f"ws-{label}-{k}", passphrase="b-" + os.urandom(6).hex(),
                                kdf=KdfParams.unsafe_fast())
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    start = time.perf_counter()
                    ingest(ws, raw, name="b", policy=policy)
                    if k:
                        times[label].append(time.perf_counter() - start)
            finally:
                ws.close()
    ingest_s = {label: round(statistics.median(t), 3) for label, t in times.items()}
    return {
        "records": records, "turns": len(views), "dictionary_values": corpus.to_json(),
        "seconds": {"detect": round(t_detect, 3), "spread_record": round(t_record, 3),
                    "spread_dataset": round(t_dataset, 3)},
        "ratio_to_detect": {"spread_record": round(t_record / t_detect, 3),
                            "spread_dataset": round(t_dataset / t_detect, 3)},
        "dictionary_scale": scale,
        "ingest_seconds": ingest_s,
        "ingest_ratio_on_to_off": round(ingest_s["dataset_wide_on"]
                                        / ingest_s["dataset_wide_off"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = run(args.records, args.repeats, Path(tmp))
    results = {"python": platform.python_version(), "machine": platform.machine(),
               "cpus": os.cpu_count(), "repeats": args.repeats, **figures}
    print(json.dumps(results, indent=2))
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
