"""What a training run reports: per step (:class:`Progress`) and at the end (:class:`TrainResult`).

Both hold aggregate numbers, counts and settings only — never text, token ids
or tensors — because they leave the sandbox (progress events, the
``training_finished`` event) or are written next to the weights
(``training.json``). What this does not protect against: the numbers
themselves are exact, un-noised statistics of the records (outside any DP
claim; see docs/training.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealtune.train.dp import PrivacyReport
from sealtune.train.metrics import EpochReport

TRAINING_JSON = "training.json"


@dataclass(frozen=True)
class Progress:
    """One optimizer step's aggregate metrics (what may leave the sandbox)."""

    step: int
    total: int
    loss: float | None
    lr: float
    grad_norm: float | None
    epsilon: float | None  # PRV ε so far, every ``dp.epsilon_every`` steps and at the end


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class TrainResult:
    """What a run produced (also written, with the config, to ``training.json``)."""

    out_dir: Path
    files: tuple[str, ...]
    method: str
    steps: int
    planned_steps: int
    stop_reason: str
    final_loss: float | None
    loss_history: tuple[float | None, ...]
    trainable_parameters: int
    total_parameters: int
    seconds: float
    resumed_from: int | None
    data: dict[str, int]
    guard: dict[str, int]
    privacy: PrivacyReport | None
    notes: tuple[str, ...] = ()
    dropped_no_assistant_tokens: int = 0
    world_size: int = 1
    epochs: tuple[EpochReport, ...] = ()
    validation: dict[str, int] | None = None  # the held-out split's counts (None: no split)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "steps": self.steps, "planned_steps": self.planned_steps,
                "stop_reason": self.stop_reason, "final_loss": self.final_loss,
                "loss_history": list(self.loss_history),
                "trainable_parameters": self.trainable_parameters,
                "total_parameters": self.total_parameters, "seconds": round(self.seconds, 3),
                "resumed_from": self.resumed_from, "data": self.data, "guard": self.guard,
                "privacy": None if self.privacy is None else self.privacy.to_dict(),
                "notes": list(self.notes), "files": list(self.files),
                "dropped_no_assistant_tokens": self.dropped_no_assistant_tokens,
                "world_size": self.world_size, "validation": self.validation,
                "epochs": [e.to_dict() for e in self.epochs]}
