"""The release gate's targets, measured: exposure and DP-audit verdicts over seeds, and wall time.

Part 1 (``--seeds``), the setting of ``bench/leakage.py`` (a tiny model
pretrained on public text, then fully fine-tuned on 128 synthetic chats and
24 canaries, six-digit PINs each included with probability 1/2 and
repeated 4 times), judged by the gate's own probes (``canary_exposure``,
``membership``) with the default policy, for three regimes:

* ``no_dp``: target, the gate fails on exposure on every seed;
* ``eps1``: DP-SGD at ε = 1 (the trainer): target, passes exposure on at
  least 19 of 20 seeds, and the one-run lower bound on ε never exceeds 1;
* ``clip_only``: per-example clipping and Poisson sampling, no noise (the
  negative control; the trainer refuses zero noise, so the loop is
  ``bench/leakage.py``'s): target, fails exposure. It is also audited as if
  it claimed ε = 0.25 per example (a canary repeated 4 times is then held to
  ε = 1): the one-run bound should refute that claim (a DP bug caught).

Part 2 (``--gate``): the whole gate on the tiny model through the CLI, the
way a user runs it: a workspace, a sealed dataset, a sandboxed training job
with canaries and a validation split, then ``sealtune assess MODEL`` (every
probe, sandboxed) with ``--threads 2``; target: at most 5 minutes on 2
cores. The baseline measured in the same run is the training job's wall
time (the ratio is reported).

Usage: ``python bench/assess.py [--seeds 0 ... 19] [--gate]``; results go to
``bench/results/assess.json`` (rewritten after every run, so a long run
that is stopped keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import leakage  # the shared setting of the leakage table

RESULTS = Path(__file__).resolve().parent / "results" / "assess.json"
VARIANTS = ("no_dp", "eps1", "clip_only")
BUG_CLAIM = 0.25  # per example; 4 repeats: a canary is held to 1.0


def judge(model: Any, tokenizer: Any, base: Path, canaries: list[Any], claim: Any,
          seed: int) -> dict[str, Any]:
    """The gate's canary_exposure and membership probes, default policy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sealtune.assess.policy import default_policy_text, parse_policy
    from sealtune.assess.probes import PROBES, ProbeContext

    policy = parse_policy(default_policy_text())
    ctx = ProbeContext(model=model, tokenizer=tokenizer,
                       base_model=AutoModelForCausalLM.from_pretrained(base),
                       base_tokenizer=AutoTokenizer.from_pretrained(base), canaries=canaries,
                       dp=claim, seed=seed, max_length=leakage.SETUP["max_length"])
    out = {}
    for name in ("canary_exposure", "membership"):
        settings = policy.probes[name].settings
        out[name] = PROBES[name].judge(PROBES[name].measure(ctx, settings), settings)
    return out


def run(variant: str, seed: int, work: Path) -> dict[str, Any]:
    """Train one regime on one seed and judge it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sealtune.assess.probes import DpClaim
    from sealtune.train.trainer import train

    setup = leakage.SETUP
    base = leakage.public_base(seed, setup, work)
    canaries, records, _ = leakage.dataset(seed, setup)
    config = leakage.train_config("eps1" if variant == "eps1" else "no_dp", seed, setup)
    began = time.perf_counter()
    claim = None
    if variant == "clip_only":
        model, tokenizer = leakage.clip_only(base, records, config)
        claim = DpClaim(BUG_CLAIM, 1e-5)
    else:
        result = train(records, base_dir=base, config=config, out_dir=work / f"{variant}-{seed}")
        model = AutoModelForCausalLM.from_pretrained(result.out_dir)
        tokenizer = AutoTokenizer.from_pretrained(result.out_dir)
        if result.privacy is not None:
            claim = DpClaim(result.privacy.epsilon_spent, result.privacy.delta)
    trained = time.perf_counter() - began
    results = judge(model, tokenizer, base, canaries, claim, seed)
    exposure, membership = results["canary_exposure"], results["membership"]
    return {"variant": variant, "seed": seed, "train_seconds": round(trained, 1),
            "assess_seconds": round(time.perf_counter() - began - trained, 1),
            "exposure_verdict": exposure.verdict, "exposure_gap": exposure.metrics["exposure_gap"],
            "p_value": exposure.metrics["p_value"], "membership_verdict": membership.verdict,
            "membership_reason": membership.reason,
            "auc_loss_ref": membership.metrics.get("canaries_loss_ref_auc"),
            "epsilon_lower_bound": membership.metrics.get("epsilon_lower_bound"),
            "epsilon_claimed": membership.metrics.get("epsilon_claimed"),
            "dp_bug_caught": "dp bug" in membership.reason}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The targets: counts of verdicts per regime, the largest bound under DP."""
    out: dict[str, Any] = {}
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant]
        if not mine:
            continue
        out[variant] = {
            "seeds": len(mine),
            "exposure_failed": sum(r["exposure_verdict"] == "fail" for r in mine),
            "exposure_passed": sum(r["exposure_verdict"] == "pass" for r in mine),
            "membership_failed": sum(r["membership_verdict"] == "fail" for r in mine),
            "max_epsilon_lower_bound": max(r["epsilon_lower_bound"] or 0.0 for r in mine),
            "dp_bug_caught": sum(r["dp_bug_caught"] for r in mine)}
    targets = {}
    if "no_dp" in out:
        targets["no_dp fails exposure on every seed"] = (
            out["no_dp"]["exposure_failed"] == out["no_dp"]["seeds"])
    if "eps1" in out:
        e = out["eps1"]
        targets["eps1 passes exposure on >= 95% of seeds"] = e["exposure_passed"] >= 0.95 * e[
            "seeds"]
        targets["eps1 lower bound never exceeds 1"] = e["max_epsilon_lower_bound"] <= 1.0
    if "clip_only" in out:
        c = out["clip_only"]
        targets["clip_only fails exposure on every seed"] = c["exposure_failed"] == c["seeds"]
    out["targets"] = targets
    return out


