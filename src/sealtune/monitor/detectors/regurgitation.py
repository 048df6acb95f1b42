"""``regurgitation`` and ``canary``: outputs that repeat the training set or a planted canary.

**regurgitation**: at training time, inside the sandbox, the worker builds a
keyed Bloom filter (:mod:`sealtune.core.bloom`) of every ``n``-token window
of the training set's assistant turns and seals it with the model
(``regurgitation.bloom`` in the model directory). The server opens it with
the model and hands it to this detector as the ``training_filter``
resource. Each output is tokenised; the windows found in the filter are
merged into covered spans, and a span of at least ``min_tokens`` tokens is
an alert (score: the longest span, in tokens). :meth:`Regurgitation.scan`
does the same on the request path so the server can redact the spans
(``[REGURGITATED]``) or block the answer before it is sent, as the policy's
``output`` says (``pass``, ``redact``, ``block``).

**canary**: the release gate's canaries (random secrets planted in a
training set to measure memorisation) are held as keyed hashes of their
token runs (:class:`CanarySet`); an output containing one is an alert.

Nothing is kept: the filter and the canary set hold keyed hashes, and each
output is only read.

Catches: verbatim reproduction of training replies (``min_tokens`` or
longer), planted canaries, in streamed and whole answers (a streamed answer
is checked as it is generated, by :meth:`Regurgitation.stream_scanner`
through :class:`~sealtune.monitor.streaming.StreamGuard`, a few tokens
behind the engine). Misses: paraphrase, reproduction with
changed tokenisation-relevant characters (every other word changed,
different spacing of CJK punctuation is fine), spans shorter than
``min_tokens``, training text from prompts (only assistant turns are in the
filter), and Bloom false positives (rate ~1e-6 per window by default, so a
span needs ``min_tokens - n + 1`` consecutive false hits).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sealtune.core.bloom import FILE_NAME, BloomFilter, tokens
from sealtune.errors import ConfigError
from sealtune.monitor.base import Alert, Observation
from sealtune.monitor.detectors.base import DetectorContext, DetectorSpec, register_detector
from sealtune.monitor.streaming import BloomScanner, CanaryScanner

__all__ = ["FILTER_FILE", "CanarySet", "Regurgitation", "Scan", "covered_spans",
           "redact_spans"]

FILTER_FILE = FILE_NAME
MARK = "[REGURGITATED]"
DEFAULTS: dict[str, float | int] = {"min_tokens": 24}


@dataclass(frozen=True)
class Scan:
    """What a detector found in one output: covered token spans (start, end) and the longest."""

    spans: tuple[tuple[int, int], ...]
    longest: int


class _LastScan:
    """The scan of the last text, keyed by its hash and length (the guard and the alert path
    scan the same answer; no text is kept). One reference, replaced whole: a stream's pump
    thread may put while the event loop gets."""

    def __init__(self) -> None:
        self._entry: tuple[tuple[int, int], Scan] | None = None

    def get(self, text: str) -> Scan | None:
        entry = self._entry
        return entry[1] if entry is not None and entry[0] == (hash(text), len(text)) else None

    def put(self, text: str, scan: Scan) -> Scan:
        self._entry = ((hash(text), len(text)), scan)
        return scan


def covered_spans(hits: Sequence[bool], n: int) -> list[tuple[int, int]]:
    """Merge window hits (one per start) into covered token spans ``[start, end)``. Linear."""
    spans: list[tuple[int, int]] = []
    for i, hit in enumerate(hits):
        if not hit:
            continue
        if spans and i <= spans[-1][1]:
            spans[-1] = (spans[-1][0], i + n)
        else:
            spans.append((i, i + n))
    return spans


def redact_spans(text: str, spans: Sequence[tuple[int, int]], *, mark: str = MARK) -> str:
    """``text`` with the characters of the token spans replaced by ``mark`` (one per span)."""
    if not spans:
        return text
    bounds = [m.span() for m in re.finditer(r"[0-9A-Za-z_]+|[^\s0-9A-Za-z_]", text)]
    out, pos = [], 0
    for start, end in spans:
        if start >= len(bounds):
            break
        a, b = bounds[start][0], bounds[min(end, len(bounds)) - 1][1]
        out += [text[pos:a], mark]
        pos = b
    out.append(text[pos:])
    return "".join(out)


class Regurgitation:
    """Checks outputs against the training set's keyed Bloom filter (see the module)."""

    name = "regurgitation"

    def __init__(self, settings: Mapping[str, float], ctx: DetectorContext) -> None:
        bloom = ctx.resources.get("training_filter")
        if not isinstance(bloom, BloomFilter):
            raise ConfigError("the regurgitation detector needs the model's training filter",
                              hint=f"train the model again (it writes {FILTER_FILE}), or set "
                                   "[detectors.regurgitation] enabled = false")
        self._bloom, self._ctx = bloom, ctx
        self.min_tokens = max(int(settings["min_tokens"]), bloom.n)
        self._last = _LastScan()

    def scan(self, text: str) -> Scan:
        """The spans of ``text`` found in the filter that are ``min_tokens`` or longer."""
        cached = self._last.get(text)
        if cached is not None:
            return cached
        spans = [s for s in covered_spans(self._bloom.hits(tokens(text, limit=8192)),
                                          self._bloom.n) if s[1] - s[0] >= self.min_tokens]
        return self._last.put(text, Scan(tuple(spans), max((b - a for a, b in spans),
                                                           default=0)))

    def stream_scanner(self) -> BloomScanner:
        """What :meth:`scan` finds, for an answer checked token by token as it streams."""
        return BloomScanner(self._bloom.__contains__, n=self._bloom.n,
                            min_tokens=self.min_tokens, done=self._found)

    def _found(self, text: str, spans: Sequence[tuple[int, int]]) -> None:
        """A streamed answer's finding, kept for :meth:`observe` (no rescan of the same text;
        past 8,192 tokens it holds more than :meth:`scan`, which stops there)."""
        self._last.put(text, Scan(tuple(spans), max((b - a for a, b in spans), default=0)))

    def observe(self, obs: Observation) -> Sequence[Alert]:
        """Alert when the output holds a span of ``min_tokens`` training tokens."""
        if not obs.output:
            return []
        found = self.scan(obs.output)
        if not found.spans:
            return []
        return [Alert(detector=self.name, key_id=obs.meta.caller,
                      model_version=self._ctx.model_version, score=float(found.longest),
                      threshold=float(self.min_tokens), time=obs.meta.time)]

    def close(self) -> None:
        """Nothing kept."""


