"""The learning-rate schedule: linear warm-up, then linear, cosine or constant.

After the warm-up the shapes are transformers' ``get_linear_schedule_with_warmup``,
``get_cosine_schedule_with_warmup`` (half a cosine, ``num_cycles=0.5``) and
``get_constant_schedule_with_warmup``. The warm-up is shifted by one step:
step ``s < w`` gets ``(s + 1) / w`` of the peak rate where transformers gives
``s / w``, so the first step never has a learning rate of 0 (the update check
of :mod:`.guard` needs the first step to move the weights).

Pure arithmetic on step counts: nothing here sees data.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from sealtune.train.config import TrainConfig


def warmup_steps(config: TrainConfig, total: int) -> int:
    """Warm-up steps: ``warmup_steps``, or ``warmup_ratio`` of ``total`` rounded up."""
    if config.warmup_ratio:
        return math.ceil(config.warmup_ratio * total)
    return config.warmup_steps


def lr_lambda(config: TrainConfig, total: int) -> Callable[[int], float]:
    """The factor of the peak learning rate at each step (0-based), for ``total`` steps."""
    warm = warmup_steps(config, total)
    shape = config.scheduler

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if shape == "constant":
            return 1.0
        progress = (step - warm) / max(1, total - warm)
        if shape == "cosine":
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
        return max(0.0, 1.0 - progress)

    return factor
