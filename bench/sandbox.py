"""Fixed cost of creating and destroying the training sandbox.

Runs each variant N times and reports medians (ms), side by side:

* ``outside``: ``python -I -c pass`` as a plain subprocess;
* ``bwrap``: the same command inside the sandbox's bubblewrap command line
  (namespaces, mounts, tmpfs) — the raw create + destroy cost;
* ``outside_launcher``: importing the launcher and probe modules, outside;
* ``sandbox``: the full :class:`~sealtune.train.sandbox.Sandbox` round trip —
  start, key handover, launcher hardening, an empty entry, event channel,
  destroy with verification (no process left, namespaces released);
* ``destroy``: the ``destroy()`` part of that round trip alone.

Usage: ``python bench/sandbox.py [--runs 30]``; writes
``bench/results/sandbox.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sealtune.train.sandbox import Sandbox, SandboxSpec, build_argv, probe

RESULTS = Path(__file__).resolve().parent / "results" / "sandbox.json"


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm the page cache
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered), 2),
            "p10_ms": round(ordered[len(ordered) // 10], 2),
            "p90_ms": round(ordered[(len(ordered) * 9) // 10], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    opts = parser.parse_args()
    report = probe()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        spec = SandboxSpec(output_dir=out)
        trivial = [sys.executable, "-I", "-c", "pass"]
        raw = build_argv(spec, trivial, bwrap=spec.resolve_bwrap())
        imports = [sys.executable, "-I", "-B", "-c",
                   "import sealtune.train._sandbox_child, sealtune.train._probe_child"]
        destroys: list[float] = []

        def full() -> None:
            with Sandbox(spec) as box:
                box.start("sealtune.train._probe_child", [], secrets={"dk": os.urandom(32)})
                assert box.wait(timeout=30) == 0
                destroys.append(box.destroy().seconds * 1000)

        results = {
            "outside": summary(timed(lambda: subprocess.run(trivial, check=True), opts.runs)),
            "bwrap": summary(timed(lambda: subprocess.run(raw, check=True), opts.runs)),
            "outside_launcher": summary(timed(lambda: subprocess.run(imports, check=True),
                                              opts.runs)),
            "sandbox": summary(timed(full, opts.runs)),
        }
        results["destroy"] = summary(destroys[1:])
    results["fixed_cost_ms"] = {
        "bwrap_minus_outside": round(results["bwrap"]["median_ms"]
                                     - results["outside"]["median_ms"], 2),
        "sandbox_minus_outside_launcher": round(results["sandbox"]["median_ms"]
                                                - results["outside_launcher"]["median_ms"], 2),
    }
    payload = {"bench": "sandbox", "runs": opts.runs, "bwrap": report.version,
               "python": platform.python_version(), "kernel": platform.release(),
               "cpus": os.cpu_count(), "uid": os.getuid(), "results": results}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
