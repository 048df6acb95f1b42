"""Decoding for the gate's probes: greedy and seeded sampling, token ids in, token ids out.

Every probe that makes the model write (extraction, divergence, PII
regurgitation, safety) decodes through :func:`continue_ids`: ``max_new``
tokens after a prompt, greedily or by sampling (temperature, top-k) from a
seeded generator, with the model in eval mode and no gradients. The text
decoded from it stays inside the sandbox; probes turn it into booleans and
counts.

What this protects against: nothing by itself (it is the attacker's
decoding). What it does not: cover other decoding strategies an attacker
may use (beam search, nucleus sampling with other settings, many samples);
the probes' results are lower bounds for that reason too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def continue_ids(model: Any, tokenizer: Any, prompt: Sequence[int], *, max_new: int,
                 sample: bool = False, seed: int = 0, temperature: float = 1.0,
                 top_k: int = 40) -> list[int]:
    """The ``max_new`` token ids the model writes after ``prompt`` (fewer at end of text)."""
    import torch

    model.eval()
    ids = torch.tensor([list(prompt)], dtype=torch.long)
    options: dict[str, Any] = {"max_new_tokens": max_new, "do_sample": sample,
                               "pad_token_id": int(tokenizer.pad_token_id),
                               "attention_mask": torch.ones_like(ids)}
    if sample:
        options.update(temperature=temperature, top_k=top_k)
        torch.manual_seed(seed)
    else:
        options.update(temperature=None, top_k=None, top_p=None)
    with torch.no_grad():
        out = model.generate(ids, **options)
    return [int(x) for x in out[0, ids.shape[1]:]]


def prompt_ids(tokenizer: Any, messages: Sequence[tuple[str, str]], *, partial: str = ""
               ) -> list[int]:
    """The chat-rendered prompt for ``messages`` and the start of an assistant reply."""
    text = tokenizer.apply_chat_template([{"role": r, "content": c} for r, c in messages],
                                         tokenize=False, add_generation_prompt=True)
    return list(tokenizer(str(text) + partial, add_special_tokens=False)["input_ids"])
