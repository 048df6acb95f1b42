"""Differentially private training with Opacus: DP-SGD, accounting, a hard budget.

What the guarantee is. With ``dp`` set, the trained weights (and every
checkpoint) are (ε, δ)-differentially private with respect to **one training
record** — one conversation, the privacy unit, since one record is exactly
one training example: adding or removing any single record changes the
distribution of the weights by at most e^ε, up to probability δ. This is
*example-level* DP. It says nothing about the base model's pretraining data,
and it is not user-level: a person who appears in k records is protected only
with roughly kε (group privacy), so deduplicate or cap records per person in
the data stage. The training-loss figures in progress events and in
``training.json`` are computed from the records without noise: they are
aggregate numbers for the operator, outside the (ε, δ) claim.

How. Opacus (≥ 1.6) does the work; nothing here computes per-sample
gradients: ``PrivacyEngine.make_private_with_epsilon`` with Poisson sampling
(each record joins each batch independently with probability q), flat
per-example clipping to ``max_grad_norm`` and Gaussian noise calibrated with
the PRV accountant for the planned number of steps. Full fine-tuning uses
ghost clipping (``grad_sample_mode="ghost"``: per-example gradient norms
without materialising per-example gradients, which would be batch x model
size); in Opacus 1.6 it covers the tiny Llama's ``Linear`` and ``Embedding``
natively and ``LlamaRMSNorm`` through its functorch fallback (rotary
embeddings have no weights), but not tied embeddings. LoRA uses per-example
gradients (``hooks``): only the adapter's ``Linear`` layers are trainable, their
per-example gradients are small, and one backward pass beats ghost clipping's
two plus its T x T Gram matrices per layer (``bench/train.py``: faster and
less memory); both give the same update (tested). ``BatchMemoryManager`` splits a
large logical (Poisson) batch into physical batches. Before any step the
chosen noise is cross-checked with the RDP accountant and training refuses to
start (fail closed) if the two disagree by more than the documented factors
(:data:`MAX_RDP_OVER_PRV`, :data:`MAX_PRV_OVER_RDP`). Training stops hard
before a step that would take the PRV epsilon over the budget, and the
epsilon actually spent is computed from the accountant's history at the end.

``secure_mode`` uses Opacus's secure mode (cryptographically secure noise and
sampling, resistant to floating-point attacks on the noise); it needs the
``torchcsprng`` package and makes runs non-reproducible. Without it the noise
comes from torch's PRNG: fine for experiments, recorded as a note.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sealtune.errors import ConfigError, SealtuneError

#: RDP's conversion to (ε, δ) is looser than PRV's; on a grid of q in
#: {0.01, 0.125, 0.5}, 8..2000 steps and ε in {1, 3, 8} (δ = 1e-5) we measured
#: RDP/PRV between 1.07 and 1.92. Past 3x something is wrong.
MAX_RDP_OVER_PRV = 3.0
#: PRV gives an upper bound that is tighter than RDP's; PRV above RDP by more
#: than 10 % means the PRV numerics failed.
MAX_PRV_OVER_RDP = 1.1
#: δ is at most this, and at most N^-1.1 for N records (δ must be well below 1/N).
DELTA_CAP = 1e-5
PRIVACY_UNIT = "example-level: one record (one conversation) is one training example"

_LIBRARY_NOISE: tuple[tuple[str, type[Warning]], ...] = (
    (r"Secure RNG turned off", UserWarning),  # recorded as a note instead
    (r"Optimal order is the (largest|smallest) alpha", UserWarning),
    (r"Full backward hook is firing when gradients are computed with respect to module "
     r"outputs since no inputs require gradients", UserWarning),
    (r".*is_gradient_checkpointing.*", FutureWarning),
)


class PrivacyAccountingError(SealtuneError):
    """The privacy accounting failed a self-check; training did not run (or its output was
    discarded)."""

    prefix = "privacy"


@contextlib.contextmanager
def quiet_library_warnings() -> Iterator[None]:
    """Silence known, harmless warnings of Opacus, torch and transformers (nothing else)."""
    with warnings.catch_warnings():
        for pattern, category in _LIBRARY_NOISE:
            warnings.filterwarnings("ignore", message=pattern, category=category)
        yield


@dataclass(frozen=True, kw_only=True)
class DPConfig:
    """Differential privacy settings.

    Attributes:
        epsilon: the privacy budget ε (required, > 0).
        delta: δ; ``None`` means ``min(1e-5, N ** -1.1)`` for N records.
        max_grad_norm: per-example clipping norm C.
        secure_mode: Opacus secure mode (needs ``torchcsprng``).
        accountant: the accountant that calibrates and reports (``prv``; ``rdp`` allowed).
        noise_multiplier: fixed noise instead of calibrating to ``epsilon``; training
            then runs until the budget is spent (the hard stop) or the planned steps end.
        epsilon_every: compute ε for progress every this many steps (it takes ~0.2 s).
        grad_sample_mode: how Opacus gets per-example gradient norms: ``ghost`` (ghost
            clipping: norms without per-example gradients, two backward passes), ``hooks``
            (per-example gradients, one backward pass) or ``auto``: ``hooks`` for LoRA,
            whose per-example gradients are only batch x adapter size, and ``ghost`` for
            full fine-tuning, whose would be batch x model size (``hooks`` again when the
            model ties its input and output embeddings, which ghost clipping refuses).
    """

    epsilon: float
    delta: float | None = None
    max_grad_norm: float = 1.0
    secure_mode: bool = False
    accountant: Literal["prv", "rdp"] = "prv"
    noise_multiplier: float | None = None
    epsilon_every: int = 10
    grad_sample_mode: Literal["auto", "ghost", "hooks"] = "auto"

    def validate(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ConfigError("dp.epsilon must be a positive number")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ConfigError("dp.delta must be in (0, 1)")
        if not self.max_grad_norm > 0:
            raise ConfigError("dp.max_grad_norm must be positive")
        if self.accountant not in ("prv", "rdp"):
            raise ConfigError("dp.accountant must be prv or rdp")
        if self.noise_multiplier is not None and not self.noise_multiplier > 0:
            raise ConfigError("dp.noise_multiplier must be positive")
        if self.epsilon_every < 1:
            raise ConfigError("dp.epsilon_every must be at least 1")
        if self.grad_sample_mode not in ("auto", "ghost", "hooks"):
            raise ConfigError("dp.grad_sample_mode must be auto, ghost or hooks")

    def delta_for(self, n_records: int) -> float:
        """The δ to use for a dataset of ``n_records``."""
        return self.delta if self.delta is not None else min(DELTA_CAP, n_records ** -1.1)


def epsilon_of(mechanism: str, history: list[tuple[float, float, int]], delta: float) -> float:
    """ε of a history ``[(noise, sample_rate, steps), ...]``, from a fresh accountant."""
    return _epsilon(mechanism, tuple(history), delta) if history else 0.0


@functools.lru_cache(maxsize=256)
def _epsilon(mechanism: str, history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    from opacus.accountants import create_accountant  # type: ignore[import-untyped]

    accountant = create_accountant(mechanism=mechanism)
    accountant.history = list(history)
    with quiet_library_warnings():
        return float(accountant.get_epsilon(delta=delta))


def cross_check(noise: float, sample_rate: float, steps: int, delta: float) -> tuple[float, float]:
    """PRV and RDP ε for the same mechanism; raise if they disagree beyond the factors.

    Raises:
        PrivacyAccountingError: RDP/PRV outside ``[1/MAX_PRV_OVER_RDP, MAX_RDP_OVER_PRV]``.
    """
    history = [(noise, sample_rate, steps)]
    prv, rdp = epsilon_of("prv", history, delta), epsilon_of("rdp", history, delta)
    ratio = rdp / prv if prv > 0 else math.inf
    if not (math.isfinite(prv) and math.isfinite(rdp)) or not (
            1 / MAX_PRV_OVER_RDP <= ratio <= MAX_RDP_OVER_PRV):
        raise PrivacyAccountingError(
            f"the PRV and RDP accountants disagree (epsilon {prv:.4g} vs {rdp:.4g} for noise "
            f"{noise:.4g}, sample rate {sample_rate:.4g}, {steps} steps); refusing to train",
            hint="this is a numerical failure of an accountant: change the batch size or "
                 "epochs, and report the settings")
    return prv, rdp


def steps_within(noise: float, sample_rate: float, target: float, delta: float, upper: int,
                 *, mechanism: str = "prv") -> int:
    """The largest k ≤ ``upper`` with ε(k steps) ≤ ``target`` (ε grows with k)."""
    def eps(k: int) -> float:
        return epsilon_of(mechanism, [(noise, sample_rate, k)], delta)

    if eps(upper) <= target:
        return upper
    lo, hi = 0, upper  # eps(lo) <= target < eps(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if eps(mid) <= target else (lo, mid)
    return lo


@dataclass(frozen=True)
class PrivacyReport:
    """What the DP guarantee of a run is, in numbers (stored in ``training.json``)."""

    unit: str
    epsilon_target: float
    epsilon_spent: float
    epsilon_rdp: float
    delta: float
    delta_rule: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    budget_steps: int
    max_grad_norm: float
    accountant: str
    cross_check_rdp_over_prv: float
    expected_batch_size: float
    dataset_size: int
    secure_mode: bool
    sampling: str = "poisson"
    clipping: str = "flat per-example"
    stopped_by_budget: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _history(accountant: Any) -> list[tuple[float, float, int]]:
    return [(float(s), float(q), int(n)) for s, q, n in accountant.history]


class DPSession:
    """One DP training run's Opacus objects and its accounting."""

    def __init__(self, config: DPConfig, *, n_records: int, seed: int, lora: bool,
                 tied: bool = False) -> None:
        import torch
        from opacus import PrivacyEngine  # type: ignore[import-untyped]

        config.validate()
        self.config = config
        self.n_records = n_records
        self.delta = config.delta_for(n_records)
        try:
            with quiet_library_warnings():
                self.engine = PrivacyEngine(accountant=config.accountant,
                                            secure_mode=config.secure_mode)
        except ImportError:
            raise ConfigError("dp.secure_mode needs the torchcsprng package",
                              hint="install torchcsprng for this torch, or train without "
                                   "secure_mode (recorded in the report)") from None
        secure = config.secure_mode
        self.sample_gen = None if secure else torch.Generator().manual_seed(seed + 7919)
        self.noise_gen = None if secure else torch.Generator().manual_seed(seed + 104729)
        self.taken = 0  # steps taken in this process (the accountant also has restored ones)
        self.noise = self.sample_rate = 0.0
        self.planned = self.budget_steps = 0
        self.ratio = math.nan
        mode = config.grad_sample_mode
        self.mode: str = ("hooks" if lora or tied else "ghost") if mode == "auto" else mode

    def attach(self, model: Any, optimizer: Any, loader: Any, *, epochs: int,
               max_steps: int | None) -> tuple[Any, Any, Any, Any]:
        """``make_private_with_epsilon`` (Poisson sampling); then check the accounting.

        Returns:
            ``(hooks, dp_optimizer, criterion, dp_loader)``; ``criterion`` is the ghost
            clipping loss, or None in ``hooks`` mode (use the mean of per-example losses).
        """
        import torch

        common: dict[str, Any] = {
            "module": model, "optimizer": optimizer, "data_loader": loader,
            "criterion": torch.nn.CrossEntropyLoss(ignore_index=-100),
            "max_grad_norm": self.config.max_grad_norm, "poisson_sampling": True,
            "grad_sample_mode": self.mode, "wrap_model": False, "noise_generator": self.noise_gen}
        try:
            with quiet_library_warnings():
                if self.config.noise_multiplier is None:
                    out = self.engine.make_private_with_epsilon(
                        target_epsilon=self.config.epsilon, target_delta=self.delta,
                        epochs=epochs, **common)
                else:
                    out = self.engine.make_private(
                        noise_multiplier=self.config.noise_multiplier, **common)
        except ValueError as exc:
            if "budget is too low" in str(exc):
                raise ConfigError("dp.epsilon is too small to calibrate noise for this run",
                                  hint="raise epsilon, or train fewer epochs") from None
            raise
        hooks, dp_opt, criterion, dp_loader = out if len(out) == 4 else (*out[:2], None, out[2])
        if self.sample_gen is not None:
            dp_loader.batch_sampler.generator = self.sample_gen  # resumable sampling stream
        accountant_hook = dp_opt.step_hook

        def step_hook(opt: Any) -> None:
            accountant_hook(opt)
            self.taken += 1

        dp_opt.step_hook = step_hook
        self.noise, self.sample_rate = float(dp_opt.noise_multiplier), 1 / len(loader)
        self.planned = epochs * len(loader)
        self._plan(max_steps)
        return hooks, dp_opt, criterion, dp_loader

    def _plan(self, max_steps: int | None) -> None:
        upper = self.planned if max_steps is None else min(self.planned, max_steps)
        self.budget_steps = steps_within(self.noise, self.sample_rate, self.config.epsilon,
                                         self.delta, upper, mechanism=self.config.accountant)
        if self.budget_steps < 1:
            raise ConfigError("dp: the budget does not allow a single step at this noise",
                              hint="raise epsilon or the noise multiplier")
        prv, rdp = cross_check(self.noise, self.sample_rate, self.budget_steps, self.delta)
        self.ratio = rdp / prv

    @property
    def steps_accounted(self) -> int:
        """Steps in the accountant's history (restored ones included)."""
        return sum(n for _, _, n in _history(self.engine.accountant))

    def may_step(self) -> bool:
        """False when one more step would exceed the budget (the hard stop)."""
        return self.steps_accounted + 1 <= self.budget_steps

    def epsilon(self) -> float:
        """ε spent so far, by the engine's accountant."""
        if not self.engine.accountant.history:
            return 0.0
        with quiet_library_warnings():
            return float(self.engine.get_epsilon(self.delta))

    def state(self) -> dict[str, Any]:
        return {"history": _history(self.engine.accountant),
                "mechanism": self.engine.accountant.mechanism()}

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("mechanism") != self.engine.accountant.mechanism():
            raise ConfigError("checkpoint was accounted with a different accountant")
        self.engine.accountant.history = [tuple(h) for h in state["history"]]

    def report(self, *, stopped_by_budget: bool) -> PrivacyReport:
        """The final report; raises if the spent ε exceeds the target (fail closed)."""
        spent = self.epsilon()
        if spent > self.config.epsilon * (1 + 1e-9):
            raise PrivacyAccountingError(
                f"epsilon spent {spent:.4g} exceeds the budget {self.config.epsilon:.4g}",
                hint="the outputs of this run are discarded; report the settings")
        rule = "given" if self.config.delta is not None else "min(1e-5, N^-1.1)"
        return PrivacyReport(
            unit=PRIVACY_UNIT, epsilon_target=self.config.epsilon, epsilon_spent=spent,
            epsilon_rdp=epsilon_of("rdp", _history(self.engine.accountant), self.delta),
            delta=self.delta, delta_rule=rule, noise_multiplier=self.noise,
            sample_rate=self.sample_rate, steps=self.steps_accounted,
            budget_steps=self.budget_steps, max_grad_norm=self.config.max_grad_norm,
            accountant=self.config.accountant, cross_check_rdp_over_prv=self.ratio,
            expected_batch_size=self.n_records * self.sample_rate, dataset_size=self.n_records,
            secure_mode=self.config.secure_mode, stopped_by_budget=stopped_by_budget,
            clipping="flat per-example, " + ("ghost clipping" if self.mode == "ghost"
                                             else "per-example gradients (hooks)"))
