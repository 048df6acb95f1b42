"""The gate's privacy probes against the three training regimes of the privacy claim.

The setting of ``test_privacy_canaries`` (fixed seed; a pretrained tiny base,
full fine-tuning, 24 canaries repeated 4 times among synthetic chats), judged
by the gate's own probes and the default policy's thresholds:

* without DP the gate fails on exposure and on membership inference;
* with DP at ε = 1 it passes both, and the one-run lower bound on ε is at
  most 1 (and at most the group claim a 4-times canary is held to);
* the negative control, clipping without noise, fails on exposure, and had
  it claimed DP, the one-run audit refutes the claim: a DP bug, caught. With
  24 canaries the audit can refute at most ε ≈ 1.26 per canary (12 right
  guesses out of 12), and a canary repeated 4 times is held to 4ε, so the
  claim that can be caught here is ε = 0.25 (bench/assess.py: more
  canaries, fewer repeats, larger claims).

``bench/assess.py`` measures the same over 20 seeds; this runs one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sealtune.assess.canaries import Canary
from sealtune.assess.policy import default_policy_text, parse_policy
from sealtune.assess.probes import PROBES, DpClaim, ProbeContext, ProbeResult
from sealtune.data.records import Record
from sealtune.train.dp import DPConfig
from sealtune.train.trainer import train

from . import test_privacy_canaries as setting

_clip_only, _config, _load = setting._clip_only, setting._config, setting._load
# the same fixtures (module-scoped here too): the pretrained base, the canaries and records
base, private, _one_thread = setting.base, setting.private, setting._one_thread

Private = tuple[list[Canary], list[Record], list[Record]]
POLICY = parse_policy(default_policy_text())


def _gate(model: Any, tokenizer: Any, base: Path, canaries: list[Canary],
          dp: DpClaim | None) -> dict[str, ProbeResult]:
    reference, ref_tokenizer = _load(base)
    ctx = ProbeContext(model=model, tokenizer=tokenizer, base_model=reference,
                       base_tokenizer=ref_tokenizer, canaries=canaries, dp=dp, seed=0,
                       max_length=64)
    out = {}
    for name in ("canary_exposure", "membership"):
        settings = POLICY.probes[name].settings
        out[name] = PROBES[name].judge(PROBES[name].measure(ctx, settings), settings)
    return out


def test_without_dp_the_gate_fails_on_exposure_and_membership(base: Path, private: Private,
                                                               tmp_path: Path) -> None:
    canaries, records, _ = private
    train(records, base_dir=base, config=_config(None), out_dir=tmp_path / "out")
    results = _gate(*_load(tmp_path / "out"), base, canaries, None)
    assert results["canary_exposure"].verdict == "fail"
    assert results["canary_exposure"].metrics["p_value"] < 0.01  # type: ignore[operator]
    assert results["membership"].verdict == "fail"
    assert "canaries auc" in results["membership"].reason
    assert {str(i["id"]) for i in results["canary_exposure"].items} == {c.id for c in canaries}


def test_with_dp_at_epsilon_1_the_gate_passes_and_the_bound_stays_below_1(
        base: Path, private: Private, tmp_path: Path) -> None:
    canaries, records, _ = private
    result = train(records, base_dir=base, config=_config(DPConfig(epsilon=1.0)),
                   out_dir=tmp_path / "out")
    assert result.privacy is not None
    claim = DpClaim(result.privacy.epsilon_spent, result.privacy.delta)
    results = _gate(*_load(tmp_path / "out"), base, canaries, claim)
    assert results["canary_exposure"].verdict == "pass"
    membership = results["membership"]
    assert membership.verdict == "pass", membership.reason
    bound = membership.metrics["epsilon_lower_bound"]
    assert isinstance(bound, float) and bound <= 1.0
    assert membership.metrics["epsilon_claimed_group"] == pytest.approx(4 * claim.epsilon)


def test_clipping_without_noise_fails_and_a_false_dp_claim_is_caught(
        base: Path, private: Private) -> None:
    canaries, records, _ = private
    results = _gate(*_clip_only(base, records), base, canaries, DpClaim(0.25, 1e-5))
    assert results["canary_exposure"].verdict == "fail"
    membership = results["membership"]
    assert membership.verdict == "fail"
    assert "dp bug" in membership.reason
    bound = membership.metrics["epsilon_lower_bound"]
    assert isinstance(bound, float) and bound > 4 * 0.25
