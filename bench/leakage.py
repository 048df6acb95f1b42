"""The leakage table: canary exposure gap, loss-attack AUC and held-out perplexity.

For each seed: a fresh tiny model (``make_tiny``) pretrained without DP on
public generic text (its tokenizer corpus; DP fine-tuning assumes a
pretrained base: from random weights at ε = 1 the tiny model learns almost
nothing, held-out perplexity ~900 against ~3000 untrained), planted canaries
(six-digit PINs, each included with probability 1/2 and repeated 4 times)
among synthetic clean chats, then full fine-tuning with the same settings
under each variant:

* ``no_dp``: plain AdamW training (``sealtune.train.trainer.train``);
* ``eps8``, ``eps3``, ``eps1``: DP-SGD through the same trainer with that ε
  (example-level; a canary repeated k times is protected at about kε);
* ``clip_only``: the negative control, per-example clipping with zero noise
  (Opacus ``make_private(noise_multiplier=0)``; the trainer refuses zero
  noise, rightly, so this loop lives here): it must leak like ``no_dp``.

Reported per variant: the median over seeds (and the min/max) of the mean
exposure gap (included − left-out canaries, bits, out of a cap of
log2(N + 1) for N candidates), the loss-attack AUC and the perplexity on held-out
clean chats; plus the base model's (before private fine-tuning). Leakage numbers are
measurements of these attacks on these canaries (a lower bound on leakage),
not privacy guarantees.

Usage: ``python bench/leakage.py [--seeds 0 1 2] [--variants ...]``; writes
``bench/results/leakage.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

RESULTS = Path(__file__).resolve().parent / "results" / "leakage.json"
VARIANTS = ("no_dp", "eps8", "eps3", "eps1", "clip_only")
EPSILON = {"eps8": 8.0, "eps3": 3.0, "eps1": 1.0}
SETUP = {"canaries": 24, "repeats": 4, "clean": 128, "heldout": 48, "candidates": 2000,
         "epochs": 20, "batch_size": 32, "lr": 1e-3, "max_grad_norm": 1.0, "max_length": 64,
         "public": 256, "public_epochs": 10}


def dataset(seed: int, setup: dict[str, Any]) -> tuple[list[Any], list[Any], list[Any]]:
    """(canaries, training records, held-out clean records) for one seed."""
    import random

    from sealtune.assess.canaries import canary_records, filler_records, plant_canaries

    canaries = plant_canaries(setup["canaries"], seed=seed, repeats=setup["repeats"])
    train = filler_records(setup["clean"], seed=seed) + canary_records(canaries)
    random.Random(seed).shuffle(train)
    heldout = filler_records(setup["heldout"], seed=10_000 + seed)
    return canaries, train, heldout


def train_config(variant: str, seed: int, setup: dict[str, Any]) -> Any:
    from sealtune.train.config import TrainConfig
    from sealtune.train.dp import DPConfig

    dp = (DPConfig(epsilon=EPSILON[variant], max_grad_norm=setup["max_grad_norm"])
          if variant in EPSILON else None)
    return TrainConfig(method="full", epochs=setup["epochs"], batch_size=setup["batch_size"],
                       lr=setup["lr"], scheduler="constant", max_length=setup["max_length"],
                       max_grad_norm=setup["max_grad_norm"], seed=seed, dp=dp)


def clip_only(base: Path, records: list[Any], config: Any) -> Any:
    """The negative control: DP-SGD's clipping and Poisson sampling, zero noise."""
    import torch
    from opacus import PrivacyEngine  # type: ignore[import-untyped]

    from sealtune.train.data import Collator, ExampleDataset, encode_records
    from sealtune.train.dp import quiet_library_warnings
    from sealtune.train.loading import load_base
    from sealtune.train.trainer import example_losses

    torch.manual_seed(config.seed)
    model, tokenizer, _ = load_base(base)
    model.train()
    data = ExampleDataset(encode_records(records, tokenizer, max_length=config.max_length))
    loader: Any = torch.utils.data.DataLoader(
        cast(Any, data), batch_size=config.batch_size,
        collate_fn=Collator(int(tokenizer.pad_token_id)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    with quiet_library_warnings():
        engine = PrivacyEngine(accountant="prv")
        model, optimizer, loader = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=0.0,
            max_grad_norm=config.max_grad_norm,
            poisson_sampling=True, grad_sample_mode="hooks")
        loader.batch_sampler.generator = torch.Generator().manual_seed(config.seed + 7919)
        for _ in range(config.epochs):
            for ids, mask, labels in loader:
                optimizer.zero_grad()
                if ids.shape[0] == 0:
                    continue
                example_losses(model, ids, mask, labels).mean().backward()
                optimizer.step()
    model = model._module if hasattr(model, "_module") else model
    model.eval()
    return model, tokenizer


def run_variant(variant: str, seed: int, setup: dict[str, Any], work: Path) -> dict[str, Any]:
    """Train one variant on one seed's data and measure it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sealtune.assess.exposure import assess_canaries, perplexity
    from sealtune.train.trainer import train

    base = public_base(seed, setup, work)
    canaries, records, heldout = dataset(seed, setup)
    config = train_config(variant, seed, setup)
    began = time.perf_counter()
    out: dict[str, Any] = {"variant": variant, "seed": seed}
    if variant == "clip_only":
        model, tokenizer = clip_only(base, records, config)
    else:
        result = train(records, base_dir=base, config=config, out_dir=work / f"{variant}-{seed}")
        model = AutoModelForCausalLM.from_pretrained(result.out_dir)
        tokenizer = AutoTokenizer.from_pretrained(result.out_dir)
        if result.privacy is not None:
            out["epsilon_spent"] = result.privacy.epsilon_spent
            out["noise_multiplier"] = result.privacy.noise_multiplier
            out["steps"] = result.steps
    out["train_seconds"] = round(time.perf_counter() - began, 1)
    report = assess_canaries(model, tokenizer, canaries, n_candidates=setup["candidates"],
                             seed=seed)
    out.update(exposure_gap=report.exposure_gap, exposure_included=report.exposure_included,
               exposure_excluded=report.exposure_excluded, auc=report.auc,
               perplexity=perplexity(model, tokenizer, heldout),
               included=sum(c.included for c in canaries), canaries=len(canaries))
    return out


def public_records(n: int) -> list[Any]:
    """Generic text from the tiny model's own tokenizer corpus, as chats (the "public" data)."""
    from sealtune.data.records import Message, Record
    from sealtune.train.tiny import tiny_corpus

    return [Record(id=f"public-{i}", line=0, messages=[
        Message("user", "请说一句话。Say something."), Message("assistant", line)])
        for i, line in enumerate(tiny_corpus(lines=n))]


def public_base(seed: int, setup: dict[str, Any], work: Path) -> Path:
    """The base model: the tiny model pretrained (no DP) on public generic text."""
    from sealtune.train.config import TrainConfig
    from sealtune.train.tiny import make_tiny
    from sealtune.train.trainer import train

    raw, base = work / f"tiny-{seed}", work / f"base-{seed}"
    if not raw.exists():
        make_tiny(raw, seed=seed)
    if setup["public"] == 0:
        return raw
    if not base.exists():
        train(public_records(setup["public"]), base_dir=raw, out_dir=base,
              config=TrainConfig(method="full", epochs=setup["public_epochs"], batch_size=32,
                                 lr=3e-3, max_length=96, seed=seed))
    return base


def base_perplexity(seed: int, setup: dict[str, Any], work: Path) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sealtune.assess.exposure import perplexity

    base = public_base(seed, setup, work)
    _, _, heldout = dataset(seed, setup)
    return perplexity(AutoModelForCausalLM.from_pretrained(base),
                      AutoTokenizer.from_pretrained(base), heldout)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        table[variant] = {key: {"median": statistics.median(r[key] for r in mine),
                                "min": min(r[key] for r in mine),
                                "max": max(r[key] for r in mine)}
                          for key in ("exposure_gap", "auc", "perplexity")}
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override a setup value (exploration)")
    args = parser.parse_args(argv)
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(args.threads)
    setup = dict(SETUP)
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in setup:
            parser.error(f"unknown setup key {key}")
        setup[key] = type(SETUP[key])(value)
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sealtune-leakage-") as tmp:
        work = Path(tmp)
        base_ppl = {s: base_perplexity(s, setup, work) for s in args.seeds}
        for seed in args.seeds:
            for variant in args.variants:
                row = run_variant(variant, seed, setup, work)
                rows.append(row)
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                  for k, v in row.items()}), file=sys.stderr, flush=True)
    doc: dict[str, Any] = {
        "setup": {**setup, "method": "full", "model": "make_tiny pretrained on public text",
                  "threads": args.threads,
                  "exposure_cap_bits": math.log2(setup["candidates"] + 1)},
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "base_perplexity": {str(s): p for s, p in base_ppl.items()},
        "table": summarise(rows), "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    for variant, cols in doc["table"].items():
        print(f"{variant:10s} gap {cols['exposure_gap']['median']:6.2f} bits  "
              f"AUC {cols['auc']['median']:.2f}  ppl {cols['perplexity']['median']:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
