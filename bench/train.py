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

The ``sandbox`` part runs whole training jobs through
:func:`sealtune.train.jobs.run_job` (non-DP LoRA, same data and config), in
the bubblewrap sandbox and with ``sandbox=False``, each in a fresh child
process, interleaved over ``--rounds``:

* step time: wall time between consecutive progress events as the parent
  receives them (the sandbox's CPU time is not visible from outside), after
  ``--warmup`` steps; the ratio sandboxed / unsandboxed (aim <= 1.05);
* fixed cost of the sandbox for a job: the pre-flight ``probe()``, create
  (``run_job`` called -> data decrypted inside, minus the same span without
  the sandbox: probe, bwrap, launcher, key handover, decryption), teardown
  (outputs sealed -> sandbox destroyed: launcher tmpfs wipe, exit, destroy
  with verification) and the whole-job wall-time difference minus the
  step-time difference.

Usage: ``python bench/train.py [--part all|dp|sandbox] [--steps 80] [--warmup 5]
[--threads 1] [--rounds 3]``; writes (merges into) ``bench/results/train.json``.
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
from datetime import datetime
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
    parser.add_argument("--part", choices=("all", "dp", "sandbox"), default="all")
    parser.add_argument("--child")
    parser.add_argument("--base", type=Path)
    opts = parser.parse_args()
    if opts.child in JOB_MODES:
        print(json.dumps(job_child(opts.child, opts.base, opts.steps, opts.threads)))
        return
    if opts.child:
        print(json.dumps(child(opts.child, opts.base, opts.steps, opts.threads)))
        return
    report = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if opts.part in ("all", "sandbox"):
        report["sandbox"] = sandbox_part(opts)
    if opts.part in ("all", "dp"):
        report.update(dp_part(opts))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def dp_part(opts: argparse.Namespace) -> dict[str, Any]:
    """DP vs non-DP step time and peak memory (in-process training, no sandbox)."""
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
    return report


JOB_MODES = ("job_sandbox", "job_no_sandbox")


def job_child(mode: str, base: Path, steps: int, threads: int) -> dict[str, Any]:
    """Run one whole training job through ``run_job`` in a fresh workspace; time it."""
    import warnings

    from sealtune.data.store import sha256_file
    from sealtune.keys.files import seal_file
    from sealtune.keys.keyfile import KdfParams
    from sealtune.sandbox import SandboxEvent, probe
    from sealtune.train.config import TrainConfig
    from sealtune.train.jobs import run_job
    from sealtune.workspace import Workspace

    probe_s = None
    if mode == "job_sandbox":
        began = time.perf_counter()
        probe()
        probe_s = time.perf_counter() - began
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws", passphrase="bench", kdf=KdfParams.unsafe_fast())
        data = ws.root / "datasets" / "bench"
        data.mkdir(parents=True)
        plain = data / "data.jsonl"
        plain.write_text("".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n"
                                 for r in _records(64)), encoding="utf-8")
        seal_file(plain, data / "data.jsonl.sealed", keys=ws.keys, key_names=["platform"])
        plain.unlink()
        digest, size = sha256_file(data / "data.jsonl.sealed")
        (data / "dataset.json").write_text(json.dumps({
            "format": "sealtune.dataset/v1", "name": "bench",
            "files": {"data": {"name": "data.jsonl.sealed", "sha256": digest, "size": size}}}))
        stamps: list[float] = []

        def on_step(ev: SandboxEvent) -> None:
            stamps.append(time.perf_counter())

        config = TrainConfig(lr=1e-3, epochs=100, max_steps=steps, batch_size=8,
                             physical_batch_size=8, max_length=256, seed=0)
        began = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = run_job(ws, dataset="bench", base=base, config=config, out_name="m",
                             sandbox=mode == "job_sandbox", threads=threads, progress=on_step)
        wall = time.perf_counter() - began
        ws.close()
    at = {e["event"]: datetime.fromisoformat(e["at"]).timestamp() for e in result.timeline}
    first = at["sandbox.data_decrypted"]
    return {"step_s": [b - a for a, b in itertools.pairwise(stamps)], "wall_s": wall,
            "probe_s": probe_s, "steps": result.steps,
            "start_to_decrypted_s": first - (time.time() - (time.perf_counter() - began)),
            "sealed_to_destroyed_s": at["sandbox.destroyed"] - at["sandbox.outputs_sealed"],
            "destroy_s": (result.teardown or {}).get("seconds")}


def sandbox_part(opts: argparse.Namespace) -> dict[str, Any]:
    """Sandboxed vs unsandboxed training jobs: step-time ratio and the fixed cost."""
    from sealtune.train.tiny import make_tiny

    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in JOB_MODES}
    with tempfile.TemporaryDirectory() as tmp:
        base = make_tiny(Path(tmp) / "tiny", seed=0)
        for _ in range(opts.rounds):
            for mode in JOB_MODES:
                runs[mode].append(_spawn(mode, base, opts.steps, opts.threads))
    steps = {m: _summary([s for r in runs[m] for s in r["step_s"][opts.warmup:]])
             for m in JOB_MODES}
    med = {m: {k: statistics.median(r[k] for r in runs[m]) for k in
               ("wall_s", "start_to_decrypted_s", "sealed_to_destroyed_s")} for m in JOB_MODES}
    sb, ns = "job_sandbox", "job_no_sandbox"
    step_gap_s = (steps[sb]["mean_ms"] - steps[ns]["mean_ms"]) / 1000 * opts.steps
    per_round = [round(statistics.median(a["step_s"][opts.warmup:])
                       / statistics.median(b["step_s"][opts.warmup:]), 3)
                 for a, b in zip(runs[sb], runs[ns], strict=True)]
    return {
        "workload": "run_job, LoRA, no DP, 64 records, batch 8, max_length 256, "
                    f"{opts.steps} steps, {opts.threads} thread(s), {opts.rounds} rounds",
        "step_time": steps,
        "sandboxed_over_unsandboxed": {
            "wall_median": round(steps[sb]["median_ms"] / steps[ns]["median_ms"], 3),
            "wall_mean": round(steps[sb]["mean_ms"] / steps[ns]["mean_ms"], 3),
            "per_round_median": per_round, "aim": 1.05},
        "fixed_cost_s": {
            "probe": round(statistics.median(r["probe_s"] for r in runs[sb]), 3),
            "create": round(med[sb]["start_to_decrypted_s"] - med[ns]["start_to_decrypted_s"], 3),
            "teardown": round(med[sb]["sealed_to_destroyed_s"], 3),
            "teardown_without_sandbox": round(med[ns]["sealed_to_destroyed_s"], 3),
            "destroy_call": round(statistics.median(r["destroy_s"] for r in runs[sb]), 4),
            "whole_job": round(med[sb]["wall_s"] - med[ns]["wall_s"] - step_gap_s, 3)},
        "job_wall_s": {m: round(med[m]["wall_s"], 2) for m in JOB_MODES},
    }


if __name__ == "__main__":
    main()
