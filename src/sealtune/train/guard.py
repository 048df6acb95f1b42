"""The first-step update check: trainable weights moved and frozen weights did not.

It guards against a known silent failure (Opacus issue #820): with DP and
LoRA, when the adapter is attached before the model is on its device, the loss
falls and epsilon accrues but the LoRA weights never change — the run looks
healthy and produces an adapter that does nothing. More generally it catches
any setup in which the optimizer updates other tensors than those the forward
pass uses, or changes weights that are meant to stay frozen (the base model
under LoRA).

Before training, :func:`check_optimizer` requires the optimizer to hold
exactly the parameters the model trains (a device move after building the
optimizer replaces them). After the first optimizer step of a run (fresh or
resumed), :class:`UpdateGuard` checks:

* every frozen parameter is bit-for-bit unchanged (sha256 of its bytes);
* with DP, every trainable parameter changed (Gaussian noise is added to the
  gradient of every one, so an unchanged one was not updated at all);
* without DP, every trainable parameter that had a non-zero gradient changed,
  and at least one did (a zero gradient is legitimate at the first step: LoRA's
  ``A`` matrices get none while ``B`` is zero).

It raises :class:`UpdateCheckError` otherwise, before a second step is taken.
It does not check later steps, nor that the updates are *good*.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sealtune.errors import SealtuneError


class UpdateCheckError(SealtuneError):
    """The first optimizer step did not update the weights as it should have."""

    prefix = "training"


def check_optimizer(optimizer: Any, trainable: list[Any]) -> None:
    """Before training: the optimizer must hold exactly the model's trainable parameters.

    Raises:
        UpdateCheckError: it holds other tensors (e.g. parameters replaced after it was
            built, as by a device move) or misses some.
    """
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if held != {id(p) for p in trainable}:
        raise UpdateCheckError(
            "the optimizer does not hold the parameters the model trains (they were "
            "replaced after the optimizer was built, as a device move does; Opacus issue #820)",
            hint="move the model to its device and attach the adapter before building the "
                 "optimizer")


def _digest(tensor: Any) -> bytes:
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
    return hashlib.sha256(memoryview(flat.numpy())).digest()


class UpdateGuard:
    """Snapshot the weights before the first step; :meth:`verify` after it.

    Args:
        model: the model whose forward pass is trained.
        trainable: names of the parameters meant to be trained (all others must not change).
        dp: whether the step adds noise to every trainable parameter's gradient.
    """

    def __init__(self, model: Any, *, trainable: set[str], dp: bool) -> None:
        self._model = model
        self._dp = dp
        params = list(model.named_parameters())
        self._trainable = {n: _digest(p) for n, p in params if n in trainable}
        self._frozen = {n: _digest(p) for n, p in params if n not in trainable}
        self._with_grad: set[str] | None = None
        self.checked = False

    def before_step(self) -> None:
        """Record which trainable parameters have a non-zero gradient (non-DP runs)."""
        params = dict(self._model.named_parameters())
        self._with_grad = {n for n in self._trainable if params[n].grad is not None
                           and bool(params[n].grad.detach().abs().sum() > 0)}

    def verify(self) -> dict[str, int]:
        """Check the first step's effect; returns counts for the report.

        Raises:
            UpdateCheckError: a frozen weight changed, or trainable weights did not.
        """
        params = dict(self._model.named_parameters())
        missing = set(self._trainable) | set(self._frozen)
        if not missing <= set(params):
            raise UpdateCheckError("the model's parameters changed identity during setup")
        changed = {n for n, d in self._trainable.items() if _digest(params[n]) != d}
        frozen_changed = sorted(n for n, d in self._frozen.items() if _digest(params[n]) != d)
        self.checked = True
        if frozen_changed:
            raise UpdateCheckError(
                f"{len(frozen_changed)} frozen (base) weight tensor(s) changed at the first "
                f"step, e.g. {frozen_changed[0]}",
                hint="only adapter weights may change under LoRA; report the setup")
        expected = set(self._trainable) if self._dp else (self._with_grad or set())
        stuck = sorted(expected - changed)
        if stuck or not changed:
            example = stuck[0] if stuck else next(iter(sorted(self._trainable)), "none")
            raise UpdateCheckError(
                f"the first optimizer step left {len(stuck) or len(self._trainable)} trainable "
                f"weight tensor(s) unchanged (e.g. {example}): the optimizer is not updating "
                "the weights the model uses (the silent failure of Opacus issue #820)",
                hint="attach the adapter after the model is on its device, build the optimizer "
                     "from the final parameters, and report the setup")
        return {"trainable_changed": len(changed), "trainable": len(self._trainable),
                "frozen_unchanged": len(self._frozen)}
