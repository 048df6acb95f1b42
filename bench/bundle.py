"""Evidence bundle write and verify time for a two-step run, against hashing the same bytes.

Usage: .venv/bin/python bench/bundle.py [--rounds 5] [--workdir DIR]

Sets up one real run (workspace, the bundled sample data ingested, the tiny
model trained for two steps with DP in the bubblewrap sandbox), then, each
round:

* write: ``EvidenceRecorder.write`` of the two recorded steps, as a directory
  and as a tar (signing the statements and the manifest, proving every ledger
  event against a fresh checkpoint, writing every file atomically);
* verify: ``verify_bundle`` of the directory and of the tar with the pinned
  keys (every check);
* baseline: reading the bundle's files from disk and hashing them with
  SHA-256 (``hashlib``), the least any integrity check of those bytes costs.

Reports medians over ``--rounds`` and the ratios to the baseline; writes
bench/results/bundle.json. The absolute figures matter more than the ratio:
the baseline of ~100 KB hashes in well under a millisecond, while the bundle
verifies Ed25519 signatures and one inclusion proof per ledger event.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sealtune.evidence import (
    EvidenceRecorder,
    Pins,
    evidence_signer,
    record_dataset,
    record_training,
    run_events,
    verify_bundle,
)
from sealtune.keys.keyfile import KdfParams
from sealtune.workspace import Workspace

RESULTS = Path(__file__).resolve().parent / "results" / "bundle.json"


def _setup(work: Path) -> tuple[Workspace, str, list[int], list[int]]:
    import torch

    from sealtune.data.ingest import ingest
    from sealtune.train.config import TrainConfig
    from sealtune.train.jobs import run_job
    from sealtune.train.tiny import make_tiny

    torch.set_num_threads(1)
    ws = Workspace.init(work / "ws", passphrase="bench-" + "x" * 16,
                        kdf=KdfParams.unsafe_fast())
    since = datetime.now(UTC) - timedelta(seconds=1)
    raw = work / "raw.jsonl"
    raw.write_bytes(resources.files("sealtune.demo_data").joinpath(
        "conversations.jsonl").read_bytes())
    ingest(ws, raw, name="support")
    config = TrainConfig.from_dict({"epochs": 1, "batch_size": 4, "lr": 0.01, "seed": 1,
                                    "max_length": 48, "max_steps": 2,
                                    "dp": {"epsilon": 8.0, "noise_multiplier": 1.0}})
    job = run_job(ws, dataset="support", base=make_tiny(work / "base", seed=0),
                  config=config, out_name="m1", threads=1, tmpfs_size=256 << 20).job_id
    data = run_events(ws.ledger, since=since, resources=["dataset/support"])
    train = run_events(ws.ledger, since=since, resources=[f"job/{job}"])
    return ws, job, data, train


def _median(fn: Callable[[int], object], rounds: int) -> float:
    times = []
    for n in range(rounds):
        start = time.perf_counter()
        fn(n)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _hash_files(root: Path) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        with path.open("rb") as fh:
            hashlib.file_digest(fh, "sha256")


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    ws, job, data, train = _setup(work)
    try:
        def recorder() -> EvidenceRecorder:
            rec = EvidenceRecorder(ws, "bench-run")
            record_dataset(rec, ws, "support", ledger_seqs=data)
            record_training(rec, ws, job, ledger_seqs=train)
            return rec

        recorders = [recorder() for _ in range(2 * args.rounds)]
        evidence_signer(ws)  # the key exists before the clock starts
        res: dict[str, Any] = {"events": len(data) + len(train)}
        res["write_dir_s"] = _median(lambda n: recorders[n].write(work / f"b{n}"), args.rounds)
        res["write_tar_s"] = _median(lambda n: recorders[args.rounds + n].write(
            work / f"b{n}.tar", tar=True), args.rounds)
        pins = Pins(evidence=[evidence_signer(ws).public_key], ledger=[ws.ledger_verifier()])
        reports = []
        res["verify_dir_s"] = _median(lambda n: reports.append(verify_bundle(
            work / f"b{n}", pins)), args.rounds)
        res["verify_tar_s"] = _median(lambda n: reports.append(verify_bundle(
            work / f"b{n}.tar", pins)), args.rounds)
        assert all(r.ok for r in reports)
        res["baseline_sha256_s"] = _median(lambda n: _hash_files(work / f"b{n}"), args.rounds)
        res["bundle_files"] = sum(1 for p in (work / "b0").rglob("*") if p.is_file())
        res["bundle_bytes"] = sum(p.stat().st_size for p in (work / "b0").rglob("*")
                                  if p.is_file())
        res["tar_bytes"] = (work / "b0.tar").stat().st_size
        for kind in ("write_dir", "write_tar", "verify_dir", "verify_tar"):
            res[f"ratio_{kind}"] = res[f"{kind}_s"] / res["baseline_sha256_s"]
        return res
    finally:
        ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sealtune-bench-bundle-", dir=args.workdir))
    try:
        res = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res.update({"rounds": args.rounds, "python": platform.python_version(),
                "machine": platform.machine(), "when": datetime.now(UTC).isoformat()})
    print(f"two-step run: {res['events']} ledger events, {res['bundle_files']} files, "
          f"{res['bundle_bytes']} bytes ({res['tar_bytes']} as a tar)")
    print(f"{'median of ' + str(args.rounds):<16}{'seconds':>12}{'x sha256':>12}")
    for kind in ("write_dir", "write_tar", "verify_dir", "verify_tar"):
        print(f"{kind:<16}{res[kind + '_s']:>12.4f}{res['ratio_' + kind]:>12.0f}")
    print(f"{'sha256 (read)':<16}{res['baseline_sha256_s']:>12.5f}{1:>12}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
