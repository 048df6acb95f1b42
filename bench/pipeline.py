"""The example pipeline's wall time, and the unchanged rerun's, as a user runs them.

``sealtune pipeline init`` writes the example once; then, for each of N
rounds, a fresh workspace is created (the real keyring KDF, as ``sealtune
init`` makes it) and timed as subprocesses:

* ``run``: ``sealtune run pipeline.yaml`` from scratch (data step: 950 sample
  conversations; train step: 5 DP steps of the tiny model in the sandbox);
* ``rerun``: the same command again, nothing changed: every step cached
  after its outputs are checked against their recorded digests;
* ``startup``: ``sealtune --help``, the CLI's fixed start-up cost (baseline
  for what a cached rerun cannot go below).

Medians over the rounds; ``rerun_over_run`` is the rerun's share of a full
run. (The evidence bundle's verify time joins when ``--bundle`` lands.)

Usage: ``python bench/pipeline.py [--rounds 3]``; writes
``bench/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
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
        for i in range(args.rounds):
            home = root / f"ws{i}"
            Workspace.init(home, passphrase=env["SEALTUNE_PASSPHRASE"]).close()
            round_env = {**env, "SEALTUNE_HOME": str(home)}
            runs.append(_timed(["run", file], round_env))
            reruns.append(_timed(["run", file], round_env))
            startups.append(_timed(["--help"], round_env))
            print(f"round {i + 1}: run {runs[-1]:.2f} s, rerun {reruns[-1]:.2f} s, "
                  f"startup {startups[-1]:.2f} s", flush=True)
    results = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "pipeline_init_s": round(init_s, 3),
        "run": _summary(runs), "rerun": _summary(reruns), "startup": _summary(startups),
        "rerun_over_run": round(statistics.median(reruns) / statistics.median(runs), 4),
        "rerun_over_startup": round(statistics.median(reruns) / statistics.median(startups), 2),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
