"""Fixed cost of creating and destroying the sandbox (training's, and the data step's).

Runs each variant N times and reports medians (ms), side by side:

* ``outside``: ``python -I -c pass`` as a plain subprocess;
* ``bwrap``: the same command inside the sandbox's bubblewrap command line
  (namespaces, mounts, tmpfs, the seccomp filter) — the raw create + destroy
  cost; ``bwrap_unfiltered``: the same without ``--seccomp``;
* ``syscalls_filtered`` / ``syscalls_unfiltered``: 200,000 ``getppid`` calls
  timed inside each (the filter's cost on an allowed system call; their ratio
  is ``filter_ratio``);
* ``outside_launcher``: importing the launcher and probe modules, outside;
* ``sandbox``: the full :class:`~sealtune.sandbox.process.Sandbox` round trip —
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

from sealtune.sandbox.process import Sandbox, filter_fd
from sealtune.sandbox.selfcheck import probe
from sealtune.sandbox.spec import SandboxSpec, build_argv

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


def run_bwrap(spec: SandboxSpec, command: list[str], *, filtered: bool) -> str:
    """Run ``command`` under the sandbox's bubblewrap argv; return its stdout."""
    fd = filter_fd()
    try:
        argv = build_argv(spec, command, bwrap=spec.resolve_bwrap(), seccomp_fd=fd)
        if not filtered:
            at = argv.index("--seccomp")
            del argv[at:at + 2]
        return subprocess.run(argv, check=True, pass_fds=(fd,), env=spec.environment(),
                              capture_output=True, text=True).stdout
    finally:
        os.close(fd)


def syscall_loop(spec: SandboxSpec, runs: int, *, filtered: bool) -> list[float]:
    """Milliseconds for 200,000 getppid() calls inside the sandbox, ``runs`` times."""
    code = ("import os, time; t = time.perf_counter()\n"
            "for _ in range(200000): os.getppid()\n"
            "print((time.perf_counter() - t) * 1000)")
    return [float(run_bwrap(spec, [sys.executable, "-I", "-c", code], filtered=filtered))
            for _ in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    opts = parser.parse_args()
    report = probe()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        spec = SandboxSpec(output_dir=out)
        trivial = [sys.executable, "-I", "-c", "pass"]
        imports = [sys.executable, "-I", "-B", "-c",
                   "import sealtune.sandbox.launcher, sealtune.sandbox._probe_child"]
        destroys: list[float] = []

        def full() -> None:
            with Sandbox(spec) as box:
                box.start("sealtune.sandbox._probe_child", [], secrets={"dk": os.urandom(32)})
                assert box.wait(timeout=30) == 0
                destroys.append(box.destroy().seconds * 1000)

        results = {
            "outside": summary(timed(lambda: subprocess.run(trivial, check=True), opts.runs)),
            "bwrap": summary(timed(lambda: run_bwrap(spec, trivial, filtered=True), opts.runs)),
            "bwrap_unfiltered": summary(timed(lambda: run_bwrap(spec, trivial, filtered=False),
                                              opts.runs)),
            "syscalls_filtered": summary(syscall_loop(spec, opts.runs, filtered=True)),
            "syscalls_unfiltered": summary(syscall_loop(spec, opts.runs, filtered=False)),
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
    results["filter_ratio"] = {
        "bwrap": round(results["bwrap"]["median_ms"]
                       / results["bwrap_unfiltered"]["median_ms"], 3),
        "syscalls": round(results["syscalls_filtered"]["median_ms"]
                          / results["syscalls_unfiltered"]["median_ms"], 3),
    }
    payload = {"bench": "sandbox", "runs": opts.runs, "bwrap": report.version,
               "python": platform.python_version(), "kernel": platform.release(),
               "cpus": os.cpu_count(), "uid": os.getuid(), "results": results}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
