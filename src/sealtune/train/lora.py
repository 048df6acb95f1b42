"""A LoRA adapter on the base model (peft), after checking that its target modules exist.

peft matches ``target_modules`` as name suffixes; a name the model lacks would
otherwise surface as a bare ``ValueError`` from inside the sandbox. Here it is
a :class:`~sealtune.errors.ConfigError` naming ``lora.target`` and the linear
layers the model does have (architecture names, never data). What this does
not check: whether adapting those layers is a good idea.
"""

from __future__ import annotations

from typing import Any

from sealtune.errors import ConfigError
from sealtune.train.config import ALL_LINEAR, LoraSettings, where


def linear_names(model: Any) -> list[str]:
    """The distinct last name parts of the model's ``Linear`` layers (but the output head)."""
    import torch

    out = {name.rpartition(".")[2] for name, module in model.named_modules()
           if isinstance(module, torch.nn.Linear)}
    return sorted(out - {"lm_head"})


def apply_lora(model: Any, settings: LoraSettings) -> Any:
    """Wrap ``model`` in a peft LoRA model per ``settings``, in training mode.

    Raises:
        ConfigError: a target module name matches no module of the model.
    """
    from peft import LoraConfig, get_peft_model

    if settings.target == (ALL_LINEAR,):
        targets: str | list[str] = "all-linear"
    else:
        names = [name for name, _ in model.named_modules()]
        missing = [t for t in settings.target
                   if not any(n == t or n.endswith("." + t) for n in names)]
        if missing:
            raise ConfigError(f"training config: {where('lora.target')} names module(s) the "
                              f"base model does not have: {', '.join(missing)}",
                              hint="its linear layers are " + ",".join(linear_names(model)))
        targets = list(settings.target)
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha,
                        lora_dropout=settings.dropout, target_modules=targets, bias="none",
                        task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    peft_model.train()
    return peft_model
