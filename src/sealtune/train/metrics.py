"""The loss as trained, the held-out evaluation, and the per-epoch report.

Training's loss is each example's mean token cross-entropy over its assistant
tokens (:func:`example_losses`), averaged over the batch. The evaluation loss
(:func:`eval_loss`) is the mean token cross-entropy over all assistant tokens
of the held-out examples (token-weighted, so it does not depend on how they
are batched); its perplexity is ``exp`` of it. Evaluation runs with the model
in eval mode (no dropout) under ``torch.no_grad()``: it draws no random
numbers, so it leaves a run's random streams — and its resume — as they were,
and Opacus's hooks record nothing (they act only on a training module with
gradients enabled).

What leaves the sandbox is :class:`EpochReport`: numbers only. What this does
not protect against: the numbers are exact, not noised — aggregate figures
about the held-out records outside any DP claim (see docs/training.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sealtune.train.distributed import DistContext

#: Perplexity above e^this is reported as None (it would overflow a float).
_MAX_LOG_PPL = 700.0


@dataclass(frozen=True)
class EpochReport:
    """One epoch's figures (what may leave the sandbox).

    Attributes:
        epoch: epochs done at this point, ``step / steps_per_epoch`` rounded to 4 places
            (a run stopped by ``max_steps`` or the DP budget ends on a fraction).
        step: optimizer steps done.
        train_loss: mean of this epoch's step losses (None if no step had one).
        eval_loss: mean token loss on the held-out records (None without a split).
        eval_perplexity: ``exp(eval_loss)``.
    """

    epoch: float
    step: int
    train_loss: float | None
    eval_loss: float | None
    eval_perplexity: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochReport:
        return cls(epoch=float(data["epoch"]), step=int(data["step"]),
                   train_loss=_opt(data.get("train_loss")),
                   eval_loss=_opt(data.get("eval_loss")),
                   eval_perplexity=_opt(data.get("eval_perplexity")))


EpochFn = Callable[[EpochReport], None]


class Examples(Protocol):
    """Indexable examples (:class:`~sealtune.train.data.ExampleDataset`)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def epoch_report(*, step: int, steps_per_epoch: int, losses: Sequence[float | None],
                 eval_loss: float | None) -> EpochReport:
    """The report at ``step``, from the step losses since the previous report."""
    seen = [x for x in losses if x is not None]
    return EpochReport(
        epoch=round(step / steps_per_epoch, 4), step=step,
        train_loss=sum(seen) / len(seen) if seen else None, eval_loss=eval_loss,
        eval_perplexity=None if eval_loss is None or eval_loss > _MAX_LOG_PPL
        else math.exp(eval_loss))


def example_losses(model: Any, ids: Any, mask: Any, labels: Any) -> Any:
    """Mean token loss of each example (assistant tokens only; 0 where none)."""
    import torch

    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1, :]
    targets = labels[:, 1:]
    tokens = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
        reduction="none").view(targets.shape)
    counts = (targets != -100).sum(dim=1).clamp(min=1)
    return tokens.sum(dim=1) / counts


def eval_loss(model: Any, items: Examples, collate: Callable[[Any], Any], *,
              batch: int, dist: DistContext | None = None) -> float:
    """Mean token cross-entropy over the assistant tokens of ``items`` (all ranks' share).

    Each rank evaluates its round-robin share; the sums are added over the group, so
    every rank returns the same figure. The model's train/eval mode is restored.
    """
    import torch

    mine = list(range(len(items))) if dist is None else dist.shard(range(len(items)))
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(mine), batch):
                ids, mask, labels = collate([items[i] for i in mine[start:start + batch]])
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1, :]
                targets = labels[:, 1:]
                total += float(torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                    ignore_index=-100, reduction="sum"))
                count += int((targets != -100).sum())
    finally:
        model.train(was_training)
    if dist is not None:
        total, count = dist.sum(total), int(dist.sum(float(count)))
    return total / count if count else math.nan