def gate_timing(threads: int) -> dict[str, Any]:
    """Part 2: the whole CLI gate on a workspace model (see the module docstring)."""
    from sealtune.assess.canaries import filler_records
    from sealtune.data.records import Record
    from sealtune.keys.keyfile import KdfParams
    from sealtune.train.config import TrainConfig
    from sealtune.train.jobs import run_job
    from sealtune.train.tiny import make_tiny
    from sealtune.workspace import Workspace

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
    from test_assess_sandbox import seal_dataset

    tmp = Path(tempfile.mkdtemp(prefix="bench-assess-"))
    passphrase = "bench-" + secrets.token_hex(8)
    ws = Workspace.init(tmp / "ws", passphrase=passphrase, kdf=KdfParams.unsafe_fast(),
                        default_key="k1")
    records = [Record(id=r.id, line=i + 1, messages=r.messages)
               for i, r in enumerate(filler_records(160, seed=0))]
    seal_dataset(ws, "support", records)
    began = time.perf_counter()
    run_job(ws, dataset="support", base=make_tiny(tmp / "tiny"), out_name="m1",
            threads=threads, config=TrainConfig.from_dict({
                "method": "full", "epochs": 20, "batch_size": 16, "lr": 0.003,
                "scheduler": "constant", "max_length": 64, "val_size": 32,
                "canaries": 24, "canary_repeats": 4}))
    train_seconds = time.perf_counter() - began
    ws.close()
    env = {**os.environ, "SEALTUNE_HOME": str(tmp / "ws"), "SEALTUNE_PASSPHRASE": passphrase}
    subprocess.run([sys.executable, "-m", "sealtune", "assess", "policy", "init",
                    str(tmp / "gate.yaml")], env=env, check=True, capture_output=True)
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sealtune", "assess", "m1", "--policy",
                           str(tmp / "gate.yaml"), "--out", str(tmp / "report"), "--threads",
                           str(threads)], env=env, capture_output=True, text=True, check=False)
    assess_seconds = time.perf_counter() - began
    report = json.loads((tmp / "report" / "report.json").read_text())
    return {"threads": threads, "train_seconds": round(train_seconds, 1),
            "assess_seconds": round(assess_seconds, 1),
            "assess_over_train": round(assess_seconds / train_seconds, 2),
            "exit_status": done.returncode, "verdict": report["verdict"],
            "probes": {p["name"]: p["verdict"] for p in report["probes"]},
            "target_at_most_300s": assess_seconds <= 300}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=list(range(20)))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--gate", action="store_true", help="also time the CLI gate")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    doc: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                       "torch": torch.__version__},
                           "setup": leakage.SETUP, "runs": []}
    args.out.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-assess-") as tmp:
        for seed in args.seeds:
            for variant in args.variants:
                row = run(variant, seed, Path(tmp))
                print(json.dumps(row), flush=True)
                doc["runs"].append(row)
                doc["summary"] = summarise(doc["runs"])
                args.out.write_text(json.dumps(doc, indent=2) + "\n")
    if args.gate:
        doc["gate"] = gate_timing(2)
        print(json.dumps(doc["gate"]), flush=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc.get("summary", {}), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
