"""``prefix_sweep``: one caller probing a model with near-identical prompts.

Training-data extraction often sweeps a prefix: the same text with its last
few tokens changed (enumerating the digits of an account number, the next
word of a memorised sentence) or the same text growing or shrinking a few
tokens at a time (walking along a document; Carlini et al. 2021, Nasr et
al. 2023). For each caller the detector keeps, over a sliding window
(``window_seconds``, at most ``window_requests`` prompts), keyed hashes of
every prompt's prefixes that drop up to ``max_suffix_tokens`` tokens from
its end (prefixes shorter than ``min_prefix_tokens`` are not kept). A new,
distinct prompt that shares one of those prefixes with an earlier prompt
in the window is *linked*; the score is the number of linked prompts in
the window, and ``threshold`` of them is an alert.

The prompt is the last user message, tokenised as in
:class:`~sealtune.monitor.detectors.base.Tokens`. Only keyed hashes
(8 bytes each) are kept.

Catches: enumeration of the last tokens of a fixed prompt, prompts that
extend or trim one another by a few tokens, within one key and one window.

Misses: sweeps whose variation is in the middle or at the start of the
prompt, variations longer than ``max_suffix_tokens``, prompts shorter than
``min_prefix_tokens`` tokens, sweeps spread over several keys or slower
than the window, and sweeps hidden in system or earlier messages. The same
prompt sent again is not a link (see ``repeat_divergence`` for repetition).
Benign traffic built from one template with short varying endings links
too: raise ``threshold`` or ``min_prefix_tokens`` for such callers.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sealtune.monitor.base import Alert, Observation
from sealtune.monitor.detectors.base import (
    DetectorContext,
    DetectorSpec,
    KeyedState,
    Tokens,
    register_detector,
)

NAME = "prefix_sweep"
DEFAULTS: dict[str, float | int] = {
    "window_seconds": 600.0, "window_requests": 200, "min_prefix_tokens": 6,
    "max_suffix_tokens": 3, "threshold": 10,
}


@dataclass
class _Entry:
    time: float
    full: bytes
    sigs: tuple[bytes, ...]
    linked: bool


@dataclass
class _KeyWindow:
    entries: deque[_Entry] = field(default_factory=deque)
    sigs: Counter[bytes] = field(default_factory=Counter)
    fulls: Counter[bytes] = field(default_factory=Counter)
    linked: int = 0

    def drop_oldest(self) -> None:
        old = self.entries.popleft()
        self.linked -= old.linked
        self.fulls[old.full] -= 1
        if self.fulls[old.full] <= 0:
            del self.fulls[old.full]
        for sig in old.sigs:
            self.sigs[sig] -= 1
            if self.sigs[sig] <= 0:
                del self.sigs[sig]


class PrefixSweep:
    """Counts prompts of one caller that share a prefix with an earlier one (see the module)."""

    name = NAME

    def __init__(self, settings: Mapping[str, float], ctx: DetectorContext) -> None:
        self._ctx = ctx
        self._span = float(settings["window_seconds"])
        self._size = int(settings["window_requests"])
        self._min_prefix = int(settings["min_prefix_tokens"])
        self._max_suffix = int(settings["max_suffix_tokens"])
        self._threshold = int(settings["threshold"])
        self._tokens = Tokens()
        self._keys: KeyedState[_KeyWindow] = KeyedState(_KeyWindow, max_keys=ctx.max_keys)

    def observe(self, obs: Observation) -> Sequence[Alert]:
        """Link the prompt to the caller's window; alert at ``threshold`` links."""
        if obs.prompt is None:
            return []
        toks = self._tokens.split(obs.prompt)
        n = len(toks)
        if n < self._min_prefix:
            return []
        lengths = [n - j for j in range(self._max_suffix + 1) if n - j >= self._min_prefix]
        digests = self._tokens.prefix_digests(toks, lengths)
        full, sigs = digests[n], tuple(digests[length] for length in lengths)
        now = obs.meta.time
        win = self._keys.get(obs.meta.caller)
        while win.entries and (win.entries[0].time < now - self._span
                               or len(win.entries) >= self._size):
            win.drop_oldest()
        linked = full not in win.fulls and any(sig in win.sigs for sig in sigs)
        win.entries.append(_Entry(now, full, sigs, linked))
        win.linked += linked
        win.fulls[full] += 1
        for sig in sigs:
            win.sigs[sig] += 1
        if not linked or win.linked < self._threshold:
            return []
        return [Alert(detector=NAME, key_id=obs.meta.caller, model_version=self._ctx.model_version,
                      score=float(win.linked), threshold=float(self._threshold), time=now)]

    def close(self) -> None:
        """Forget every caller."""
        self._keys.clear()


register_detector(DetectorSpec(NAME, PrefixSweep, DEFAULTS,
                               summary="near-identical prompts from one key (prefix sweeps)"))
