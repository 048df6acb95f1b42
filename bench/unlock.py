"""What ``sealtune unlock`` saves: one command's wall time with and without the cached key.

Usage::

    .venv/bin/python bench/unlock.py [--repeats 5] [--command "keys list"]

Creates a workspace with the default (production) Argon2id parameters
(64 MiB, t=3, p=4), then runs the command (default ``sealtune keys list``)
as a user does, one subprocess each, ``--repeats`` times in each state,
interleaved so both see the same background noise:

* passphrase: ``SEALTUNE_PASSPHRASE`` set, no cached key (Argon2id each time);
* unlocked: after ``sealtune unlock --for 10m``, no passphrase in the environment;

and, in-process, opening the keyring file alone both ways.

Prints the medians (wall and CPU, the steadier on a shared machine) and
their ratio, plus the cost of Python start-up and imports alone
(``sealtune --version``) as the floor, and writes JSON to
``bench/results/unlock.json``. The workspace is locked and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sealtune.keys.keyfile import KdfParams, KeyFile
from sealtune.keys.unlock import cached_key
from sealtune.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
SEALTUNE = [sys.executable, "-m", "sealtune"]


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    res = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                         stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:])} failed: {res.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def _opening(root: Path, passphrase: str, repeats: int) -> dict[str, float]:
    """In-process medians: opening the keyring with the passphrase, and from the cache."""
    workspace_id = Workspace.open(root).config.workspace_id
    path = root / "keyring.sealed"
    lookup = cached_key(workspace_id)
    slow, fast = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        KeyFile.open(path, passphrase)
        slow.append(time.perf_counter() - began)
        began = time.perf_counter()
        if KeyFile.open_with_key(path, lookup) is None:
            raise SystemExit("the cached key did not open the keyring")
        fast.append(time.perf_counter() - began)
    return {"passphrase": statistics.median(slow), "cached": statistics.median(fast)}


def bench(command: list[str], repeats: int) -> dict[str, Any]:
    passphrase = "bench-" + secrets.token_hex(12)
    with tempfile.TemporaryDirectory(prefix="sealtune-unlock-") as tmp:
        root = Path(tmp) / "ws"
        Workspace.init(root, passphrase=passphrase, kdf=KdfParams()).close()
        base = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
        base["SEALTUNE_HOME"] = str(root)
        with_pp = {**base, "SEALTUNE_PASSPHRASE": passphrase}
        _timed([*SEALTUNE, "unlock", "--for", "10m"], with_pp)
        runs: dict[str, list[tuple[float, float]]] = {"passphrase": [], "unlocked": [],
                                                      "floor": []}
        try:
            for _ in range(repeats):
                _timed([*SEALTUNE, "lock"], base)
                runs["passphrase"].append(_timed([*SEALTUNE, *command], with_pp))
                _timed([*SEALTUNE, "unlock", "--for", "10m"], with_pp)
                runs["unlocked"].append(_timed([*SEALTUNE, *command], base))
                runs["floor"].append(_timed([*SEALTUNE, "--version"], base))
            opening = _opening(root, passphrase, repeats)
        finally:
            _timed([*SEALTUNE, "lock"], base)
    med = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
    return {"command": " ".join(command), "repeats": repeats,
            "kdf": {"memory_kib": KdfParams().memory_kib, "iterations": KdfParams().iterations,
                    "lanes": KdfParams().lanes},
            "median_s": med, "median_cpu_s": cpu, "runs_s": runs,
            "speedup": med["passphrase"] / med["unlocked"],
            "saved_s": med["passphrase"] - med["unlocked"],
            "cpu_saved_s": cpu["passphrase"] - cpu["unlocked"], "open_keyring_s": opening,
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "machine": platform.machine()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--command", default="keys list")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "unlock.json")
    args = parser.parse_args()
    result = bench(args.command.split(), args.repeats)
    med, cpu = result["median_s"], result["median_cpu_s"]
    print(f"sealtune {result['command']}, median of {args.repeats} (seconds, wall / CPU):")
    for name, label in (("passphrase", "with the passphrase (Argon2id)"),
                        ("unlocked", "unlocked (cached key)         "),
                        ("floor", "floor (sealtune --version)    ")):
        print(f"  {label} {med[name]:.3f} / {cpu[name]:.3f}")
    print(f"  speed-up x{result['speedup']:.2f}: {result['saved_s']:.3f} s wall, "
          f"{result['cpu_saved_s']:.3f} s CPU saved per command")
    opening = result["open_keyring_s"]
    print(f"opening the keyring alone (in-process, wall): passphrase "
          f"{opening['passphrase']:.3f}, cached key {opening['cached'] * 1000:.2f} ms, "
          f"x{opening['passphrase'] / opening['cached']:.0f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
