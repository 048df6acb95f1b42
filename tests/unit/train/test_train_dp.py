"""DP training: the reported ε is the accountant's, the cross-check fails closed, the budget
is a hard stop, the #820 guard fires under DP, and the accountant's history survives a resume."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant  # type: ignore[import-untyped]
from safetensors.torch import load_file, save_file

from sealtune.errors import ConfigError
from sealtune.train import dp as dp_module
from sealtune.train import trainer
from sealtune.train.checkpoints import MemorySink
from sealtune.train.dp import (
    MAX_RDP_OVER_PRV,
    PrivacyAccountingError,
    cross_check,
    quiet_library_warnings,
)
from sealtune.train.guard import UpdateCheckError
from sealtune.train.trainer import DPConfig, Progress, TrainConfig, TrainResult, train


def _config(dp: DPConfig, **changes: Any) -> TrainConfig:
    base = TrainConfig(lr=1e-2, epochs=2, batch_size=4, physical_batch_size=2, max_length=64,
                       seed=0, dp=dp)
    return dataclasses.replace(base, **changes)


def _prv(noise: float, q: float, steps: int, delta: float) -> float:
    accountant = PRVAccountant()
    accountant.history = [(noise, q, steps)]
    with quiet_library_warnings():
        return float(accountant.get_epsilon(delta))


@pytest.fixture(scope="module")
def calibrated(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory,
               ) -> tuple[TrainResult, list[Progress], Path]:
    from sealtune.data.records import Message, Record

    torch.set_num_threads(1)
    records = [Record(id=str(i), line=i + 1, messages=[
        Message("user", f"question {i}"), Message("assistant", f"answer {i % 3}")])
        for i in range(16)]
    seen: list[Progress] = []
    out = tmp_path_factory.mktemp("dp") / "out"
    config = _config(DPConfig(epsilon=4.0, epsilon_every=3))
    return train(records, base_dir=tiny_dir, config=config, out_dir=out,
                 progress=seen.append), seen, out


def test_reported_epsilon_is_what_the_accountant_computes(
        calibrated: tuple[TrainResult, list[Progress], Path]) -> None:
    result, seen, out = calibrated
    report = result.privacy
    assert report is not None
    assert report.unit.startswith("example-level")
    assert report.delta == 1e-5  # min(1e-5, 16 ** -1.1)
    assert report.sample_rate == 1 / 4 and report.steps == result.steps == 8
    assert report.accountant == "prv" and report.sampling == "poisson"
    # Recompute independently with Opacus's accountants.
    expected = _prv(report.noise_multiplier, report.sample_rate, report.steps, report.delta)
    assert report.epsilon_spent == pytest.approx(expected, rel=1e-9)
    assert report.epsilon_spent <= 4.0 and report.epsilon_spent > 3.9  # calibrated to the budget
    rdp = RDPAccountant()
    rdp.history = [(report.noise_multiplier, report.sample_rate, report.steps)]
    with quiet_library_warnings():
        assert report.epsilon_rdp == pytest.approx(rdp.get_epsilon(report.delta), rel=1e-9)
    assert 1.0 <= report.cross_check_rdp_over_prv <= MAX_RDP_OVER_PRV
    # Progress carries ε every 3 steps and at the end; the last one is the reported one.
    assert [p.step for p in seen if p.epsilon is not None] == [3, 6, 8]
    assert seen[-1].epsilon == pytest.approx(report.epsilon_spent)
    assert all(p.epsilon is None or p.epsilon <= 4.0 for p in seen)
    assert result.guard["trainable_changed"] == result.guard["trainable"]  # noise moves all
    doc = json.loads((out / "training.json").read_text())
    assert doc["privacy"]["epsilon_spent"] == report.epsilon_spent
    assert doc["privacy"]["noise_multiplier"] == report.noise_multiplier
    assert any("secure_mode is off" in n for n in doc["notes"])


def test_cross_check_fails_closed_on_disagreement(
        tiny_dir: Path, make_records: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    prv, rdp = cross_check(1.0, 0.25, 8, 1e-5)
    assert 1 <= rdp / prv <= MAX_RDP_OVER_PRV
    real = dp_module.epsilon_of

    def broken(mechanism: str, history: list[tuple[float, float, int]], delta: float) -> float:
        eps = real(mechanism, history, delta)
        return eps * 10 if mechanism == "rdp" else eps  # a forced 10x disagreement

    monkeypatch.setattr(dp_module, "epsilon_of", broken)
    with pytest.raises(PrivacyAccountingError, match="disagree"):
        cross_check(1.0, 0.25, 8, 1e-5)
    seen: list[Progress] = []
    with pytest.raises(PrivacyAccountingError, match="disagree"):
        train(make_records(8), base_dir=tiny_dir, out_dir=tmp_path / "o", progress=seen.append,
              config=_config(DPConfig(epsilon=8.0, noise_multiplier=1.0)))
    assert seen == [] and not (tmp_path / "o").exists()


def test_training_stops_hard_at_the_budget(tiny_dir: Path, make_records: Any,
                                           tmp_path: Path) -> None:
    # Fixed noise: 4 epochs x 4 steps would spend epsilon 3.8, more than the budget of 3.
    config = _config(DPConfig(epsilon=3.0, noise_multiplier=1.5), epochs=4)
    result = train(make_records(16), base_dir=tiny_dir, config=config, out_dir=tmp_path / "o")
    report = result.privacy
    assert report is not None
    assert result.stop_reason == "privacy_budget" and report.stopped_by_budget
    assert 8 <= result.steps == report.steps == report.budget_steps < 16
    assert report.epsilon_spent <= 3.0
    q, delta = report.sample_rate, report.delta
    assert _prv(1.5, q, report.steps, delta) <= 3.0 < _prv(1.5, q, report.steps + 1, delta)


def test_guard_fires_under_dp_when_weights_do_not_move(
        tiny_dir: Path, make_records: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Loss is computed and ε accrues, but the step moves nothing (the #820 symptom).
    monkeypatch.setattr(trainer, "build_optimizer",
                        lambda params, config: torch.optim.AdamW(params, lr=0.0))
    with pytest.raises(UpdateCheckError, match="#820"):
        train(make_records(8), base_dir=tiny_dir, out_dir=tmp_path / "o",
              config=_config(DPConfig(epsilon=8.0, noise_multiplier=1.0)))


def test_resume_continues_the_accountant_history(tiny_dir: Path, make_records: Any,
                                                 tmp_path: Path) -> None:
    config = _config(DPConfig(epsilon=8.0, noise_multiplier=1.0), checkpoint_every=3)
    records, sink = make_records(12), MemorySink()
    whole = train(records, base_dir=tiny_dir, config=config, out_dir=tmp_path / "a",
                  checkpoint=sink)
    sink.truncate(3)
    resumed = train(records, base_dir=tiny_dir, config=config, out_dir=tmp_path / "b",
                    checkpoint=sink)
    assert resumed.resumed_from == 3
    assert whole.privacy is not None and resumed.privacy is not None
    assert resumed.privacy.steps == whole.privacy.steps == whole.steps == 6
    assert resumed.privacy.epsilon_spent == whole.privacy.epsilon_spent
    a = load_file(tmp_path / "a" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # same sampling and noise streams too


def test_secure_mode_needs_torchcsprng(tiny_dir: Path, make_records: Any,
                                       tmp_path: Path) -> None:
    try:
        import torchcsprng  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="torchcsprng"):
            train(make_records(4), base_dir=tiny_dir, out_dir=tmp_path / "o",
                  config=_config(DPConfig(epsilon=8.0, secure_mode=True)))
    else:  # with torchcsprng, secure mode trains
        result = train(make_records(4), base_dir=tiny_dir, out_dir=tmp_path / "o",
                       config=_config(DPConfig(epsilon=8.0, secure_mode=True)))
        assert result.privacy is not None


@pytest.mark.parametrize("mode", ["hooks", "ghost"])
def test_empty_poisson_batches_still_take_a_noisy_step(
        mode: Any, tiny_dir: Path, make_records: Any, tmp_path: Path) -> None:
    # q = 1/4 over 4 records: a quarter of the batches or more are empty.
    config = _config(DPConfig(epsilon=50.0, noise_multiplier=1.0, grad_sample_mode=mode),
                     batch_size=1, physical_batch_size=1, epochs=3)
    result = train(make_records(4), base_dir=tiny_dir, config=config, out_dir=tmp_path / "o")
    assert result.privacy is not None and result.privacy.steps == result.steps == 12
    assert None in result.loss_history  # an empty batch has no loss, but was a step
    assert ("ghost clipping" if mode == "ghost" else "hooks") in result.privacy.clipping


def test_ghost_clipping_and_per_example_gradients_agree(tiny_dir: Path, make_records: Any,
                                                        tmp_path: Path) -> None:
    # Same seed, same Poisson batches split into physical batches of 2, same noise: the two
    # ways Opacus clips must give the same update (ghost = norms without per-example grads).
    weights = {}
    for mode in ("hooks", "ghost"):
        config = _config(DPConfig(epsilon=8.0, noise_multiplier=1.0, grad_sample_mode=mode))
        train(make_records(12), base_dir=tiny_dir, config=config, out_dir=tmp_path / mode)
        weights[mode] = load_file(tmp_path / mode / "adapter_model.safetensors")
    for name, value in weights["hooks"].items():
        assert torch.allclose(value, weights["ghost"][name], atol=1e-6)


def test_full_fine_tuning_with_dp(tiny_dir: Path, make_records: Any, tmp_path: Path) -> None:
    # Ghost clipping covers every layer of the tiny Llama: Linear and Embedding natively,
    # LlamaRMSNorm through Opacus's functorch fallback; rotary embeddings have no weights.
    config = _config(DPConfig(epsilon=8.0, noise_multiplier=1.0), method="full", max_steps=2,
                     lr=1e-3)
    result = train(make_records(8), base_dir=tiny_dir, config=config, out_dir=tmp_path / "o")
    assert result.privacy is not None and "ghost" in result.privacy.clipping
    assert result.guard["trainable_changed"] == result.guard["trainable"] == 21
    # Tied input/output embeddings: ghost clipping refuses them, so "auto" uses hooks.
    tied = tmp_path / "tied"
    shutil.copytree(tiny_dir, tied)
    doc = json.loads((tied / "config.json").read_text())
    (tied / "config.json").write_text(json.dumps({**doc, "tie_word_embeddings": True}))
    state = load_file(tied / "model.safetensors")
    del state["lm_head.weight"]
    save_file(state, tied / "model.safetensors", metadata={"format": "pt"})
    result = train(make_records(8), base_dir=tied, config=config, out_dir=tmp_path / "t")
    assert result.privacy is not None and "hooks" in result.privacy.clipping
    assert result.guard["trainable_changed"] == result.guard["trainable"] == 20
