"""What the held-out evaluation costs: training with ``val_size`` against the same training alone.

Both variants train on exactly the same records in the same order with the
same settings (the baseline trains on the training part that
:func:`sealtune.train.split.split_records` leaves, with no split), so the
difference is the evaluation at every epoch's end: the split, tokenizing the
held-out records, and one no-grad forward pass over them per epoch. Runs are
in-process, interleaved over ``--rounds``; the figures are medians of process
CPU time (robust to other load on a shared host) and wall time, and the ratio
with / without.

Usage: ``python bench/train_eval.py [--records 64] [--val 16] [--epochs 3] [--rounds 5]``;
writes ``bench/results/train_eval.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "train_eval.json"


def _records(n: int) -> list[object]:
    from sealtune.data.records import Message, Record

    replies = ("Your order ships tomorrow.", "请在设置页面点击修改密码。",
               "I have opened a refund request for you.")
    return [Record(id=str(i), line=i + 1, messages=[
        Message("user", f"question {i}"), Message("assistant", replies[i % 3])])
        for i in range(n)]


def _run(records: list[object], base: Path, out: Path, **settings: object) -> tuple[float, float]:
    from sealtune.train.config import TrainConfig
    from sealtune.train.trainer import train

    config = TrainConfig.from_dict({"lr": 0.01, "batch_size": 4, "max_length": 64,
                                    "seed": 0, **settings})
    cpu, wall = time.process_time(), time.perf_counter()
    train(records, base_dir=base, config=config, out_dir=out)  # type: ignore[arg-type]
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    import torch

    from sealtune.train.split import split_records
    from sealtune.train.tiny import make_tiny

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--val", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-train-eval-"))
    base = make_tiny(work / "tiny", seed=0)
    records = _records(args.records)
    train_part, _ = split_records(records, val_size=args.val, seed=0)  # type: ignore[arg-type]
    times: dict[str, list[tuple[float, float]]] = {"with_eval": [], "without": []}
    for r in range(args.rounds):
        times["with_eval"].append(_run(records, base, work / f"w{r}", epochs=args.epochs,
                                       val_size=args.val))
        times["without"].append(_run(train_part, base, work / f"o{r}", epochs=args.epochs))
    med = {k: {"cpu_s": statistics.median(c for c, _ in v),
               "wall_s": statistics.median(w for _, w in v)} for k, v in times.items()}
    report = {"python": sys.version.split()[0], "machine": platform.machine(),
              "torch_threads": 1, "records": args.records, "held_out": args.val,
              "epochs": args.epochs, "rounds": args.rounds, "median": med,
              "ratio_cpu": med["with_eval"]["cpu_s"] / med["without"]["cpu_s"],
              "ratio_wall": med["with_eval"]["wall_s"] / med["without"]["wall_s"]}
    from sealtune.outputs import write_atomic

    RESULTS.parent.mkdir(exist_ok=True)
    write_atomic(RESULTS, (json.dumps(report, indent=2) + "\n").encode())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
