"""Typed training settings; fail closed on unknown or invalid fields.

A job spec's ``config`` object becomes a :class:`TrainConfig` through
:meth:`TrainConfig.from_dict`, which rejects unknown keys instead of
ignoring them (a misspelt ``dp`` must not silently train without privacy).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from sealtune.errors import ConfigError
from sealtune.train.dp import DPConfig

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: Settings that do not change what is computed (left out of the checkpoint fingerprint).
_NOT_FINGERPRINTED = ("checkpoint_every",)


@dataclass(frozen=True, kw_only=True)
class LoraSettings:
    """LoRA adapter shape: rank, scaling ``alpha / r``, dropout and target module names."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = LORA_TARGETS

    def validate(self) -> None:
        if self.r < 1 or self.alpha < 1 or not 0 <= self.dropout < 1:
            raise ConfigError("lora: r and alpha must be >= 1 and 0 <= dropout < 1")
        if not self.target_modules or not all(isinstance(t, str) and t
                                              for t in self.target_modules):
            raise ConfigError("lora.target_modules must name at least one module")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """What to train and how.

    Attributes:
        method: ``lora`` (an adapter; the base stays frozen) or ``full``.
        lora: adapter settings (``method="lora"``).
        epochs: passes over the data (under DP: ``epochs / q`` Poisson-sampled steps).
        max_steps: stop after this many optimizer steps (never raises the DP plan).
        lr, weight_decay, warmup_steps, schedule: AdamW and its learning-rate schedule.
        batch_size: the logical batch (under DP, the expected Poisson batch size).
        physical_batch_size: at most this many examples per forward/backward pass.
        max_length: sequences are cut to this many tokens.
        seed: seeds initialisation, data order, dropout, sampling and noise.
        max_grad_norm: gradient clipping without DP (DP clips per example: ``dp.max_grad_norm``).
        checkpoint_every: save a checkpoint every N steps and at the end (0: never).
        allow_pickle: load pickle base weights after an opcode scan (weakens a default).
        dp: differential privacy; ``None`` trains without it.
    """

    method: Literal["lora", "full"] = "lora"
    lora: LoraSettings = field(default_factory=LoraSettings)
    epochs: int = 1
    max_steps: int | None = None
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Literal["linear", "constant"] = "linear"
    batch_size: int = 8
    physical_batch_size: int | None = None
    max_length: int = 512
    seed: int = 0
    max_grad_norm: float = 1.0
    checkpoint_every: int = 0
    allow_pickle: bool = False
    dp: DPConfig | None = None

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        checks = [
            (self.method in ("lora", "full"), "method must be lora or full"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1"),
            (math.isfinite(self.lr) and self.lr > 0, "lr must be a positive number"),
            (self.weight_decay >= 0 and self.warmup_steps >= 0,
             "weight_decay and warmup_steps must be >= 0"),
            (self.schedule in ("linear", "constant"), "schedule must be linear or constant"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.physical_batch_size is None or self.physical_batch_size >= 1,
             "physical_batch_size must be >= 1"),
            (self.max_length >= 8, "max_length must be >= 8"),
            (self.max_grad_norm > 0, "max_grad_norm must be positive"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"training config: {message}")
        self.lora.validate()
        if self.dp is not None:
            self.dp.validate()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the inverse of :meth:`from_dict`)."""
        out = asdict(self)
        out["lora"]["target_modules"] = list(self.lora.target_modules)
        return out

    def fingerprint(self) -> str:
        """Digest of the settings that determine the computation (checked on resume)."""
        doc = {k: v for k, v in self.to_dict().items() if k not in _NOT_FINGERPRINTED}
        if doc.get("dp"):
            doc["dp"] = {k: v for k, v in doc["dp"].items() if k != "epsilon_every"}
        blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from JSON; unknown keys and wrong types are errors.

        Raises:
            ConfigError: an unknown key, a wrong type or an invalid value.
        """
        if not isinstance(data, dict):
            raise ConfigError("training config must be an object")
        body = dict(data)
        lora, dp = body.pop("lora", None), body.pop("dp", None)
        try:
            config = cls(
                **_known(cls, body, "config"),
                lora=LoraSettings(**_lora(lora)) if lora is not None else LoraSettings(),
                dp=DPConfig(**_known(DPConfig, dp, "config.dp")) if dp is not None else None,
            )
        except TypeError:
            raise ConfigError("training config: a field has the wrong type or is missing",
                              hint="dp needs at least epsilon") from None
        try:
            config.validate()
        except TypeError:
            raise ConfigError("training config: a field has the wrong type") from None
        return config


def _known(kind: type, data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be an object")
    names = {f.name for f in fields(kind)} - {"lora", "dp"}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    return dict(data)


def _lora(data: Any) -> dict[str, Any]:
    out = _known(LoraSettings, data, "config.lora")
    if "target_modules" in out:
        if not isinstance(out["target_modules"], list | tuple):
            raise ConfigError("config.lora.target_modules must be a list of names")
        out["target_modules"] = tuple(out["target_modules"])
    return out
