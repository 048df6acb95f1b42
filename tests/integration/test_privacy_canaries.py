"""The privacy claim, tested with planted canaries (Carlini et al., "The Secret Sharer").

Setting (fixed seeds): the tiny model, first pretrained without DP on public
generic text (the tokenizer corpus; DP fine-tuning assumes a pretrained base,
and a random model has nothing usable to keep), is then **fully** fine-tuned
(``method="full"``: on this model the reliable memoriser) on private data:
synthetic customer-service chats plus 24 canaries, six-digit PINs each
included with probability 1/2 and repeated 4 times. Exposure is measured among
2,000 uniform candidates (cap log2 2001 ≈ 11 bits; a left-out canary scores
≈ 1.4 bits by chance); the membership attack is the loss attack.

Claims, with the spread observed over seeds 0-3 (``bench/leakage.py`` setup):
* without DP, included canaries are exposed: gap ≥ 2 bits and AUC ≥ 0.8
  (observed: gap 9.7-10.2 bits, AUC 1.0);
* with DP at ε = 1 (example-level; a canary repeated 4 times is protected at
  about 4ε by group privacy), the gap is ≤ 1 bit and AUC ≤ 0.7 (observed:
  gap -0.53..0.10 bits, AUC 0.45-0.55), while the model stays usable: its
  held-out perplexity is below the base model's (observed: 0.65-0.86 of it):
  DP training learned the private domain instead of drowning in noise (a
  model that learned nothing would trivially "hide" the canaries). Not
  "close to the non-DP model's": at ε = 1 on ~170 records it is not (15-59
  against 1.06-1.12; see the leakage table for ε = 8 and 3);
* the negative control, per-example clipping with Poisson sampling but zero
  noise, is flagged as leaking (gap ≥ 2 bits or AUC ≥ 0.8): clipping alone is
  not privacy, and the measures have the teeth to tell (observed: gap
  9.4-10.1 bits, AUC 1.0).

These assert on leakage and perplexity only, never on time.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from sealtune.assess.canaries import (
    Canary,
    canary_records,
    filler_records,
    plant_canaries,
)
from sealtune.assess.exposure import LeakageReport, assess_canaries, perplexity
from sealtune.data.records import Message, Record
from sealtune.train.config import TrainConfig
from sealtune.train.dp import DPConfig
from sealtune.train.tiny import make_tiny, tiny_corpus
from sealtune.train.trainer import train

SEED = 0
CANARIES, REPEATS, CLEAN, HELDOUT, CANDIDATES = 24, 4, 128, 48, 2000
EPOCHS, BATCH, LR, CLIP, MAX_LENGTH = 20, 32, 1e-3, 1.0, 64


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model pretrained (no DP) on public generic text: the base to fine-tune."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("canary-base")
    raw = make_tiny(root / "raw", seed=SEED)
    public = [Record(id=f"public-{i}", line=0, messages=[
        Message("user", "请说一句话。Say something."), Message("assistant", line)])
        for i, line in enumerate(tiny_corpus(lines=256))]
    train(public, base_dir=raw, out_dir=root / "base", config=TrainConfig(
        method="full", epochs=10, batch_size=32, lr=3e-3, max_length=96, seed=SEED))
    return root / "base"


@pytest.fixture(scope="module")
def private() -> tuple[list[Canary], list[Record], list[Record]]:
    """(canaries, training records, held-out clean records)."""
    canaries = plant_canaries(CANARIES, seed=SEED, repeats=REPEATS)
    records = filler_records(CLEAN, seed=SEED) + canary_records(canaries)
    random.Random(SEED).shuffle(records)
    included = sum(c.included for c in canaries)
    assert 8 <= included <= CANARIES - 8  # both groups big enough for a mean and an AUC
    return canaries, records, filler_records(HELDOUT, seed=10_000 + SEED)


@pytest.fixture(scope="module")
def base_perplexity(base: Path, private: tuple[list[Canary], list[Record], list[Record]],
                    ) -> float:
    model, tokenizer = _load(base)
    return perplexity(model, tokenizer, private[2])


def _config(dp: DPConfig | None) -> TrainConfig:
    return TrainConfig(method="full", epochs=EPOCHS, batch_size=BATCH, lr=LR,
                       scheduler="constant", max_length=MAX_LENGTH, max_grad_norm=CLIP,
                       seed=SEED, dp=dp)


def _load(path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _measure(model: Any, tokenizer: Any, canaries: list[Canary],
             heldout: list[Record]) -> tuple[LeakageReport, float]:
    report = assess_canaries(model, tokenizer, canaries, n_candidates=CANDIDATES, seed=SEED)
    assert all(set(c) == {"id", "included", "exposure", "loss"}
               for c in report.to_dict()["canaries"])  # numbers and ids only
    return report, perplexity(model, tokenizer, heldout)


def _clip_only(base: Path, records: list[Record]) -> tuple[Any, Any]:
    """DP-SGD without noise: Opacus clipping and Poisson sampling, ``noise_multiplier=0``.

    The trainer refuses zero noise (``dp.noise_multiplier must be positive``), so the
    negative control runs its own loop with the same data, optimizer and clipping.
    """
    from opacus import PrivacyEngine

    from sealtune.train.data import Collator, ExampleDataset, encode_records
    from sealtune.train.dp import quiet_library_warnings
    from sealtune.train.loading import load_base
    from sealtune.train.trainer import example_losses

    torch.manual_seed(SEED)
    model, tokenizer, _ = load_base(base)
    model.train()
    data = ExampleDataset(encode_records(records, tokenizer, max_length=MAX_LENGTH))
    loader: Any = torch.utils.data.DataLoader(
        data, batch_size=BATCH, collate_fn=Collator(int(tokenizer.pad_token_id)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    with quiet_library_warnings():
        engine = PrivacyEngine(accountant="prv")
        model, optimizer, loader = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=0.0,
            max_grad_norm=CLIP, poisson_sampling=True, grad_sample_mode="hooks")
        loader.batch_sampler.generator = torch.Generator().manual_seed(SEED)
        for _ in range(EPOCHS):
            for ids, mask, labels in loader:
                optimizer.zero_grad()
                if ids.shape[0]:
                    example_losses(model, ids, mask, labels).mean().backward()
                    optimizer.step()
    return model._module, tokenizer


def test_without_dp_included_canaries_are_exposed(
        base: Path, private: tuple[list[Canary], list[Record], list[Record]],
        tmp_path: Path) -> None:
    canaries, records, heldout = private
    train(records, base_dir=base, config=_config(None), out_dir=tmp_path / "out")
    report, _ = _measure(*_load(tmp_path / "out"), canaries, heldout)
    print(f"no DP: gap {report.exposure_gap:.2f} bits, AUC {report.auc:.2f}")
    assert report.exposure_gap >= 2.0
    assert report.auc >= 0.8


def test_dp_epsilon_1_hides_canaries_and_stays_usable(
        base: Path, private: tuple[list[Canary], list[Record], list[Record]],
        base_perplexity: float, tmp_path: Path) -> None:
    canaries, records, heldout = private
    dp = DPConfig(epsilon=1.0, max_grad_norm=CLIP)
    result = train(records, base_dir=base, config=_config(dp), out_dir=tmp_path / "out")
    assert result.privacy is not None and result.privacy.epsilon_spent <= 1.0
    report, ppl = _measure(*_load(tmp_path / "out"), canaries, heldout)
    print(f"eps 1: gap {report.exposure_gap:.2f} bits, AUC {report.auc:.2f}, "
          f"ppl {ppl:.2f} (base {base_perplexity:.2f})")
    assert report.exposure_gap <= 1.0
    assert report.auc <= 0.7
    assert ppl < base_perplexity  # learned the private domain despite the noise


def test_clipping_without_noise_is_flagged_as_leaking(
        base: Path, private: tuple[list[Canary], list[Record], list[Record]]) -> None:
    canaries, records, heldout = private
    report, _ = _measure(*_clip_only(base, records), canaries, heldout)
    print(f"clip only: gap {report.exposure_gap:.2f} bits, AUC {report.auc:.2f}")
    assert report.exposure_gap >= 2.0 or report.auc >= 0.8
