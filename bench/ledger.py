"""Benchmark the audit ledger against plain SQLite inserts of the same rows.

Usage: .venv/bin/python bench/ledger.py [--entries 1000000] [--single 2000] [--workdir DIR]

Measures, in one run and on the same disk:
  * single-event appends per second (one transaction each, synchronous=FULL),
    in one process and in two processes appending to the same file;
  * append_many throughput (batches of --batch events per transaction), used to
    build a ledger of --entries entries (default 1,000,000);
  * Ledger.verify time over that ledger;
  * a baseline: plain SQLite inserts of the same columns, no hashing, no leaf,
    no signatures, same pragmas (WAL, synchronous=FULL), single-row and batched.

Prints a table and writes bench/results/ledger.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sealtune.core.note import NoteSigner
from sealtune.ledger import Ledger

ORIGIN = "sealtune.bench/ledger"
KEY_NAME = "sealtune.bench/key"
RESULTS = Path(__file__).resolve().parent / "results" / "ledger.json"
BASELINE_SCHEMA = (
    "CREATE TABLE entries (seq INTEGER PRIMARY KEY, time TEXT NOT NULL, actor TEXT NOT NULL, "
    "action TEXT NOT NULL, resource TEXT NOT NULL, outcome TEXT NOT NULL, details TEXT NOT NULL)"
)


def event(i: int) -> dict[str, Any]:
    """A typical event: a key use on a sealed file, a few small facts."""
    return {"actor": f"svc-{i % 7}", "action": "file.seal", "resource": f"datasets/ds-{i}",
            "outcome": "success", "details": {"bytes": 4096 + i, "key": "local:platform",
                                              "version": 3}}


def signer_from(raw: bytes) -> NoteSigner:
    return NoteSigner(Ed25519PrivateKey.from_private_bytes(raw), KEY_NAME)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- ledger workloads ---------------------------------------------------------------


def ledger_single(path: Path, raw: bytes, n: int, offset: int = 0) -> None:
    with Ledger.open(path, signer=signer_from(raw), origin=ORIGIN) as ledger:
        for i in range(offset, offset + n):
            ledger.append(**event(i))


def ledger_worker(path: str, raw: bytes, n: int, offset: int, go: Any) -> None:
    with Ledger.open(Path(path), signer=signer_from(raw), origin=ORIGIN) as ledger:
        go.wait()
        for i in range(offset, offset + n):
            ledger.append(**event(i))


def baseline_single(path: Path, n: int, offset: int = 0) -> None:
    conn = _baseline_conn(path)
    for i in range(offset, offset + n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO entries (time, actor, action, resource, outcome, details) "
                     "VALUES (?, ?, ?, ?, ?, ?)", _baseline_row(i))
        conn.execute("COMMIT")
    conn.close()


def baseline_worker(path: str, n: int, offset: int, go: Any) -> None:
    go.wait()
    baseline_single(Path(path), n, offset)


def baseline_batched(path: Path, n: int, batch: int) -> None:
    conn = _baseline_conn(path)
    for start in range(0, n, batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO entries (time, actor, action, resource, outcome, details) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         [_baseline_row(i) for i in range(start, min(n, start + batch))])
        conn.execute("COMMIT")
    conn.close()


def _baseline_conn(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(BASELINE_SCHEMA.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
    conn.execute("CREATE INDEX IF NOT EXISTS entries_time ON entries (time)")
    return conn


def _baseline_row(i: int) -> tuple[str, ...]:
    e = event(i)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return (now, e["actor"], e["action"], e["resource"], e["outcome"],
            json.dumps(e["details"], sort_keys=True, separators=(",", ":")))


def two_processes(target: Callable[..., None], path: Path, n: int, *extra: Any) -> float:
    """Run two processes of ``n`` appends each on one file; return the wall time."""
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    procs = [ctx.Process(target=target, args=(str(path), *extra, n, k * n, go)) for k in (0, 1)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let both open the file before the clock starts
    start = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit("a benchmark worker failed")
    return time.perf_counter() - start


# -- main ------------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    n1 = args.single
    res: dict[str, Any] = {}

    t = timed(lambda: ledger_single(work / "single.db", raw, n1))
    res["ledger_single_1proc_per_s"] = n1 / t
    t = timed(lambda: baseline_single(work / "base_single.db", n1))
    res["baseline_single_1proc_per_s"] = n1 / t

    Ledger.open(work / "two.db", signer=signer_from(raw), origin=ORIGIN).close()
    t = two_processes(ledger_worker, work / "two.db", n1 // 2, raw)
    res["ledger_single_2proc_per_s"] = n1 / t
    _baseline_conn(work / "base_two.db").close()
    t = two_processes(baseline_worker, work / "base_two.db", n1 // 2)
    res["baseline_single_2proc_per_s"] = n1 / t

    big = work / "big.db"
    n, batch = args.entries, args.batch
    with Ledger.open(big, signer=signer_from(raw), origin=ORIGIN) as ledger:
        def build() -> None:
            for start in range(0, n, batch):
                ledger.append_many([event(i) for i in range(start, min(n, start + batch))])
        t = timed(build)
        res["ledger_append_many_per_s"] = n / t
        res["ledger_build_s"] = t
        ledger.checkpoint()
        start = time.perf_counter()
        report = ledger.verify(signer_from(raw).verifier())
        res["ledger_verify_s"] = time.perf_counter() - start
        res["verify_ok"] = report.ok
        res["verify_entries"] = report.entries_checked
        res["verify_segments"] = report.segments
        res["verify_checkpoints"] = report.checkpoints
    res["ledger_db_bytes"] = big.stat().st_size
    t = timed(lambda: baseline_batched(work / "base_big.db", n, batch))
    res["baseline_batched_per_s"] = n / t
    res["baseline_db_bytes"] = (work / "base_big.db").stat().st_size
    for kind in ("single_1proc", "single_2proc"):
        res[f"ratio_{kind}"] = res[f"ledger_{kind}_per_s"] / res[f"baseline_{kind}_per_s"]
    res["ratio_batched"] = res["ledger_append_many_per_s"] / res["baseline_batched_per_s"]
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--single", type=int, default=2000,
                        help="single-event appends to time (split over two processes too)")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the databases go (default: a temp dir; avoid tmpfs)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sealtune-bench-", dir=args.workdir))
    try:
        res = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    env = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
           "platform": platform.platform(), "cpus": os.cpu_count(), "workdir": str(work.parent),
           "entries": args.entries, "single": args.single, "batch": args.batch,
           "when": datetime.now(UTC).isoformat(timespec="seconds")}
    rows = [
        ("single-event append, 1 process", "ledger_single_1proc_per_s",
         "baseline_single_1proc_per_s", "ratio_single_1proc"),
        ("single-event append, 2 processes", "ledger_single_2proc_per_s",
         "baseline_single_2proc_per_s", "ratio_single_2proc"),
        (f"batched append ({args.batch}/txn)", "ledger_append_many_per_s",
         "baseline_batched_per_s", "ratio_batched"),
    ]
    print(f"{'workload':36} {'ledger/s':>12} {'sqlite/s':>12} {'ratio':>7}")
    for label, a, b, r in rows:
        print(f"{label:36} {res[a]:12,.0f} {res[b]:12,.0f} {res[r]:7.2f}")
    print(f"verify {res['verify_entries']:,} entries ({res['verify_segments']} segments, "
          f"{res['verify_checkpoints']} checkpoints): {res['ledger_verify_s']:.1f} s, "
          f"ok={res['verify_ok']}")
    print(f"database size: ledger {res['ledger_db_bytes'] / 2**20:,.0f} MiB, "
          f"plain {res['baseline_db_bytes'] / 2**20:,.0f} MiB")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"environment": env, "results": res}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
