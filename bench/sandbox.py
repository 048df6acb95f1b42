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
* ``destroy``: the ``destroy()`` part of that round trip alone;
* ``ingest``: ``sealtune data ingest``'s wall time in the data sandbox
  (:func:`sealtune.data.sandboxed.ingest_dataset`: the self-check, start,
  keys over the pipe, the worker, destroy, the checks of the outputs) against
  the same ingest in process (``sandbox=False``), alternated, on the same
  demo-data file (``--ingest-records``, default 2,000), and the ratio of the
  medians (``ingest_ratio``).

Usage: ``python bench/sandbox.py [--runs 30] [--ingest-runs 5] [--only-ingest]``;
writes ``bench/results/sandbox.json``.
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

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


def ingest_runs(runs: int, records: int) -> dict[str, object]:
    """Sandboxed and in-process ingests of one file, alternated; medians and their ratio."""
    import importlib.util
    import warnings

    from sealtune.data.sandboxed import ingest_dataset
    from sealtune.keys.keyfile import KdfParams
    from sealtune.workspace import Workspace

    spec = importlib.util.spec_from_file_location("bench_ingest",
                                                  Path(__file__).with_name("ingest.py"))
    assert spec is not None and spec.loader is not None
    bench_ingest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_ingest)
    samples: dict[str, list[float]] = {"sandboxed": [], "in_process": []}
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.jsonl"
        bench_ingest.make_corpus(raw, records)
        ws = Workspace.init(Path(tmp) / "ws", passphrase="bench-only",
                            kdf=KdfParams.unsafe_fast())
        try:
            for i in range(runs + 1):  # the first pair warms the caches and is dropped
                for mode in ("sandboxed", "in_process"):
                    began = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)
                        ingest_dataset(ws, raw, name=f"{mode.replace('_', '-')}-{i}",
                                       sandbox=mode == "sandboxed")
                    if i:
                        samples[mode].append((time.perf_counter() - began) * 1000)
        finally:
            ws.close()
    out: dict[str, object] = {k: summary(v) for k, v in samples.items()}
    out["records"] = records
    out["ingest_ratio"] = round(statistics.median(samples["sandboxed"])
                                / statistics.median(samples["in_process"]), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--ingest-runs", type=int, default=5)
    parser.add_argument("--ingest-records", type=int, default=2000)
    parser.add_argument("--only-ingest", action="store_true",
                        help="measure the ingest ratio only (bench/results/sandbox-ingest.json)")
    opts = parser.parse_args()
    report = probe()
    if opts.only_ingest:
        _write(RESULTS.with_name("sandbox-ingest.json"), opts, report.version,
               {"ingest": ingest_runs(opts.ingest_runs, opts.ingest_records)})
        return
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

        results: dict[str, Any] = {
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
    results["ingest"] = ingest_runs(opts.ingest_runs, opts.ingest_records)
    _write(RESULTS, opts, report.version, results)


def _write(path: Path, opts: argparse.Namespace, bwrap: str, results: Mapping[str, object]
           ) -> None:
    payload = {"bench": "sandbox", "runs": opts.runs, "bwrap": bwrap,
               "python": platform.python_version(), "kernel": platform.release(),
               "cpus": os.cpu_count(), "uid": os.getuid(), "results": results}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
