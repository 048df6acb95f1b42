"""Per-record membership scores: mean loss and Min-K%++ over the assistant tokens.

Records are encoded exactly as training encodes them (chat template,
assistant-only labels, ``max_length``), and for each the model gives:

* ``loss``: the mean token cross-entropy over the assistant tokens (nats);
  the loss attack (Yeom et al. 2018) scores ``-loss``;
* ``minkpp``: Min-K%++ (Zhang et al., "Min-K%++: Improved Baseline for
  Detecting Pre-Training Data from Large Language Models", 2024): each
  target token's log-probability is standardised by the mean and standard
  deviation of the log-probability under the model's own next-token
  distribution at that position, ``(log p(x_t) - μ_t) / σ_t``; the score is
  the mean of the lowest ``k`` fraction of these over the assistant tokens.

The release gate calibrates both with the base model as the reference
(the difference between the model's and the base's score), which removes
what is easy or hard for any model and keeps what this fine-tuning added.

What these are: cheap black-box attack scores, as strong as the literature's
baselines, no stronger. What they are not: the strongest attack (shadow
models, LiRA with many references, extraction by generation); a low AUC
bounds these scores' success only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sealtune.data.records import Record

FloatArray = npt.NDArray[np.float64]


def record_scores(model: Any, tokenizer: Any, records: Sequence[Record], *, max_length: int,
                  k: float = 0.2, batch_size: int = 16) -> tuple[FloatArray, FloatArray]:
    """``(loss, minkpp)`` of each record (NaN for a record with no assistant token left)."""
    import torch

    from sealtune.train.data import IGNORE_INDEX, Collator, encode_records

    data = encode_records(records, tokenizer, max_length=max_length)
    examples = [(torch.tensor(e.input_ids), torch.tensor(e.labels)) for e in data.examples]
    collate = Collator(int(tokenizer.pad_token_id))
    losses = np.full(len(examples), math.nan)
    minkpp = np.full(len(examples), math.nan)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            ids, mask, labels = collate(examples[start:start + batch_size])
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask)
                                     .logits[:, :-1, :].double(), dim=-1)
            targets = labels[:, 1:]
            for row in range(ids.shape[0]):
                keep = targets[row] != IGNORE_INDEX
                if not bool(keep.any()):
                    continue
                loss, score = _one(logp[row][keep], targets[row][keep], k)
                losses[start + row], minkpp[start + row] = loss, score
    return losses, minkpp


def _one(logp: Any, targets: Any, k: float) -> tuple[float, float]:
    import torch

    token = logp.gather(-1, targets[:, None])[:, 0]
    probs = logp.exp()
    mu = (probs * logp).sum(-1)
    sigma = ((probs * logp.pow(2)).sum(-1) - mu.pow(2)).clamp_min(1e-12).sqrt()
    z = (token - mu) / sigma
    count = max(1, math.ceil(k * z.numel()))
    low = torch.topk(z, count, largest=False).values
    return float(-token.mean()), float(low.mean())
