"""LoRA fine-tuning of the tiny model: DP vs non-DP step time and peak memory.

Each variant runs in a fresh child process (same data, same config except
DP) and reports:

Variants: ``non_dp``; ``dp`` (the default for LoRA: Opacus per-example
gradients via hooks, one backward pass); ``dp_ghost`` (ghost clipping: two
backward passes, per-layer T x T Gram matrices for sequences).

Every variant uses physical batches of at most 8 (``BatchMemoryManager``
splits the occasional larger Poisson batch), so peak memory compares like
with like.

* step time: time between consecutive optimizer steps (forward, backward,
  clipping/noise, optimizer, batch assembly) after ``--warmup`` steps, as
  process CPU time (the headline: robust to other load on a shared host) and
  wall time, pooled over ``--rounds`` interleaved runs of every variant. Under
  DP the expected (Poisson) batch size equals the non-DP batch size, ε is
  computed only at the end (~0.2 s per evaluation, not part of a step), and
  the noise is fixed (no calibration: it does not change the step);
* peak memory: the child's peak RSS (``ru_maxrss``) and that peak minus the
  RSS of a ``baseline`` child that loads the same model and data but does not
  train (the training overhead: activations, gradients, optimizer state,
  Opacus's bookkeeping).

Anchors: DP-LoRA on GPT-2 costs 1.12x non-DP step time (published); ghost
clipping's memory anchor is "equal to non-DP". The sandboxed-vs-unsandboxed
ratio is added by the job runner's benchmark.

Usage: ``python bench/train.py [--steps 80] [--warmup 5] [--threads 1] [--rounds 3]``;
writes ``bench/results/train.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "train.json"
PUBLISHED_DP_LORA_RATIO = 1.12
VARIANTS = ("non_dp", "dp", "dp_ghost")


def _records(n: int) -> list[Any]:
    from sealtune.data.records import Message, Record

    asks = ("我的银行卡被冻结了，请帮我处理。", "When will my order arrive?",
            "请问怎么修改登录密码？", "My card was charged twice, can you help?")
    replies = ("您好，已为您提交申请，预计24小时内处理完毕，请留意短信通知。",
               "Your order ships tomorrow; you will get a tracking number by email.",
               "请在设置页面点击修改密码，并按提示完成验证。",
               "Sorry about that. I have opened a refund request for you.")
    return [Record(id=str(i), line=i + 1, messages=[
        Message("system", "你是客服助手。You are a support assistant."),
        Message("user", f"{asks[i % 4]} (ticket {i})"),
        Message("assistant", replies[i % 4])]) for i in range(n)]


def _config(mode: str, steps: int) -> Any:
    from sealtune.train.trainer import DPConfig, TrainConfig

    modes: dict[str, Any] = {"dp": "auto", "dp_hooks": "hooks", "dp_ghost": "ghost"}
    dp = (DPConfig(epsilon=1e6, noise_multiplier=1.0, epsilon_every=10**9,
                   grad_sample_mode=modes[mode]) if mode in modes else None)
    return TrainConfig(lr=1e-3, epochs=100, max_steps=steps, batch_size=8,
                       physical_batch_size=8, max_length=256, seed=0, dp=dp)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(mode: str, base: Path, steps: int, threads: int) -> dict[str, Any]:
    """Run one variant in this process; return its measurements."""
    import torch

    torch.set_num_threads(threads)
    from sealtune.train.data import encode_records
    from sealtune.train.loading import load_base
    from sealtune.train.trainer import Progress, train

    records = _records(64)
    if mode == "baseline":  # what training adds to: model, tokenizer, data, libraries
        _model, tok, _ = load_base(base)
        encode_records(records, tok, max_length=256)
        return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rss_mb": _rss_mb()}
    stamps: list[tuple[float, float]] = []

    def on_step(p: Progress) -> None:
        stamps.append((time.perf_counter(), time.process_time()))

    with tempfile.TemporaryDirectory() as tmp:
        result = train(records, base_dir=base, config=_config(mode, steps),
                       out_dir=Path(tmp) / "out", progress=on_step)
    return {"step_s": [b[0] - a[0] for a, b in itertools.pairwise(stamps)],
            "step_cpu_s": [b[1] - a[1] for a, b in itertools.pairwise(stamps)],
            "steps": result.steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _spawn(mode: str, base: Path, steps: int, threads: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--base", str(base),
                          "--steps", str(steps), "--threads", str(threads)],
                         capture_output=True, text=True, check=True, env=env)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered) * 1000, 2),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
            "p10_ms": round(ordered[len(ordered) // 10] * 1000, 2),
            "p90_ms": round(ordered[(len(ordered) * 9) // 10] * 1000, 2),
            "n": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--base", type=Path)
    opts = parser.parse_args()
    if opts.child:
        print(json.dumps(child(opts.child, opts.base, opts.steps, opts.threads)))
        return
    from sealtune.train.tiny import make_tiny

    pooled: dict[str, dict[str, list[float]]] = {
        m: {"wall": [], "cpu": []} for m in VARIANTS}
    per_round: list[dict[str, float]] = []
    peaks: dict[str, list[float]] = {m: [] for m in ("baseline", *VARIANTS)}
    with tempfile.TemporaryDirectory() as tmp:
        base = make_tiny(Path(tmp) / "tiny", seed=0)
        peaks["baseline"].append(_spawn("baseline", base, opts.steps, opts.threads)[
            "peak_rss_mb"])
        for _ in range(opts.rounds):  # interleaved, so that load on a shared host hits all
            medians = {}
            for mode in VARIANTS:
                run = _spawn(mode, base, opts.steps, opts.threads)
                pooled[mode]["wall"] += run["step_s"][opts.warmup:]
                pooled[mode]["cpu"] += run["step_cpu_s"][opts.warmup:]
                peaks[mode].append(run["peak_rss_mb"])
                medians[mode] = statistics.median(run["step_cpu_s"][opts.warmup:])
            per_round.append({m: round(medians[m] / medians["non_dp"], 3)
                              for m in ("dp", "dp_ghost")})
    steps = {m: {"wall": _summary(pooled[m]["wall"]), "cpu": _summary(pooled[m]["cpu"])}
             for m in VARIANTS}

    def ratio(mode: str, clock: str, stat: str = "median_ms") -> float:
        return round(steps[mode][clock][stat] / steps["non_dp"][clock][stat], 3)

    base_rss = min(peaks["baseline"])
    memory = {m: {"peak_rss_mb": round(min(peaks[m]), 1),
                  "over_baseline_mb": round(min(peaks[m]) - base_rss, 1)} for m in VARIANTS}
    report = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor()
                    or platform.machine(), "cores": os.cpu_count(), "threads": opts.threads},
        "workload": {"model": "sealtune tiny (Llama-style, 2x64, vocab 3072)",
                     "method": "lora r=8 on q,k,v,o,gate,up,down", "records": 64,
                     "batch_size": 8, "max_length": 256,
                     "dp": "Poisson q=1/8, noise 1.0; dp = the default for LoRA (per-example "
                           "gradients, one backward pass); dp_ghost = ghost clipping",
                     "steps": opts.steps, "warmup": opts.warmup, "rounds": opts.rounds},
        "step_time": steps,
        "dp_over_non_dp": {"cpu_median": ratio("dp", "cpu"), "wall_median": ratio("dp", "wall"),
                           "cpu_mean": ratio("dp", "cpu", "mean_ms")},
        "dp_ghost_over_non_dp": {"cpu_median": ratio("dp_ghost", "cpu"),
                                 "wall_median": ratio("dp_ghost", "wall"),
                                 "cpu_mean": ratio("dp_ghost", "cpu", "mean_ms")},
        "per_round_cpu_median_ratios": per_round,
        "published_anchor_gpt2_lora": PUBLISHED_DP_LORA_RATIO,
        "aim": 1.5,
        "memory": {"baseline_peak_rss_mb": round(base_rss, 1), **memory,
                   "dp_over_non_dp_overhead": round(
                       memory["dp"]["over_baseline_mb"]
                       / max(memory["non_dp"]["over_baseline_mb"], 1e-9), 3)},
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
