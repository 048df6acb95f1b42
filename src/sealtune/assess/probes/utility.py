"""Probe ``utility``: held-out perplexity of the model against its base model.

Inside the sandbox, each held-out record (the training job's validation
split: records never trained on) is scored by the model and by the base
model, encoded exactly as training encodes it (chat template,
assistant-only tokens, the job's ``max_length``); rows carry each record's
summed loss under both models and its token count, named by position only.
The judge computes the perplexity ratio ``model / base`` with a bootstrap
interval over records, and fails when the ratio exceeds
``max_perplexity_ratio``.

What a pass shows: on held-out records of the same distribution, the model
predicts the answers at least as well as its base (within the margin), so
the privacy measures are not passing merely because training learned
nothing. What it does not: quality in any other sense (helpfulness,
factuality), or anything about records unlike the held-out ones. Skipped
when the job had no validation split (train with ``--val-size``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sealtune.assess.policy import Run, Setting
from sealtune.assess.probes.base import Measured, ProbeResult, Scalar, Verdict
from sealtune.assess.probes.context import ProbeContext
from sealtune.assess.stats import FloatArray, bootstrap_ci

SETTINGS = {
    "max_perplexity_ratio": Setting(1.0, "fail when held-out perplexity / the base's exceeds "
                                    "this", low=0.0, high=1e6),
    "max_records": Setting(500, "score at most this many held-out records", low=1,
                           high=1_000_000),
}


def record_token(index: int) -> str:
    """How reports name a record: by position, never by an id the data may have chosen."""
    return f"r{index}"


class UtilityProbe:
    """See the module docstring."""

    name = "utility"
    needs = frozenset({"model", "base", "heldout"})
    default_run: Run = "when-available"
    settings = SETTINGS

    def measure(self, ctx: ProbeContext, settings: Mapping[str, Any]) -> Measured:
        from sealtune.assess.exposure import record_token_losses

        records = list(ctx.heldout or ())[: int(settings["max_records"])]
        model, counts = record_token_losses(ctx.model, ctx.tokenizer, records,
                                            max_length=ctx.max_length)
        base, _ = record_token_losses(ctx.base_model, ctx.base_tokenizer or ctx.tokenizer,
                                      records, max_length=ctx.max_length)
        rows: list[dict[str, Scalar]] = [
            {"id": record_token(i), "model_loss": float(m), "base_loss": float(b),
             "tokens": int(c)} for i, (m, b, c) in enumerate(zip(model, base, counts,
                                                                 strict=True)) if c > 0]
        return Measured(self.name, scalars={"records": len(rows)}, rows=tuple(rows))

    def judge(self, measured: Measured, settings: Mapping[str, Any]) -> ProbeResult:
        limit = float(settings["max_perplexity_ratio"])
        model = measured.column("model_loss")
        base = measured.column("base_loss")
        tokens = measured.column("tokens")
        if not tokens or sum(tokens) == 0:
            return ProbeResult(name=self.name, verdict="skipped",
                               reason="no held-out tokens to score")
        ratio = _ratio(np.array(model), np.array(base), np.array(tokens))
        low, high = bootstrap_ci(_ratio, model, base, tokens, seed=0)
        verdict: Verdict = "pass" if ratio <= limit else "fail"
        return ProbeResult(
            name=self.name, verdict=verdict,
            reason=("held-out perplexity within the limit of the base model's" if verdict ==
                    "pass" else "held-out perplexity worse than the base model's"),
            metrics={"records": len(tokens), "tokens": int(sum(tokens)),
                     "perplexity": math.exp(sum(model) / sum(tokens)),
                     "base_perplexity": math.exp(sum(base) / sum(tokens)),
                     "perplexity_ratio": ratio},
            intervals={"perplexity_ratio": (low, high)},
            thresholds={"max_perplexity_ratio": limit})


def _ratio(model: FloatArray, base: FloatArray, tokens: FloatArray) -> float:
    total = float(tokens.sum())
    if total == 0:
        return math.nan
    return math.exp((float(model.sum()) - float(base.sum())) / total)
