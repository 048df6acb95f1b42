"""``query_shift``: a caller whose prompts differ from everyone else's (an MMD test on embeddings).

Extraction campaigns and automated probing ask different things than the
users a model was deployed for. Each prompt (its first 2,000 characters)
is embedded with all-MiniLM-L6-v2, loaded through the data stage's pinned
path (:mod:`sealtune.data.screen.embedding`: the weights' SHA-256 is
checked before loading); the detector keeps, in memory only,

* a reference sample of recent traffic: a reservoir of ``reference``
  embeddings drawn uniformly from every caller's prompts;
* the last ``window`` embeddings of each caller.

Every ``test_every`` prompts of a caller whose window is full, it compares
that window with the reference prompts of *other* callers: the squared
maximum mean discrepancy (unbiased MMD², Gaussian kernel, bandwidth the
median pairwise distance; Gretton et al. 2012) and its p-value by a
permutation test (``permutations``). A p-value of ``alpha`` or less with an
MMD² of at least ``min_mmd`` is an alert; the score is the MMD².

Embedding costs 7-30 ms per prompt on a CPU, so it runs off the request
path: :meth:`QueryShift.observe` puts the prompt on a bounded queue
(``queue``; when full the prompt is skipped and counted in
:attr:`QueryShift.dropped`) and one background thread embeds in batches,
tests and raises its alerts through :attr:`DetectorContext.emit`. A prompt
waits on that queue in memory only until it is embedded.

Catches: a key sending a different kind of prompt from the rest of the
traffic (repetition attacks, enumerations, code or gibberish where users
ask questions), once its window fills. Misses: attacks phrased like normal
traffic, keys that mix attack prompts into mostly normal ones (the window
is diluted), deployments with one caller or fewer than ``min_reference``
prompts from others, and anything while the queue overflows. The model is
English-centric: Chinese prompts are embedded mostly by their characters.
"""

from __future__ import annotations

import queue
import random
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sealtune.monitor.base import Alert, Observation
from sealtune.monitor.detectors.base import (
    DetectorContext,
    DetectorSpec,
    KeyedState,
    register_detector,
)

NAME = "query_shift"
DEFAULTS: dict[str, float | int] = {
    "window": 32, "reference": 256, "min_reference": 128, "test_every": 16,
    "permutations": 400, "alpha": 0.005, "min_mmd": 0.01, "queue": 512,
}
_PROMPT_CHARS = 2000
_BATCH = 32
_STOP = object()
Embed = Callable[[list[str]], Any]


def _default_embed() -> Embed:
    """MiniLM through the data stage's loader (fails now if the model or torch is missing)."""
    from sealtune.data.screen.embedding import embed, load_model, model_dir

    load_model(model_dir())
    return lambda texts: embed(texts, max_tokens=128, batch_size=_BATCH)


def mmd_test(x: Any, y: Any, *, permutations: int, rng: random.Random) -> tuple[float, float]:
    """Unbiased MMD² of samples ``x`` and ``y`` (rows) and its permutation p-value."""
    import numpy as np

    z = np.concatenate([x, y]).astype(np.float64)
    sq = np.sum(z * z, axis=1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    off = d[~np.eye(len(z), dtype=bool)]
    width = float(np.median(off)) or 1.0
    k = np.exp(-d / width)
    np.fill_diagonal(k, 0.0)
    m, n = len(x), len(y)
    labels = np.zeros((permutations + 1, m + n))
    labels[0, :m] = 1.0
    order = list(range(m + n))
    for row in range(1, permutations + 1):
        rng.shuffle(order)
        labels[row, order[:m]] = 1.0
    kx = k @ labels.T  # (m+n) x (P+1)
    ones = 1.0 - labels
    xx = np.einsum("pi,ip->p", labels, kx)
    xy = np.einsum("pi,ip->p", ones, kx)
    yy = np.einsum("pi,ip->p", ones, k @ ones.T)
    stats = xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2 * xy / (m * n)
    p = (1 + int(np.sum(stats[1:] >= stats[0]))) / (permutations + 1)
    return float(stats[0]), p


class QueryShift:
    """Tests each caller's recent prompts against everyone else's (see the module)."""

    name = NAME

    def __init__(self, settings: Mapping[str, float], ctx: DetectorContext, *,
                 embed: Embed | None = None) -> None:
        self._ctx = ctx
        self._window = int(settings["window"])
        self._size = int(settings["reference"])
        self._min_reference = int(settings["min_reference"])
        self._every = int(settings["test_every"])
        self._permutations = int(settings["permutations"])
        self._alpha = float(settings["alpha"])
        self._min_mmd = float(settings["min_mmd"])
        self._embed = embed or _default_embed()
        self._rng = random.Random()
        self._reference: list[tuple[str, Any]] = []
        self._seen = 0
        self._keys: KeyedState[tuple[deque[Any], list[int]]] = KeyedState(
            lambda: (deque(maxlen=self._window), [0]), max_keys=ctx.max_keys)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=int(settings["queue"]))
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="sealtune-query-shift",
                                        daemon=True)
        self._thread.start()

    def observe(self, obs: Observation) -> Sequence[Alert]:
        """Queue the prompt for embedding (never blocks); alerts come later through ``emit``."""
        if obs.prompt is None:
            return []
        try:
            self._queue.put_nowait((obs.meta.caller, obs.meta.time, obs.prompt[:_PROMPT_CHARS]))
        except queue.Full:
            self.dropped += 1
        return []

    def flush(self) -> None:
        """Wait until every queued prompt is embedded and tested."""
        self._queue.join()

    def close(self) -> None:
        """Stop the thread and forget every embedding."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
        self._keys.clear()
        self._reference.clear()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                items = [b for b in batch if b is not _STOP]
                if items:
                    self._process(items)
            except Exception:
                self.dropped += len(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if any(b is _STOP for b in batch):
                return

    def _process(self, items: list[tuple[str, float, str]]) -> None:
        vectors = self._embed([text for _, _, text in items])
        for (key, now, _), vec in zip(items, vectors, strict=True):
            self._add_reference(key, vec)
            window, since = self._keys.get(key)
            window.append(vec)
            since[0] += 1
            if len(window) == self._window and since[0] >= self._every:
                since[0] = 0
                self._test(key, window, now)

    def _add_reference(self, key: str, vec: Any) -> None:
        self._seen += 1
        if len(self._reference) < self._size:
            self._reference.append((key, vec))
        else:
            slot = self._rng.randrange(self._seen)
            if slot < self._size:
                self._reference[slot] = (key, vec)

    def _test(self, key: str, window: deque[Any], now: float) -> None:
        import numpy as np

        others = [vec for owner, vec in self._reference if owner != key]
        if len(others) < self._min_reference:
            return
        stat, p = mmd_test(np.stack(list(window)), np.stack(others),
                           permutations=self._permutations, rng=self._rng)
        if p <= self._alpha and stat >= self._min_mmd:
            self._ctx.emit(Alert(detector=NAME, key_id=key, model_version=self._ctx.model_version,
                                 score=stat, threshold=self._min_mmd, time=now))


register_detector(DetectorSpec(
    NAME, QueryShift, DEFAULTS, enabled=False, at_most={"alpha": 1.0},
    summary="a key's prompts against everyone else's (MMD test on MiniLM embeddings)"))
