"""`data ingest --executor ray` against `local` on the same 100k records: outputs, timings.

The corpus is bench/ingest.py's (demo generator: Chinese and English chats,
about half with PII, 2 % copies, 1 % planted trigger). The same file is
ingested twice into one workspace with the same dataset keys, once per
executor (the ``ray`` one starts a private local Ray on 127.0.0.1, or joins
``$RAY_ADDRESS``); the decrypted data and quarantine records, manifest
counts and policy, findings (less the screening time) and the BOM's
properties must be equal, and the wall-clock of each run and their ratio
are reported (one run each, in the same process: Ray's start-up, about 7 s
on an idle 2-CPU VM, is inside the ``ray`` figure).

A separate file from bench/ingest.py so that the speed work there and this
comparison do not collide; it imports its corpus generator.

With ``--sandbox`` both runs are ``sealtune data ingest``'s default: inside
the data sandbox, where the ``ray`` run starts its private Ray (whose
network is loopback only). Without it both run in this process, and the
private Ray is refused unless this process's network namespace has only
loopback: run it as ``bwrap --dev-bind / / --unshare-net python
bench/ingest_ray.py``.

Usage: ``python bench/ingest_ray.py [--records 100000] [--sandbox]``; writes
``bench/results/ingest_ray.json``; exits 1 if the outputs differ.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sealtune.data.ingest import ingest
from sealtune.data.redact import DatasetKeys
from sealtune.data.store import show_dataset
from sealtune.keys.keyfile import KdfParams
from sealtune.keys.sealing import open_sealed_lines
from sealtune.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "ingest_ray.json"


def _bench_ingest() -> Any:
    spec = importlib.util.spec_from_file_location("bench_ingest", ROOT / "bench" / "ingest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def facts(ws: Workspace, name: str) -> dict[str, Any]:
    """What must not depend on the executor (sealed records compared after decryption)."""
    info = show_dataset(ws, name)
    info.raise_if_broken()
    m = info.manifest
    findings = json.loads(info.file("findings").read_text("utf-8"))
    findings["screening"].pop("seconds")
    findings.pop("dataset")
    bom = json.loads(info.file("bom").read_text("utf-8"))
    return {"records": {p: list(open_sealed_lines(info.file(p), keys=ws.keys))
                        for p in ("data", "quarantine")},
            "counts": m["counts"], "policy": m["policy"], "input": m["input"],
            "plaintext": {p: m["files"][p]["plaintext_sha256"] for p in ("data", "quarantine")},
            "findings": findings, "bom_props": bom["metadata"]["component"]["properties"]}


def _sandboxed(ws: Workspace, raw: Path, **options: Any) -> Any:
    from sealtune.data.sandboxed import ingest_dataset

    return ingest_dataset(ws, raw, tmpfs_size=4 << 30, **options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sandbox", action="store_true",
                        help="both runs in the data sandbox (Ray started inside it)")
    args = parser.parse_args()
    run = _sandboxed if args.sandbox else ingest
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        work = Path(tmp)
        raw = work / "raw.jsonl"
        _bench_ingest().make_corpus(raw, args.records)
        ws = Workspace.init(work / "ws", passphrase="bench-" + os.urandom(6).hex(),
                            kdf=KdfParams.unsafe_fast())
        secret = DatasetKeys.generate().secret
        seconds = {}
        try:
            for executor in ("local", "ray"):
                start = time.perf_counter()
                run(ws, raw, name=executor, executor=executor,
                    dataset_keys=DatasetKeys(secret))
                seconds[executor] = round(time.perf_counter() - start, 2)
            same = facts(ws, "local") == facts(ws, "ray")
            counts = show_dataset(ws, "local").counts
        finally:
            ws.close()
    result = {"records": args.records, "sandboxed": args.sandbox,
              "identical_outputs": same, "seconds": seconds,
              "ratio_ray_to_local": round(seconds["ray"] / seconds["local"], 2),
              "counts": counts, "cpus": os.cpu_count(), "machine": platform.machine(),
              "python": platform.python_version()}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    print(json.dumps(result, indent=2))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
