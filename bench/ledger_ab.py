"""Append rate of the audit ledger: this tree against another source tree, same run.

Usage: .venv/bin/python bench/ledger_ab.py --baseline-src DIR [--single 1500] [--batched 50000]
           [--rounds 5] [--workdir DIR]

``DIR`` is the ``src`` directory of the version to compare with (e.g. a
``git archive`` of the previous commit). Each round runs, in fresh
subprocesses and alternating the order, the same workloads on both trees:

  * single-event appends (one transaction each, synchronous=FULL);
  * batched appends (``append_many`` of 1000 events per transaction);
  * each both as wall-clock and as process CPU time (the CPU figure is what the
    code itself costs; wall time on a shared machine mostly measures fsync and
    the neighbours);
  * for this tree only, the cost of sealing at exit (``Ledger.seal``: one segment
    and one global checkpoint) after a command-sized batch of 20 appends.

Prints medians per tree and the ratio of medians (this tree / baseline), and
writes bench/results/ledger_ab.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "ledger_ab.json"

WORKER = r"""
import json, sys, time
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sealtune.core.note import NoteSigner
from sealtune.ledger import Ledger

kind, n, path = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
signer = NoteSigner(Ed25519PrivateKey.generate(), "sealtune.bench/key")

def event(i):
    return {"actor": f"svc-{i % 7}", "action": "file.seal", "resource": f"datasets/ds-{i}",
            "outcome": "success", "details": {"bytes": 4096 + i, "key": "local:platform"}}

out = {}
with Ledger.open(path, signer=signer, origin="sealtune.bench/ledger") as ledger:
    start, cpu = time.perf_counter(), time.process_time()
    if kind == "single":
        for i in range(n):
            ledger.append(**event(i))
    else:
        for s in range(0, n, 1000):
            ledger.append_many([event(i) for i in range(s, min(n, s + 1000))])
    out["per_s"] = n / (time.perf_counter() - start)
    out["cpu_per_s"] = n / (time.process_time() - cpu)
    if kind == "single" and hasattr(ledger, "seal"):
        seals = []
        for _ in range(20):
            for i in range(20):
                ledger.append(**event(i))
            t = time.perf_counter()
            ledger.seal()
            seals.append(time.perf_counter() - t)
        out["seal_ms"] = sorted(seals)[len(seals) // 2] * 1000
print(json.dumps(out))
"""


def run_worker(src: Path, kind: str, n: int, work: Path) -> dict[str, float]:
    db = work / f"{kind}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(src)}
    res = subprocess.run([sys.executable, "-c", WORKER, kind, str(n), str(db)], env=env,
                         capture_output=True, text=True, check=True, timeout=3600)
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, required=True)
    parser.add_argument("--single", type=int, default=1500)
    parser.add_argument("--batched", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    trees = {"this": HERE.parent / "src", "baseline": args.baseline_src.resolve()}
    keys = ("single", "batched", "single_cpu", "batched_cpu", "seal_ms")
    samples: dict[str, dict[str, list[float]]] = {t: {k: [] for k in keys} for t in trees}
    work = Path(tempfile.mkdtemp(prefix="sealtune-ab-", dir=args.workdir))
    try:
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            for name in order:
                single = run_worker(trees[name], "single", args.single, work)
                samples[name]["single"].append(single["per_s"])
                samples[name]["single_cpu"].append(single["cpu_per_s"])
                if "seal_ms" in single:
                    samples[name]["seal_ms"].append(single["seal_ms"])
                batched = run_worker(trees[name], "batched", args.batched, work)
                samples[name]["batched"].append(batched["per_s"])
                samples[name]["batched_cpu"].append(batched["cpu_per_s"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {t: {k: statistics.median(v) for k, v in s.items() if v} for t, s in samples.items()}
    rows = (("single", "single-event append, wall"), ("single_cpu", "single-event append, CPU"),
            ("batched", "batched append, wall"), ("batched_cpu", "batched append, CPU"))
    ratios = {k: med["this"][k] / med["baseline"][k] for k, _ in rows}
    print(f"{'workload (per second)':28} {'baseline':>12} {'this':>12} {'ratio':>7}")
    for k, label in rows:
        print(f"{label:28} {med['baseline'][k]:12,.0f} {med['this'][k]:12,.0f} {ratios[k]:7.3f}")
    if "seal_ms" in med["this"]:
        print(f"seal at exit (20 entries): {med['this']['seal_ms']:.2f} ms (median)")
    env = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
           "cpus": os.cpu_count(), "rounds": args.rounds, "single": args.single,
           "batched": args.batched, "when": datetime.now(UTC).isoformat(timespec="seconds")}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"environment": env, "samples": samples, "medians": med,
                           "ratios": ratios}
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
