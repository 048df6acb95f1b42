"""Audit export throughput of the control plane against a bare SQLite read of the same rows.

A fresh workspace's ledger is filled with N entries (default 1,000,000;
``append_many`` in batches of 10,000, not timed), then, for each of R rounds:

* ``console_jsonl``: ``GET /api/v1/audit/export?format=jsonl`` through the
  real app (:func:`sealtune.api.build_console`, an auditor's API key, the
  guard, the streaming response), read to the end by an in-process HTTP
  client (``fastapi.testclient``; no socket), counting lines;
* ``console_csv``: the same with ``format=csv``;
* ``ledger_jsonl``: the ledger's own export (:meth:`sealtune.ledger.Ledger.export`,
  what ``sealtune audit export`` runs) into an in-memory buffer: the stage's
  cost, so that ``console_over_ledger`` is the HTTP layer's share;
* ``sqlite_leaves``: the baseline, ``SELECT leaf FROM entries ORDER BY seq``
  with the standard library's ``sqlite3`` on the same file, each leaf
  written to an in-memory buffer with its newline (the least any export of
  the same rows costs).

Each figure is entries per second, the median over the rounds;
``console_over_sqlite`` is the console's JSONL throughput as a share of the
bare read's, ``console_over_ledger`` as a share of the ledger's own export.

Usage: ``python bench/console.py [--entries 1000000] [--rounds 3]``; writes
``bench/results/console.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from sealtune.api import ConsoleOptions, build_console
from sealtune.keys.keyfile import KdfParams
from sealtune.serve import create_api_key
from sealtune.workspace import Workspace

_BATCH = 10_000


def _fill(ws: Workspace, n: int) -> None:
    made = 0
    while made < n:
        k = min(_BATCH, n - made)
        ws.ledger.append_many({"actor": f"bench-{i % 7}", "action": "bench.event",
                               "resource": f"job/bench-{(made + i) // 1000}",
                               "details": {"i": made + i, "digest": "sha256:" + "ab" * 32}}
                              for i in range(k))
        made += k
    ws.seal_ledger()


def _console(client: TestClient, key: str, fmt: str) -> int:
    lines = 0
    with client.stream("GET", f"/api/v1/audit/export?format={fmt}",
                       headers={"Authorization": f"Bearer {key}"}) as r:
        assert r.status_code == 200, r.status_code
        for chunk in r.iter_bytes():
            lines += chunk.count(b"\n")
    return lines - (1 if fmt == "csv" else 0)


def _sqlite(path: Path) -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    out, n = io.BytesIO(), 0
    try:
        for (leaf,) in con.execute("SELECT leaf FROM entries ORDER BY seq"):
            out.write(leaf)
            out.write(b"\n")
            n += 1
    finally:
        con.close()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws", passphrase="bench-" + secrets.token_hex(8),
                            kdf=KdfParams.unsafe_fast(), default_key="k1")
        try:
            t0 = time.perf_counter()
            _fill(ws, args.entries)
            fill_s = time.perf_counter() - t0
            total = sum(1 for _ in ws.ledger.entries())
            key, _ = create_api_key(ws, role="auditor")
            client = TestClient(build_console(ws, ConsoleOptions()).app)
            rates: dict[str, list[float]] = {"console_jsonl": [], "console_csv": [],
                                             "ledger_jsonl": [], "sqlite_leaves": []}
            for _ in range(args.rounds):
                for name, run in (("sqlite_leaves", lambda: _sqlite(ws.ledger_path)),
                                  ("ledger_jsonl",
                                   lambda: ws.ledger.export("jsonl", io.StringIO())),
                                  ("console_jsonl", lambda: _console(client, key, "jsonl")),
                                  ("console_csv", lambda: _console(client, key, "csv"))):
                    t = time.perf_counter()
                    rows = run()
                    rates[name].append(rows / (time.perf_counter() - t))
                    assert rows >= total, (name, rows, total)
        finally:
            ws.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    result = {"entries": total, "rounds": args.rounds, "fill_seconds": round(fill_s, 1),
              "entries_per_second": {k: round(v) for k, v in med.items()},
              "console_over_sqlite": round(med["console_jsonl"] / med["sqlite_leaves"], 3),
              "console_over_ledger": round(med["console_jsonl"] / med["ledger_jsonl"], 3),
              "python": sys.version.split()[0], "machine": platform.machine(),
              "cpus": os.cpu_count()}
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "console.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
