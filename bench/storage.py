"""Ledger appends and blob writes on the scaled-out adapters, against the embedded defaults.

Usage: .venv/bin/python bench/storage.py [--rounds 3] [--appends 300] [--blobs 50]

Starts a throwaway PostgreSQL 15 cluster (Unix socket) and moto's S3 server
(an in-memory test double: its figures say nothing of a real store's
latency), then, each round:

* ledger: ``--appends`` single-entry appends (one transaction each, a
  checkpoint every 100) to a SQLite file (baseline) and to a PostgreSQL schema;
* blobs: ``--blobs`` 64 KiB ``put_if_absent`` writes to a local directory
  (baseline) and to an S3 bucket (conditional writes over HTTP).

Reports medians over ``--rounds`` and each adapter's ratio to its baseline
(higher = slower); writes bench/results/storage.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealtune.core.note import NoteSigner
from sealtune.ledger import Ledger
from sealtune.storage import open_blob_store

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SIGNER = NoteSigner(Ed25519PrivateKey.generate(), "bench/ledger")


def _pg(top: Path) -> str:
    sock, data = top / "sock", top / "data"
    sock.mkdir()
    for p in (top, sock):
        shutil.chown(p, "postgres")
    su = ["su", "postgres", "-s", "/bin/sh", "-c"]
    subprocess.run([*su, f"{PG_BIN}/initdb -D {data} -A trust -U postgres --no-sync"],
                   check=True, capture_output=True)
    subprocess.run([*su, f"{PG_BIN}/pg_ctl -D {data} -l {top}/log -w start "
                         f"-o '-k {sock} -p 5432 -c listen_addresses='"],
                   check=True, capture_output=True)
    return f"postgresql://postgres@/postgres?host={sock}&port=5432"


def _moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)
    return proc, f"http://127.0.0.1:{port}"


def _appends(location: str, n: int) -> float:
    start = time.perf_counter()
    with Ledger.open(location, signer=SIGNER, origin="bench/storage", checkpoint_every=100) as lg:
        for i in range(n):
            lg.append(actor="bench", action="bench.append", resource=f"r/{i}")
    return time.perf_counter() - start


def _puts(url: str, root: Path, n: int) -> float:
    store = open_blob_store(url, root=root)
    payload = os.urandom(64 * 1024)
    start = time.perf_counter()
    for i in range(n):
        store.put_if_absent(f"bench/{i}", payload)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--appends", type=int, default=300)
    ap.add_argument("--blobs", type=int, default=50)
    args = ap.parse_args()
    top = Path(tempfile.mkdtemp(prefix="stb-", dir="/tmp"))
    pg = _pg(top)
    moto, endpoint = _moto()
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
    import boto3

    times: dict[str, list[float]] = {k: [] for k in ("sqlite", "postgresql", "file", "s3")}
    try:
        for r in range(args.rounds):
            times["sqlite"].append(_appends(str(top / f"l{r}.db"), args.appends))
            times["postgresql"].append(_appends(f"{pg}&schema=b{r}", args.appends))
            times["file"].append(_puts(f"file:blobs{r}", top, args.blobs))
            bucket = f"bench-{secrets.token_hex(4)}"
            boto3.client("s3").create_bucket(Bucket=bucket)
            times["s3"].append(_puts(f"s3://{bucket}", top, args.blobs))
    finally:
        moto.terminate()
        subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c",
                        f"{PG_BIN}/pg_ctl -D {top}/data -m immediate stop"], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "appends": args.appends, "blobs_64k": args.blobs, "rounds": args.rounds,
        "median_s": med,
        "ledger_appends_per_s": {k: args.appends / med[k] for k in ("sqlite", "postgresql")},
        "blob_puts_per_s": {k: args.blobs / med[k] for k in ("file", "s3")},
        "ratio_postgresql_to_sqlite": med["postgresql"] / med["sqlite"],
        "ratio_s3_to_file": med["s3"] / med["file"],
    }
    out = Path(__file__).parent / "results" / "storage.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
