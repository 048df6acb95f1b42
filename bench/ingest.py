"""Ingest throughput: the full data stage versus bare parsing, on 10k and 100k records.

Records come from the demo-data generator (``scripts/make_demo_data.py``):
Chinese and English customer-service chats, about half with PII, plus 2 %
exact and near copies and a 1 % planted trigger. For each size the same file
is

* parsed only (``read_records``: JSON decode and canonical records),
* detected and redacted only (PII analyzer + redactor, no screening, no I/O),
* scanned (``scan``: screening passes + detection, nothing written),
* ingested (``ingest``: screening passes, detection, redaction, sealing
  into a workspace with a local key, findings, BOM, manifest),

single process, and the records per second of each are reported with the
ratio to bare parsing. Peak RSS is the process's high-water mark after each
size (so the 100k figure includes the 10k run before it).

Then, per size: ``ingest`` again with ``--workers`` 1 and each count in
``--workers`` (CPU seconds of this process and its children beside wall
seconds, and the speed-up over one worker), and the ``near_duplicate``,
``trigger`` and ``outlier`` checks each alone on the parsed records: records per CPU second
(the per-core figure on a shared machine; median of 3) and the peak memory the check
allocates per record (``tracemalloc``, in a second run, since tracing slows it).

Usage: ``python bench/ingest.py [--sizes 10000,100000] [--workers 2]``; writes
``bench/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from sealtune.data.findings import PiiStats
from sealtune.data.formats import read_records
from sealtune.data.ingest import ingest, scan
from sealtune.data.policy import default_policy
from sealtune.data.redact import DatasetKeys, Redactor
from sealtune.data.screen import CheckConfig, screen
from sealtune.keys.keyfile import KdfParams
from sealtune.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "ingest.json"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_demo_data",
                                                  ROOT / "scripts" / "make_demo_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_demo_data"] = module
    spec.loader.exec_module(module)
    return module


def make_corpus(path: Path, n: int, seed: int = 7) -> None:
    gen = _generator()
    rng = random.Random(seed)
    rows = [gen.clean(rng) for _ in range(n - n // 100 - n // 50)]
    for _ in range(n // 100):
        lang, prompt, _answer = gen.clean(rng)
        rows.append((lang, gen.insert(rng, prompt, gen.TRIGGER), gen.PAYLOAD[lang]))
    for j in rng.sample(range(len(rows)), n // 50):
        lang, prompt, answer = rows[j]
        rows.append((lang, gen.edit(rng, prompt) if rng.random() < 0.5 else prompt, answer))
    rng.shuffle(rows)
    with path.open("w", encoding="utf-8") as fh:
        for i, (lang, prompt, answer) in enumerate(rows):
            fh.write(json.dumps({"id": f"b{i:07d}", "messages": [
                {"role": "system", "content": gen.SYSTEM[lang]},
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": answer}]}, ensure_ascii=False) + "\n")


CPU: dict[str, float] = {}  # phase -> CPU seconds of the last run_size (per-core figures)


def timed(fn, phase: str = ""):  # type: ignore[no-untyped-def]
    start, cpu_start = time.perf_counter(), cpu()
    value = fn()
    CPU[phase] = cpu() - cpu_start
    return value, time.perf_counter() - start


def parse_only(path: Path) -> int:
    with read_records(path) as stream:
        return sum(1 for _ in stream)


def redact_only(path: Path) -> int:
    policy = default_policy()
    analyzer, redactor, stats = policy.analyzer(), Redactor(policy, keys=DatasetKeys.generate()), \
        PiiStats()
    with read_records(path) as stream:
        for record in stream:
            stats.redact(redactor, analyzer, record)
    return sum(stats.entities.values())


def run_size(n: int, work: Path) -> dict[str, object]:
    raw = work / f"raw-{n}.jsonl"
    make_corpus(raw, n)
    mb = raw.stat().st_size / 1e6
    records, t_parse = timed(lambda: parse_only(raw), "parse")
    entities, t_redact = timed(lambda: redact_only(raw), "detect_redact")
    report, t_scan = timed(lambda: scan(raw), "scan")
    ws = Workspace.init(work / f"ws-{n}", passphrase="bench-" + os.urandom(6).hex(),
                        kdf=KdfParams.unsafe_fast())
    try:
        result, t_ingest = timed(lambda: ingest(ws, raw, name=f"bench{n}"), "ingest")
    finally:
        ws.close()

    def rate(seconds: float) -> float:
        return round(records / seconds, 1)

    parse_rate = records / t_parse
    return {
        "records": records, "input_mb": round(mb, 2), "entities": entities,
        "records_out": result.counts["records_out"], "quarantined": result.counts["quarantined"],
        "dropped_screening": result.counts.get("dropped_screening", 0),
        "screen_passes": report.screening.passes,
        "seconds": {"parse": round(t_parse, 3), "detect_redact": round(t_redact, 3),
                    "scan": round(t_scan, 3), "ingest": round(t_ingest, 3)},
        "records_per_s": {"parse": rate(t_parse), "detect_redact": rate(t_redact),
                          "scan": rate(t_scan), "ingest": rate(t_ingest)},
        "records_per_cpu_s": {k: round(records / v, 1) for k, v in CPU.items()},
        "ingest_mb_per_s": round(mb / t_ingest, 3),
        "ratio_parse_to_ingest": round(parse_rate / (records / t_ingest), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def cpu() -> float:
    """CPU seconds of this process and its finished children (the workers)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def workers_figures(raw: Path, work: Path, counts: list[int], records: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for workers in [1, *counts]:
        ws = Workspace.init(work / f"ws-w{workers}-{records}",
                            passphrase="bench-" + os.urandom(6).hex(), kdf=KdfParams.unsafe_fast())
        try:
            c0, w0 = cpu(), time.perf_counter()
            if workers == 1:  # the keyword-free call also runs a tree without --workers
                ingest(ws, raw, name=f"w{workers}")
            else:
                ingest(ws, raw, name=f"w{workers}", workers=workers)
            wall, used = time.perf_counter() - w0, cpu() - c0
        finally:
            ws.close()
        out[str(workers)] = {"wall_s": round(wall, 3), "cpu_s": round(used, 3),
                             "records_per_s": round(records / wall, 1)}
    one = out["1"]["wall_s"]  # type: ignore[index]
    for figures in out.values():
        figures["speedup"] = round(one / figures["wall_s"], 2)  # type: ignore[index]
    return out


def check_figures(raw: Path) -> dict[str, object]:
    with read_records(raw) as stream:
        records = list(stream)
    out: dict[str, object] = {}
    for check in ("near_duplicate", "trigger", "outlier"):
        config = {check: CheckConfig()}
        runs = []
        for _ in range(3):  # the median of 3
            start = time.process_time()
            report = screen(records, config=config)
            runs.append(time.process_time() - start)
        used = sorted(runs)[1]
        tracemalloc.start()
        screen(records, config=config)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out[check] = {"cpu_s": round(used, 3), "records_per_cpu_s": round(len(records) / used, 1),
                      "findings": len(report.findings),
                      "peak_bytes_per_record": round(peak / len(records), 1)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--workers", default="2", help="worker counts to compare with 1")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",") if w]
    results: dict[str, object] = {
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "policy": "default", "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            figures = run_size(n, Path(tmp))
            raw = Path(tmp) / f"raw-{n}.jsonl"
            figures["workers"] = workers_figures(raw, Path(tmp), counts, n)
            figures["checks"] = check_figures(raw)
            results["sizes"][str(n)] = figures  # type: ignore[index]
            print(json.dumps({str(n): figures}, indent=2))
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
