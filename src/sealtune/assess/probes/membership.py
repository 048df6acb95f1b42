"""Probe ``membership``: can an attacker tell training members from non-members, and is DP kept?

Populations (each member/non-member split is random, which is what makes an
AUC meaningful): the canaries (included vs left out, a fair coin each), and,
when the job had a validation split, training records vs held-out records.
Inside the sandbox every record is scored by the model and by the base model
(:mod:`sealtune.assess.scores`): mean loss and Min-K%++. The judge forms four
attacks, higher meaning "member": ``loss`` (−loss), ``loss_ref`` (base loss −
model loss: calibrated by the base as reference), ``minkpp`` and
``minkpp_ref`` (model − base); for each, the AUC and the TPR at 1% FPR with
bootstrap intervals, and the ROC curves.

The probe **fails** when

* the lower end of an attack's AUC interval exceeds ``max_auc`` (the attack
  is confidently better than that), or
* with at least ``min_nonmembers_for_tpr`` non-members, the lower end of a
  TPR at 1% FPR exceeds ``max_tpr_at_1pct_fpr`` (below that many non-members
  a 1% FPR cannot be measured, and it is reported but not judged), or
* the model claims differential privacy and the one-run lower bound on ε
  (Steinke, Nasr, Jagielski 2023; :func:`sealtune.assess.stats.one_run_epsilon`)
  exceeds the claim: that is not a leak within the promise but a broken
  promise, a DP bug. The audit guesses "in" for the quarter of the canaries
  with the highest ``loss_ref`` score and "out" for the lowest quarter (fixed
  before looking), at confidence ``1 - audit_beta``. A canary included
  ``canary_repeats`` = K times is K examples, so the claim it is held to is
  the group-privacy one, (Kε, K e^((K−1)ε) δ).

What a pass shows: these four attacks do not tell members apart beyond the
thresholds, and the training did not measurably break its DP claim. What it
does not: the lower bound is a lower bound: a value below the claim is what
an attack is expected to find against a correct implementation, not a
proof that the implementation is correct; stronger attacks (many reference
models, LiRA) find more.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sealtune.assess.policy import Run, Setting
from sealtune.assess.probes.base import Measured, ProbeResult, Scalar, Verdict
from sealtune.assess.probes.context import ProbeContext
from sealtune.assess.probes.utility import record_token
from sealtune.assess.stats import (
    FloatArray,
    audit_guesses,
    one_run_epsilon,
    roc_curve,
    tpr_at_fpr,
    two_group_ci,
)

SETTINGS = {
    "max_auc": Setting(0.6, "fail when an attack's AUC interval lies above this",
                       low=0.5, high=1.0),
    "max_tpr_at_1pct_fpr": Setting(0.05, "fail when a TPR at 1% FPR interval lies above "
                                   "this (judged with enough non-members)", low=0.0, high=1.0),
    "min_nonmembers_for_tpr": Setting(100, "non-members needed to judge TPR at 1% FPR",
                                      low=10, high=1_000_000),
    "max_records": Setting(500, "score at most this many training and held-out records each",
                           low=10, high=1_000_000),
    "audit_beta": Setting(0.05, "one minus the confidence of the one-run lower bound on "
                          "epsilon", low=1e-6, high=0.5),
    "minkpp_k": Setting(0.2, "Min-K%++: the fraction of lowest-scoring tokens averaged",
                        low=0.01, high=1.0),
}
ATTACKS: dict[str, Callable[[Mapping[str, FloatArray]], FloatArray]] = {
    "loss": lambda c: -c["loss"],
    "loss_ref": lambda c: c["base_loss"] - c["loss"],
    "minkpp": lambda c: c["minkpp"],
    "minkpp_ref": lambda c: c["minkpp"] - c["base_minkpp"],
}
_COLUMNS = ("loss", "base_loss", "minkpp", "base_minkpp")
_ROC_POINTS = 200


class MembershipProbe:
    """See the module docstring."""

    name = "membership"
    needs = frozenset({"model", "base", "canaries"})
    default_run: Run = "when-available"
    settings = SETTINGS

    def measure(self, ctx: ProbeContext, settings: Mapping[str, Any]) -> Measured:
        canaries = list(ctx.canaries or ())
        rows = _score(ctx, [c.record() for c in canaries], settings,
                      [_row(c.id, "canaries", c.included) for c in canaries])
        if ctx.heldout and ctx.records:
            limit = int(settings["max_records"])
            members, others = list(ctx.records)[:limit], list(ctx.heldout)[:limit]
            rows += _score(ctx, members + others, settings,
                           [_row(record_token(i), "records", True) for i in range(len(members))]
                           + [_row("h" + record_token(i)[1:], "records", False)
                              for i in range(len(others))])
        scalars: dict[str, Scalar] = {"repeats": canaries[0].repeats if canaries else 0}
        if ctx.dp is not None:
            scalars.update(dp_epsilon=ctx.dp.epsilon, dp_delta=ctx.dp.delta)
        return Measured(self.name, scalars=scalars, rows=tuple(rows))

    def judge(self, measured: Measured, settings: Mapping[str, Any]) -> ProbeResult:
        metrics: dict[str, Scalar] = {}
        intervals: dict[str, tuple[float, float]] = {}
        series: dict[str, tuple[float, ...]] = {}
        failures: list[str] = []
        for population in ("canaries", "records"):
            columns = _columns(measured, population)
            if columns is not None:
                failures += _judge_population(population, columns, settings, metrics,
                                              intervals, series)
        if not metrics:
            return ProbeResult(name=self.name, verdict="skipped",
                               reason="not run: needs members and non-members")
        failures += _audit(measured, settings, metrics)
        verdict: Verdict = "fail" if failures else "pass"
        return ProbeResult(
            name=self.name, verdict=verdict,
            reason=("above the limits: " + ", ".join(dict.fromkeys(failures)) if failures else
                    "no attack beats the thresholds and no dp claim is refuted"),
            metrics=metrics, intervals=intervals, series=series,
            thresholds={k: settings[k] for k in SETTINGS if k not in ("max_records",)},
            items=measured.rows)


def _row(ident: str, population: str, member: bool) -> dict[str, Scalar]:
    return {"id": ident, "population": population, "member": member}


def _score(ctx: ProbeContext, records: Sequence[Any], settings: Mapping[str, Any],
           rows: list[dict[str, Scalar]]) -> list[dict[str, Scalar]]:
    from sealtune.assess.scores import record_scores

    k = float(settings["minkpp_k"])
    loss, minkpp = record_scores(ctx.model, ctx.tokenizer, records,
                                 max_length=ctx.max_length, k=k)
    base_loss, base_minkpp = record_scores(ctx.base_model, ctx.base_tokenizer or ctx.tokenizer,
                                           records, max_length=ctx.max_length, k=k)
    out = []
    for row, values in zip(rows, zip(loss, base_loss, minkpp, base_minkpp, strict=True),
                           strict=True):
        if all(math.isfinite(v) for v in values):  # a record truncated to no answer: unscored
            out.append({**row, **dict(zip(_COLUMNS, map(float, values), strict=True))})
    return out


def _columns(measured: Measured, population: str
             ) -> tuple[dict[str, FloatArray], dict[str, FloatArray]] | None:
    """(members' columns, non-members' columns), or None without both groups."""
    groups = []
    for member in (True, False):
        where: dict[str, Scalar] = {"population": population, "member": member}
        groups.append({c: np.array(measured.column(c, where=where)) for c in _COLUMNS})
    if not groups[0]["loss"].size or not groups[1]["loss"].size:
        return None
    return groups[0], groups[1]


def _auc(pos: FloatArray, neg: FloatArray) -> float:
    from sealtune.assess.exposure import auc

    return auc(pos, neg)


def _judge_population(population: str, columns: tuple[dict[str, FloatArray],
                                                      dict[str, FloatArray]],
                      settings: Mapping[str, Any], metrics: dict[str, Scalar],
                      intervals: dict[str, tuple[float, float]],
                      series: dict[str, tuple[float, ...]]) -> list[str]:
    members, others = columns
    failures = []
    metrics[f"{population}_members"] = int(members["loss"].size)
    metrics[f"{population}_nonmembers"] = int(others["loss"].size)
    judge_tpr = others["loss"].size >= int(settings["min_nonmembers_for_tpr"])
    for attack, score in ATTACKS.items():
        pos, neg = score(members), score(others)
        key = f"{population}_{attack}"
        metrics[f"{key}_auc"] = _auc(pos, neg)
        intervals[f"{key}_auc"] = two_group_ci(_auc, pos, neg)
        metrics[f"{key}_tpr_at_1pct_fpr"] = tpr_at_fpr(pos, neg, 0.01)
        intervals[f"{key}_tpr_at_1pct_fpr"] = two_group_ci(
            lambda p, n: tpr_at_fpr(p, n, 0.01), pos, neg)
        if intervals[f"{key}_auc"][0] > float(settings["max_auc"]):
            failures.append(f"{population} auc")
        if judge_tpr and intervals[f"{key}_tpr_at_1pct_fpr"][0] > float(
                settings["max_tpr_at_1pct_fpr"]):
            failures.append(f"{population} tpr at 1% fpr")
        if attack.endswith("_ref"):
            fpr, tpr = roc_curve(pos, neg)
            step = max(1, fpr.size // _ROC_POINTS)
            series[f"{key}_fpr"] = (*tuple(fpr[::step].tolist()), 1.0)
            series[f"{key}_tpr"] = (*tuple(tpr[::step].tolist()), 1.0)
    metrics[f"{population}_tpr_judged"] = judge_tpr
    return failures


def _audit(measured: Measured, settings: Mapping[str, Any],
           metrics: dict[str, Scalar]) -> list[str]:
    """The one-run ε lower bound on the canaries, against the (group) DP claim if any."""
    columns = _columns(measured, "canaries")
    claim = measured.scalars.get("dp_epsilon")
    if columns is None:
        return []
    members, others = columns
    scores = np.concatenate([ATTACKS["loss_ref"](members), ATTACKS["loss_ref"](others)])
    truth = [True] * members["loss"].size + [False] * others["loss"].size
    k = len(truth) // 4
    if k < 1:
        return []
    r, v = audit_guesses(scores, truth, k=k)
    repeats = max(1, int(measured.scalars.get("repeats") or 1))
    delta = float(measured.scalars.get("dp_delta") or 0.0)
    group_eps = None if claim is None else repeats * float(claim)
    group_delta = 0.0 if claim is None else min(
        1.0, repeats * math.exp((repeats - 1) * float(claim)) * delta)
    bound = one_run_epsilon(len(truth), r, v, delta=group_delta,
                            beta=float(settings["audit_beta"]))
    metrics.update({"audit_guesses": r, "audit_correct": v, "epsilon_lower_bound": bound,
                    "epsilon_claimed": claim, "epsilon_claimed_group": group_eps,
                    "delta_claimed_group": group_delta if claim is not None else None})
    if group_eps is not None and bound > group_eps:
        return ["the dp claim (the one-run epsilon lower bound exceeds it: a dp bug)"]
    return []
