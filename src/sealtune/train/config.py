"""Typed training settings: the one source of truth for the YAML keys and the CLI options.

A job spec's ``config`` object (and a pipeline's train step) becomes a
:class:`TrainConfig` through :meth:`TrainConfig.from_dict`, which rejects
unknown keys instead of ignoring them (a misspelt ``dp`` must not silently
train without privacy) and checks every value's type and range, naming the
key and its ``sealtune train`` option (:data:`OPTIONS`) in the error. The
keys are this module's field names (``lr``, ``scheduler``, ``lora.rank``,
...); a LLaMA-Factory name (``learning_rate``, ``cutoff_len``, ``lora_rank``)
is refused with the key to use instead (:data:`RENAMED`), never silently
mapped, so one file has one spelling.

What this does not protect against: a valid but poor choice (a huge learning
rate); settings that only the data or the model can refute (a target module
the model lacks, a split larger than the dataset) are checked when training
starts.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, NoReturn

from sealtune.errors import ConfigError
from sealtune.train.dp import DPConfig

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: ``lora.target: all``: every linear layer but the output head (peft's ``all-linear``).
ALL_LINEAR = "all"
SCHEDULERS = ("linear", "cosine", "constant")
#: The largest fraction of the records a validation split may hold.
MAX_VAL_FRACTION = 0.5
#: Settings that do not change what is computed (left out of the checkpoint fingerprint).
_NOT_FINGERPRINTED = ("checkpoint_every",)
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

#: The ``sealtune train`` option of each key (the CLI declares exactly these: tested).
#: ``--max-grad-norm`` sets ``dp.max_grad_norm`` under DP and ``max_grad_norm`` otherwise.
OPTIONS: dict[str, str] = {
    "method": "--method", "lora.rank": "--lora-rank", "lora.alpha": "--lora-alpha",
    "lora.dropout": "--lora-dropout", "lora.target": "--lora-target", "epochs": "--epochs",
    "max_steps": "--max-steps", "lr": "--lr", "weight_decay": "--weight-decay",
    "scheduler": "--scheduler", "warmup_steps": "--warmup-steps",
    "warmup_ratio": "--warmup-ratio", "batch_size": "--batch-size",
    "physical_batch_size": "--physical-batch-size", "max_length": "--max-length",
    "val_size": "--val-size", "seed": "--seed", "max_grad_norm": "--max-grad-norm",
    "checkpoint_every": "--checkpoint-every", "canaries": "--canaries",
    "canary_repeats": "--canary-repeats", "dp.epsilon": "--dp-epsilon",
    "dp.delta": "--dp-delta", "dp.max_grad_norm": "--max-grad-norm",
}
#: Names other tools use (LLaMA-Factory, peft, this module before) and the key to write instead.
RENAMED: dict[str, str] = {
    "learning_rate": "lr", "num_train_epochs": "epochs", "cutoff_len": "max_length",
    "lr_scheduler_type": "scheduler", "schedule": "scheduler", "finetuning_type": "method",
    "per_device_train_batch_size": "batch_size", "lora_rank": "lora.rank",
    "lora_alpha": "lora.alpha", "lora_dropout": "lora.dropout", "lora_target": "lora.target",
    "lora.r": "lora.rank", "lora.target_modules": "lora.target",
    "lora.lora_alpha": "lora.alpha", "lora.lora_dropout": "lora.dropout",
    "allow_pickle": "unsafe_allow_pickle",  # renamed: it weakens a default
}
#: (key, lowest value, may be left out, hint) of each integer setting.
_COUNTS: tuple[tuple[str, int, bool, str], ...] = (
    ("epochs", 1, False, "1 to 3 passes are usual for fine-tuning"),
    ("max_steps", 1, True, "leave it out to train every epoch"),
    ("warmup_steps", 0, False, "0 turns the warm-up off"),
    ("batch_size", 1, False, "if memory is short, lower physical_batch_size instead"),
    ("physical_batch_size", 1, True, "leave it out to use the whole batch per pass"),
    ("max_length", 8, False, "the default is 512 tokens"),
    ("seed", 0, False, "any integer from 0 to 2**63 - 1"),
    ("checkpoint_every", 0, False, "0 keeps only the final state"),
    ("canaries", 0, False, "0 plants none; 64 to 256 make the release gate's tests sharper"),
    ("canary_repeats", 1, False, "4 is the Secret Sharer's setting; 1 audits one example"),
)
#: The most canaries a job may plant, and times each may repeat.
MAX_CANARIES, MAX_CANARY_REPEATS = 10_000, 100
_YAML_FLOAT = "write numbers with a decimal point in YAML (1.0e-4: YAML 1.1 reads 1e-4 as text)"


def where(key: str) -> str:
    """A key as errors name it: ``lora.rank (--lora-rank)``."""
    option = OPTIONS.get(key)
    return f"{key} ({option})" if option else key


def _fail(key: str, must: str, hint: str | None = None) -> NoReturn:
    raise ConfigError(f"training config: {where(key)} must be {must}", hint=hint)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _num(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


@dataclass(frozen=True, kw_only=True)
class LoraSettings:
    """LoRA adapter shape (the ``lora`` block; the options are ``--lora-*``).

    Attributes:
        rank: the adapter's rank r (LLaMA-Factory ``lora_rank``, peft ``r``).
        alpha: scaling numerator: updates are scaled by ``alpha / rank``.
        dropout: dropout on the adapter's input while training.
        target: module names to adapt (suffixes, as peft's ``target_modules``), or
            ``("all",)`` for every linear layer but the output head.
    """

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target: tuple[str, ...] = LORA_TARGETS

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        if not (_int(self.rank) and self.rank >= 1):
            _fail("lora.rank", "an integer >= 1", "typical ranks are 8 to 64")
        if not (_int(self.alpha) and self.alpha >= 1):
            _fail("lora.alpha", "an integer >= 1", "often twice the rank")
        if not (_num(self.dropout) and 0 <= self.dropout < 1):
            _fail("lora.dropout", "a number in [0, 1)", "0.05 is usual; 0 turns it off")
        names = self.target
        if not (isinstance(names, tuple) and names
                and all(isinstance(n, str) and _MODULE_NAME.match(n) for n in names)):
            _fail("lora.target", "module names such as q_proj,v_proj (or all)",
                  f"the default adapts {','.join(LORA_TARGETS)}")
        if len(set(names)) != len(names) or (ALL_LINEAR in names and len(names) > 1):
            _fail("lora.target", "distinct names, or all on its own",
                  "list each module once")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """What to train and how (each field is a YAML key; :data:`OPTIONS` gives its option).

    Attributes:
        method: ``lora`` (an adapter; the base stays frozen) or ``full``.
        lora: adapter settings (``method="lora"``).
        epochs: passes over the training records (under DP: ``epochs / q`` Poisson steps).
        max_steps: stop after this many optimizer steps (never raises the DP plan).
        lr: AdamW's peak learning rate.
        weight_decay: AdamW's decoupled weight decay.
        scheduler: ``linear`` (decay to 0), ``cosine`` (half a cosine to 0) or ``constant``,
            each after the warm-up.
        warmup_steps: linear warm-up over this many steps; or
        warmup_ratio: over this fraction of the planned steps (rounded up); not both.
        batch_size: the logical batch (under DP, the expected Poisson batch size).
        physical_batch_size: at most this many examples per forward/backward pass.
        max_length: sequences are cut to this many tokens (LLaMA-Factory's ``cutoff_len``).
        val_size: hold out this many records (an integer) or this fraction of them (a
            float in (0, 0.5]) for evaluation at the end of every epoch; 0: none.
        seed: seeds initialisation, the split, data order, dropout, sampling and noise.
        max_grad_norm: gradient clipping without DP (DP clips per example: ``dp.max_grad_norm``).
        checkpoint_every: save a checkpoint every N steps and at the end (0: never).
        canaries: plant this many random secrets for the release gate (``sealtune
            assess``), each included with probability 1/2 (0: none).
        canary_repeats: how many times an included canary is in the training records.
        unsafe_allow_pickle: load pickle base weights after an opcode scan (weakens a default).
        dp: differential privacy; ``None`` trains without it.
    """

    method: Literal["lora", "full"] = "lora"
    lora: LoraSettings = field(default_factory=LoraSettings)
    epochs: int = 1
    max_steps: int | None = None
    lr: float = 2e-4
    weight_decay: float = 0.0
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    batch_size: int = 8
    physical_batch_size: int | None = None
    max_length: int = 512
    val_size: int | float = 0
    seed: int = 0
    max_grad_norm: float = 1.0
    checkpoint_every: int = 0
    canaries: int = 0
    canary_repeats: int = 4
    unsafe_allow_pickle: bool = False
    dp: DPConfig | None = None

    def __post_init__(self) -> None:
        if isinstance(self.val_size, float) and self.val_size == 0:  # 0.0 and 0: one split
            object.__setattr__(self, "val_size", 0)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field and its option."""
        if self.method not in ("lora", "full"):
            _fail("method", "lora or full", "lora trains an adapter; full trains every weight")
        self._check_counts()
        self._check_rates()
        self._check_val_size()
        if not isinstance(self.unsafe_allow_pickle, bool):
            _fail("unsafe_allow_pickle", "true or false",
                  "leave it out: safetensors need no pickle")
        if not isinstance(self.lora, LoraSettings):
            _fail("lora", "an object", "rank, alpha, dropout and target go under lora")
        self.lora.validate()
        if self.dp is not None:
            self.dp.validate()

    def _check_counts(self) -> None:
        for key, low, optional, hint in _COUNTS:
            value = getattr(self, key)
            if not ((optional and value is None) or (_int(value) and value >= low)):
                _fail(key, f"an integer >= {low}" + (" (or left out)" if optional else ""), hint)
        if self.seed >= 2**63:
            _fail("seed", "below 2**63", "any integer from 0 to 2**63 - 1")
        if self.canaries > MAX_CANARIES or self.canary_repeats > MAX_CANARY_REPEATS:
            _fail("canaries" if self.canaries > MAX_CANARIES else "canary_repeats",
                  f"at most {MAX_CANARIES} canaries repeated at most {MAX_CANARY_REPEATS} times",
                  "canaries are a test instrument, not a share of the data")

    def _check_rates(self) -> None:
        if not (_num(self.lr) and self.lr > 0):
            _fail("lr", "a positive number", "LoRA often uses 1.0e-4 to 3.0e-4; " + _YAML_FLOAT)
        if not (_num(self.weight_decay) and self.weight_decay >= 0):
            _fail("weight_decay", "a number >= 0", "0 turns it off")
        if not (_num(self.max_grad_norm) and self.max_grad_norm > 0):
            _fail("max_grad_norm", "a positive number", "1.0 is usual")
        if self.scheduler not in SCHEDULERS:
            _fail("scheduler", " or ".join(SCHEDULERS), "linear is the default")
        if not (_num(self.warmup_ratio) and 0 <= self.warmup_ratio < 1):
            _fail("warmup_ratio", "a number in [0, 1)", "0.1 warms up over a tenth of the steps")
        if self.warmup_steps and self.warmup_ratio:
            raise ConfigError(
                f"training config: {where('warmup_steps')} and {where('warmup_ratio')} "
                "are both set", hint="set one of them: a step count or a fraction of the steps")

    def _check_val_size(self) -> None:
        value = self.val_size
        if _int(value) and value >= 0:
            return
        if not (_num(value) and isinstance(value, float) and 0 < value <= MAX_VAL_FRACTION):
            _fail("val_size", f"a fraction in (0, {MAX_VAL_FRACTION}] or a count of records",
                  "0.1 holds out a tenth of the records, 200 holds out 200; 0: no split")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the inverse of :meth:`from_dict`)."""
        out = asdict(self)
        out["lora"]["target"] = list(self.lora.target)
        return out

    def fingerprint(self) -> str:
        """Digest of the settings that determine the computation (checked on resume)."""
        doc = {k: v for k, v in self.to_dict().items() if k not in _NOT_FINGERPRINTED}
        if doc.get("dp"):
            doc["dp"] = {k: v for k, v in doc["dp"].items() if k != "epsilon_every"}
        blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from JSON or YAML; unknown keys, wrong types and bad values are errors.

        Raises:
            ConfigError: an unknown key (with the key to use), a wrong type or an invalid
                value (naming the key and its ``sealtune train`` option).
        """
        if not isinstance(data, Mapping):
            raise ConfigError("training config must be an object")
        body = dict(data)
        lora, dp = body.pop("lora", None), body.pop("dp", None)
        try:
            config = cls(
                **_known(cls, body, ""),
                lora=LoraSettings(**_lora(lora)) if lora is not None else LoraSettings(),
                dp=DPConfig(**_known(DPConfig, dp, "dp.")) if dp is not None else None,
            )
        except TypeError:
            raise ConfigError("training config: dp needs at least epsilon",
                              hint=f"set dp.epsilon ({OPTIONS['dp.epsilon']})") from None
        try:
            config.validate()
        except TypeError:  # a DP field of the wrong type (DPConfig checks ranges only)
            raise ConfigError("training config: a dp field has the wrong type",
                              hint="dp.epsilon, delta and max_grad_norm are numbers") from None
        return config

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from dotted keys (``{"lora.rank": 16, "lr": 1e-4}``), as the CLI does."""
        nested: dict[str, Any] = {}
        for key, value in values.items():
            head, _, tail = key.partition(".")
            if tail:
                nested.setdefault(head, {})[tail] = value
            else:
                nested[key] = value
        return cls.from_dict(nested)


def _known(kind: type, data: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"training config: {prefix.rstrip('.') or 'config'} must be an object")
    names = {f.name for f in fields(kind)} - {"lora", "dp"}
    unknown = sorted(str(k) for k in set(data) - names)
    if unknown:
        raise ConfigError(f"training config: unknown key(s) "
                          f"{', '.join(prefix + k for k in unknown)}",
                          hint=_suggest(prefix, unknown[0], names))
    return dict(data)


def _suggest(prefix: str, key: str, names: set[str]) -> str:
    instead = RENAMED.get(prefix + key)
    if instead is None:
        close = difflib.get_close_matches(key, sorted(names), n=1)
        instead = prefix + close[0] if close else None
    known = "the keys are listed in docs/training.md"
    return f"write {instead} instead of {prefix + key}; {known}" if instead else known


def _lora(data: Any) -> dict[str, Any]:
    out = _known(LoraSettings, data, "lora.")
    target = out.get("target")
    if isinstance(target, str):  # LLaMA-Factory writes lora_target: q_proj,v_proj
        out["target"] = tuple(t.strip() for t in target.split(","))
    elif isinstance(target, list | tuple):
        out["target"] = tuple(target)
    elif "target" in out:
        _fail("lora.target", "a list of module names, or a comma-separated string")
    return out
