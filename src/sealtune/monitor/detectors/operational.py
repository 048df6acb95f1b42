"""Operational anomalies per key and per model: ``error_rate``, ``latency``, ``volume``.

* ``error_rate``: over a sliding window (``window_seconds``), the share of a
  caller's requests answered 4xx or 5xx, and the share of all requests
  answered 5xx (the model scope, key id ``-``); at least ``min_requests`` in
  the window and a share of ``threshold`` or more is an alert. A caller
  hammering with bad credentials shows here under ``anonymous`` or its key.
* ``latency``: the median latency of the last ``recent`` successful chat
  completions against the median of the last ``baseline`` ones (model
  scope); ``factor`` times the baseline and at least ``min_seconds``, after
  ``warmup`` completions, is an alert.
* ``volume``: a caller's (and the model's) requests per window of
  ``window_seconds`` against an exponentially weighted average of its
  earlier windows; ``factor`` times that average and at least
  ``min_requests`` is an alert (a new caller is held to ``min_requests``).

Nothing is kept but times, statuses, latencies and counts.

Catches: error storms, brute-forcing, a slow or failing engine, sudden
traffic from one key (scraping, a runaway client). Misses: slow drifts
(the baselines follow them), anomalies smaller than the factors, and
volume spread over many keys (the model scope sees the sum).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sealtune.monitor.base import MODEL_SCOPE, Alert, Observation
from sealtune.monitor.detectors.base import (
    DetectorContext,
    DetectorSpec,
    KeyedState,
    register_detector,
)

CHAT = "/v1/chat/completions"


def _alert(ctx: DetectorContext, name: str, key: str, score: float, threshold: float,
           now: float) -> Alert:
    return Alert(detector=name, key_id=key, model_version=ctx.model_version, score=score,
                 threshold=threshold, time=now)


@dataclass
class _Rate:
    entries: deque[tuple[float, bool]] = field(default_factory=deque)
    failed: int = 0


class ErrorRate:
    """Share of failed requests per caller (4xx/5xx) and for the model (5xx)."""

    name = "error_rate"

    def __init__(self, settings: Mapping[str, float], ctx: DetectorContext) -> None:
        self._ctx = ctx
        self._span = float(settings["window_seconds"])
        self._min = int(settings["min_requests"])
        self._threshold = float(settings["threshold"])
        self._keys: KeyedState[_Rate] = KeyedState(_Rate, max_keys=ctx.max_keys)
        self._model = _Rate()

    def _add(self, rate: _Rate, now: float, failed: bool) -> float | None:
        while rate.entries and rate.entries[0][0] < now - self._span:
            rate.failed -= rate.entries.popleft()[1]
        rate.entries.append((now, failed))
        rate.failed += failed
        share = rate.failed / len(rate.entries)
        return share if failed and len(rate.entries) >= self._min and \
            share >= self._threshold else None

    def observe(self, obs: Observation) -> Sequence[Alert]:
        """Count the request in its caller's and the model's windows."""
        meta, out = obs.meta, []
        key_share = self._add(self._keys.get(meta.caller), meta.time, meta.status >= 400)
        if key_share is not None:
            out.append(_alert(self._ctx, self.name, meta.caller, key_share, self._threshold,
                              meta.time))
        model_share = self._add(self._model, meta.time, meta.status >= 500)
        if model_share is not None:
            out.append(_alert(self._ctx, self.name, MODEL_SCOPE, model_share, self._threshold,
                              meta.time))
        return out

    def close(self) -> None:
        """Forget everything."""
        self._keys.clear()
        self._model = _Rate()


class Latency:
    """Recent median latency of chat completions against the longer-run median (model scope)."""

    name = "latency"

    def __init__(self, settings: Mapping[str, float], ctx: DetectorContext) -> None:
        self._ctx = ctx
        self._factor = float(settings["factor"])
        self._min_seconds = float(settings["min_seconds"])
        self._warmup = int(settings["warmup"])
        self._recent: deque[float] = deque(maxlen=int(settings["recent"]))
        self._baseline: deque[float] = deque(maxlen=int(settings["baseline"]))
        self._seen = 0

    def observe(self, obs: Observation) -> Sequence[Alert]:
        """Add a successful completion's latency; compare the medians."""
        meta = obs.meta
        if meta.route != CHAT or meta.status != 200:
            return []
        self._seen += 1
        if len(self._recent) == self._recent.maxlen:
            self._baseline.append(self._recent[0])
        self._recent.append(meta.latency)
        if self._seen < self._warmup or len(self._baseline) < self._warmup // 2:
            return []
        now, base = statistics.median(self._recent), statistics.median(self._baseline)
        limit = max(self._min_seconds, self._factor * base)
        if now < limit:
            return []
        return [_alert(self._ctx, self.name, MODEL_SCOPE, now, limit, meta.time)]

    def close(self) -> None:
        """Forget everything."""
        self._recent.clear()
        self._baseline.clear()


@dataclass
class _Volume:
    start: float = -1.0
    count: int = 0
    average: float = 0.0
    windows: int = 0


class Volume:
    """Requests per window against an EWMA of earlier windows, per caller and for the model."""

    name = "volume"

    def __init__(self, settings: Mapping[str, float], ctx: DetectorContext) -> None:
        self._ctx = ctx
        self._span = float(settings["window_seconds"])
        self._factor = float(settings["factor"])
        self._min = int(settings["min_requests"])
        self._keys: KeyedState[_Volume] = KeyedState(_Volume, max_keys=ctx.max_keys)
        self._model = _Volume()

    def _add(self, vol: _Volume, now: float) -> float | None:
        if vol.start < 0:
            vol.start = now
        elapsed = int((now - vol.start) // self._span)
        if elapsed > 0:  # close the window, and any empty ones after it
            vol.average = 0.7 * vol.average + 0.3 * vol.count
            vol.average *= 0.7 ** min(elapsed - 1, 64)
            vol.windows += elapsed
            vol.start += elapsed * self._span
            vol.count = 0
        vol.count += 1
        limit = max(float(self._min), self._factor * vol.average)
        return limit if vol.count == math.ceil(limit) else None  # once per window

    def observe(self, obs: Observation) -> Sequence[Alert]:
        """Count the request in its caller's and the model's current windows."""
        meta, out = obs.meta, []
        for key, vol in ((meta.caller, self._keys.get(meta.caller)),
                         (MODEL_SCOPE, self._model)):
            limit = self._add(vol, meta.time)
            if limit is not None:
                out.append(_alert(self._ctx, self.name, key, float(vol.count), limit,
                                  meta.time))
        return out

    def close(self) -> None:
        """Forget everything."""
        self._keys.clear()
        self._model = _Volume()


_WINDOW = {"window_seconds": 60.0}
register_detector(DetectorSpec(
    "error_rate", ErrorRate, {**_WINDOW, "min_requests": 20, "threshold": 0.5},
    at_most={"threshold": 1.0},
    summary="share of failed requests per key (4xx/5xx) and for the model (5xx)"))
register_detector(DetectorSpec(
    "latency", Latency, {"recent": 20, "baseline": 500, "warmup": 100, "factor": 5.0,
                         "min_seconds": 1.0},
    summary="recent median latency of completions against the longer-run median"))
register_detector(DetectorSpec(
    "volume", Volume, {**_WINDOW, "min_requests": 300, "factor": 10.0},
    summary="requests per window per key and for the model, against their average"))
