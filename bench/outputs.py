"""What unsealing to a stream costs: two passes against one (issue 16).

Usage::

    .venv/bin/python bench/outputs.py [--size-mib 256] [--repeats 3]

``open_file`` to a regular file decrypts once into an atomic temp file; to a
FIFO, a device or ``-`` it authenticates the whole file first (writing
nothing), then decrypts again to the output. This measures, in one run on one
sealed file of ``--size-mib`` MiB (medians of ``--repeats``, interleaved):

* ``unseal_file``: ``open_file`` to a regular file (the baseline);
* ``unseal_fifo``: ``open_file`` to a FIFO drained by a reader thread;
* ``verify``: ``verify_file`` (the first pass alone, writing nothing).

Prints MB/s and each time as a ratio to the baseline (wall clock and CPU),
and writes JSON to ``bench/results/outputs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sealtune.keys.files import open_file, seal_file, verify_file  # noqa: E402
from sealtune.keys.keyfile import KdfParams  # noqa: E402
from sealtune.workspace import Workspace  # noqa: E402

MIB = 1 << 20


def drain(path: Path) -> threading.Thread:
    def run() -> None:
        with path.open("rb", buffering=0) as fh:
            while fh.read(MIB):
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ws = Workspace.init(work / "ws", passphrase="bench-" + os.urandom(8).hex(),
                            kdf=KdfParams.unsafe_fast(), default_key="k")
        plain, sealed = work / "plain.bin", work / "plain.sealed"
        with plain.open("wb") as fh:
            for _ in range(args.size_mib):
                fh.write(os.urandom(MIB))
        seal_file(plain, sealed, keys=ws.keys, key_names=["k"])
        plain.unlink()
        fifo = work / "fifo"
        os.mkfifo(fifo)

        def to_fifo() -> None:
            reader = drain(fifo)
            open_file(sealed, fifo, keys=ws.keys)
            reader.join()

        runs: dict[str, Callable[[], object]] = {
            "unseal_file": lambda: open_file(sealed, work / "out.bin", keys=ws.keys),
            "unseal_fifo": to_fifo,
            "verify": lambda: verify_file(sealed, keys=ws.keys),
        }
        walls: dict[str, list[float]] = {k: [] for k in runs}
        cpus: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                wall, cpu = timed(fn)
                walls[name].append(wall)
                cpus[name].append(cpu)
            (work / "out.bin").unlink()
        ws.close()
    w = {k: statistics.median(v) for k, v in walls.items()}
    c = {k: statistics.median(v) for k, v in cpus.items()}
    result = {
        "size_mib": args.size_mib, "repeats": args.repeats,
        "mb_per_s": {k: size / 1e6 / v for k, v in w.items()},
        "time_ratio_to_unseal_file": {k: v / w["unseal_file"] for k, v in w.items()},
        "cpu_ratio_to_unseal_file": {k: v / c["unseal_file"] for k, v in c.items()},
    }
    print(f"{'':12} {'MB/s':>8} {'time/file':>10} {'cpu/file':>9}")
    for name in runs:
        print(f"{name:12} {result['mb_per_s'][name]:8.0f} "
              f"{result['time_ratio_to_unseal_file'][name]:10.2f} "
              f"{result['cpu_ratio_to_unseal_file'][name]:9.2f}")
    out = ROOT / "bench" / "results" / "outputs.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