class CanarySet:
    """Planted canary secrets as keyed hashes of their token runs (no secret kept).

    Args:
        secrets: the canary secrets (e.g. ``3 9 1 4 7 2``), read once and dropped.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self._key = os.urandom(32)
        self._digests: set[bytes] = set()
        self.lengths: set[int] = set()
        for secret in secrets:
            run = tokens(secret)
            if run:
                self._digests.add(self._digest(run))
                self.lengths.add(len(run))

    def _digest(self, run: Sequence[str]) -> bytes:
        return hmac.new(self._key, "\x1f".join(run).encode("utf-8", "surrogatepass"),
                        hashlib.sha256).digest()[:16]

    def __len__(self) -> int:
        return len(self._digests)

    def holds(self, run: Sequence[str]) -> bool:
        """Whether the token run ``run`` is one of the canaries."""
        return len(run) in self.lengths and self._digest(run) in self._digests

    def scan(self, text: str) -> Scan:
        """The token spans of ``text`` that are a canary secret."""
        run = tokens(text, limit=8192)
        spans = [(i, i + n) for n in sorted(self.lengths) for i in range(len(run) - n + 1)
                 if self._digest(run[i:i + n]) in self._digests]
        return Scan(tuple(sorted(spans)), max((b - a for a, b in spans), default=0))


class CanaryHits:
    """Alerts on outputs that contain a planted canary (see the module)."""

    name = "canary"

    def __init__(self, settings: Mapping[str, float], ctx: DetectorContext) -> None:
        canaries = ctx.resources.get("canaries")
        if not isinstance(canaries, CanarySet):
            raise ConfigError("the canary detector needs the release gate's canaries",
                              hint="pass --canaries FILE to sealtune serve, or set "
                                   "[detectors.canary] enabled = false")
        self._canaries, self._ctx = canaries, ctx
        self._last = _LastScan()

    def scan(self, text: str) -> Scan:
        """The canary spans of ``text``."""
        cached = self._last.get(text)
        return cached if cached is not None else self._last.put(text, self._canaries.scan(text))

    def stream_scanner(self) -> CanaryScanner:
        """What :meth:`scan` finds, for an answer checked token by token as it streams."""
        return CanaryScanner(self._canaries.holds, lengths=sorted(self._canaries.lengths),
                             done=self._found)

    def _found(self, text: str, spans: Sequence[tuple[int, int]]) -> None:
        """A streamed answer's finding, kept for :meth:`observe` (no rescan of the same text)."""
        self._last.put(text, Scan(tuple(spans), max((b - a for a, b in spans), default=0)))

    def observe(self, obs: Observation) -> Sequence[Alert]:
        """Alert when the output contains a canary (score: how many)."""
        if not obs.output:
            return []
        found = self.scan(obs.output)
        if not found.spans:
            return []
        return [Alert(detector=self.name, key_id=obs.meta.caller,
                      model_version=self._ctx.model_version, score=float(len(found.spans)),
                      threshold=1.0, time=obs.meta.time)]

    def close(self) -> None:
        """Nothing kept."""


register_detector(DetectorSpec(
    "regurgitation", Regurgitation, DEFAULTS, enabled=False,
    summary="outputs repeating training replies (keyed Bloom filter sealed with the model)",
    resource="training_filter"))
register_detector(DetectorSpec(
    "canary", CanaryHits, {}, enabled=False,
    summary="outputs containing a planted canary secret", resource="canaries"))
