"""The example pipeline's wall time, and the unchanged rerun's, as a user runs them.

``sealtune pipeline init`` writes the example once; then, for each of N
rounds, a fresh workspace is created (the real keyring KDF, as ``sealtune
init`` makes it) and timed as subprocesses:

* ``run``: ``sealtune run pipeline.yaml`` from scratch (data step: 950 sample
  conversations; train step: 5 DP steps of the tiny model in the sandbox);
* ``rerun``: the same command again, nothing changed: every step cached
  after its outputs are checked against their recorded digests;
* ``startup``: ``sealtune --help``, the CLI's fixed start-up cost (baseline
  for what a cached rerun cannot go below);
* ``bundle_write``: :func:`sealtune.pipeline.write_run_bundle` of that
  workspace's (cached) run, in process, timed alone: sealing the ledger,
  proving every event of the run (and of the computing run) against the
  global checkpoint in one pass, signing the statements and the manifest,
  writing the tar atomically (what ``--bundle`` adds to a run);
* ``bundle_verify``: :func:`sealtune.evidence.verify_bundle` of that tar with
  the pin file, in process, every check; ``bundle_verify_cli``: ``sealtune
  bundle verify OUT --key pins.json`` as a subprocess (start-up included);
* ``sha256``: hashing the tar's bytes with ``hashlib`` (the least any
  integrity check of the same bytes costs), the baseline of ``bundle_verify``.

Medians over the rounds; ``rerun_over_run`` is the rerun's share of a full
run, ``bundle_write_over_run`` the bundle's, ``bundle_verify_over_sha256`` the
verifier's cost in units of hashing the bundle.

Usage: ``python bench/pipeline.py [--rounds 3]``; writes
``bench/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sealtune.evidence import load_pins, verify_bundle, workspace_pins
from sealtune.pipeline import load_pipeline, run_pipeline, write_run_bundle
from sealtune.workspace import Workspace

RESULTS = Path(__file__).resolve().parent / "results" / "pipeline.json"
SEALTUNE = [sys.executable, "-m", "sealtune"]


def _timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    res = subprocess.run([*SEALTUNE, *args], env=env, capture_output=True, text=True,
                         check=False)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"sealtune {' '.join(args)} failed:\n{res.stderr[-2000:]}")
    return elapsed


def _summary(values: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
            "max_s": round(max(values), 3), "n": len(values)}


def _bundle(home: Path, file: str, passphrase: str, out: Path) -> dict[str, float]:
    """Write the cached run's bundle and verify it, in process (see the module docstring)."""
    ws = Workspace.open(home, passphrase=passphrase)
    try:
        result = run_pipeline(load_pipeline(Path(file)), ws)
        start = time.perf_counter()
        write_run_bundle(ws, result, out)
        write_s = time.perf_counter() - start
        pins = out.with_suffix(".pins.json")
        pins.write_bytes(workspace_pins(ws)[0])
    finally:
        ws.close()
    start = time.perf_counter()
    report = verify_bundle(out, load_pins([str(pins)]))
    verify_s = time.perf_counter() - start
    if not report.ok:
        raise SystemExit(f"the bundle did not verify: {report.to_json()}")
    data = out.read_bytes()
    start = time.perf_counter()
    for _ in range(100):
        hashlib.sha256(data).digest()
    return {"write": write_s, "verify": verify_s, "sha256": (time.perf_counter() - start) / 100,
            "bytes": len(data), "checks": len(report.checks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
        env["SEALTUNE_PASSPHRASE"] = "bench-" + secrets.token_hex(8)
        init_s = _timed(["pipeline", "init", str(root / "example")], env)
        file = str(root / "example" / "pipeline.yaml")
        runs, reruns, startups = [], [], []
        writes, verifies, verifies_cli, hashes, sizes = [], [], [], [], []
        for i in range(args.rounds):
            home = root / f"ws{i}"
            Workspace.init(home, passphrase=env["SEALTUNE_PASSPHRASE"]).close()
            round_env = {**env, "SEALTUNE_HOME": str(home)}
            runs.append(_timed(["run", file], round_env))
            reruns.append(_timed(["run", file], round_env))
            startups.append(_timed(["--help"], round_env))
            out = root / f"bundle{i}.tar"
            bundle = _bundle(home, file, env["SEALTUNE_PASSPHRASE"], out)
            writes.append(bundle["write"])
            verifies.append(bundle["verify"])
            hashes.append(bundle["sha256"])
            sizes.append(bundle["bytes"])
            verifies_cli.append(_timed(["bundle", "verify", str(out), "--key",
                                        str(out.with_suffix(".pins.json"))], round_env))
            print(f"round {i + 1}: run {runs[-1]:.2f} s, rerun {reruns[-1]:.2f} s, "
                  f"startup {startups[-1]:.2f} s, bundle write {writes[-1]:.3f} s, "
                  f"verify {verifies[-1]:.3f} s (CLI {verifies_cli[-1]:.2f} s), "
                  f"sha256 {hashes[-1] * 1e6:.0f} µs of {sizes[-1]} bytes", flush=True)
    results = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "pipeline_init_s": round(init_s, 3),
        "run": _summary(runs), "rerun": _summary(reruns), "startup": _summary(startups),
        "rerun_over_run": round(statistics.median(reruns) / statistics.median(runs), 4),
        "rerun_over_startup": round(statistics.median(reruns) / statistics.median(startups), 2),
        "bundle_write": _summary(writes), "bundle_verify": _summary(verifies),
        "bundle_verify_cli": _summary(verifies_cli),
        "sha256": {"median_s": statistics.median(hashes), "n": len(hashes)},
        "bundle_bytes": int(statistics.median(sizes)),
        "bundle_write_over_run": round(statistics.median(writes) / statistics.median(runs), 4),
        "bundle_verify_over_sha256": round(statistics.median(verifies)
                                           / statistics.median(hashes), 1),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
