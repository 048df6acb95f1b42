"""The Detector port, its registry, and what detectors share (bounded per-key state, keyed hashes).

A detector is built from its settings (numbers, checked against the
defaults it declares in its :class:`DetectorSpec`) and a
:class:`DetectorContext`; it :meth:`~Detector.observe`\\ s every finished
request and returns the alerts it raises now. A detector that works off the
request path (the embedding-shift test) returns nothing from ``observe``
and hands its alerts to :attr:`DetectorContext.emit` later. Detectors
register by name in :data:`DETECTORS`, which refuses duplicates; the
monitor policy names them.

Rules every detector here follows: it keeps no text. What it keeps about a
prompt is a keyed hash (BLAKE2b under a random key made when the detector
is built and held in memory only, so the hashes cannot be matched against a
dictionary of guesses by anyone who reads them), counts and, for the
embedding test, embeddings, all in memory and bounded: at most
``max_keys`` callers (the least recently seen is forgotten) and a window
per caller.

What this protects against: text retained by detectors, and memory growth
from many callers. What it does not: an attacker who spreads the work over
more keys than a detector tracks, or over time longer than its window.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from sealtune.monitor.base import Alert, Observation, Registry

__all__ = ["DETECTORS", "Detector", "DetectorContext", "DetectorSpec", "KeyedState",
           "Tokens", "register_detector"]

S = TypeVar("S")
_TOKEN = re.compile(r"[0-9A-Za-z_]+|[^\s0-9A-Za-z_]")


@runtime_checkable
class Detector(Protocol):
    """Watches finished requests; keeps no text."""

    name: str

    def observe(self, obs: Observation) -> Sequence[Alert]:
        """Take one finished request; return the alerts it raises now."""
        ...

    def close(self) -> None:
        """Stop background work and forget everything."""
        ...


@dataclass(frozen=True)
class DetectorContext:
    """What a detector is given besides its settings.

    Attributes:
        model_version: the model version served (for alerts).
        emit: raise an alert from off the request path (thread-safe).
        max_keys: the most callers whose state a detector keeps.
        resources: what the server opened for detectors that need more than
            settings, by name: ``training_filter`` (a
            :class:`~sealtune.core.bloom.BloomFilter` sealed with the model),
            ``canaries`` (a :class:`~sealtune.monitor.detectors.regurgitation.CanarySet`).
    """

    model_version: str
    emit: Callable[[Alert], None]
    max_keys: int = 10_000
    resources: Mapping[str, Any] = field(default_factory=dict)


DetectorFactory = Callable[[Mapping[str, float], DetectorContext], Detector]


@dataclass(frozen=True)
class DetectorSpec:
    """A registered detector: how to build it and which settings it takes.

    Attributes:
        name: the registered name (what the policy and the alerts say).
        factory: builds the detector from validated settings.
        defaults: every setting it takes, with its default; an integer
            default means the setting must be an integer.
        enabled: whether the default policy turns it on.
        summary: one line for people.
        at_most: upper bounds of settings that have one (shares, p-values).
        resource: the model resource it needs (``training_filter``, ``canaries``), or
            None: a detector with one is the served model version's (rebuilt when the
            server swaps versions), and the default policy turns it on when the
            resource is there.
    """

    name: str
    factory: DetectorFactory
    defaults: Mapping[str, float | int] = field(default_factory=dict)
    enabled: bool = True
    summary: str = ""
    at_most: Mapping[str, float] = field(default_factory=dict)
    resource: str | None = None


#: Detectors by name; :func:`register_detector` refuses duplicates.
DETECTORS: Registry[DetectorSpec] = Registry("detector")


def register_detector(spec: DetectorSpec) -> None:
    """Register a detector by its name.

    Raises:
        ValueError: the name is taken or not a lower-case identifier.
    """
    DETECTORS.register(spec.name, spec)


class Tokens:
    """Tokenises text the same way for every detector, and hashes token runs under a private key.

    A token is a run of ASCII letters, digits and ``_`` (lower-cased), or any
    other single non-space character: CJK text becomes one token per
    character. Linear in the text.
    """

    def __init__(self) -> None:
        self._key = os.urandom(32)

    @staticmethod
    def split(text: str, *, limit: int = 4096) -> list[str]:
        """The first ``limit`` tokens of ``text``, lower-cased."""
        out: list[str] = []
        for match in _TOKEN.finditer(text):
            out.append(match.group().lower())
            if len(out) >= limit:
                break
        return out

    def digest(self, tokens: Sequence[str]) -> bytes:
        """An 8-byte keyed hash of a token run (equal runs, equal digests, in this process)."""
        return self.prefix_digests(tokens, [len(tokens)])[len(tokens)]

    def prefix_digests(self, tokens: Sequence[str], lengths: Sequence[int]) -> dict[int, bytes]:
        """Keyed hashes of ``tokens[:n]`` for each ``n`` in ``lengths``, in one pass."""
        want = set(lengths)
        h = hashlib.blake2b(key=self._key, digest_size=8)
        out: dict[int, bytes] = {}
        if 0 in want:
            out[0] = h.copy().digest()
        for i, tok in enumerate(tokens[:max(want, default=0)], start=1):
            h.update(tok.encode("utf-8", "surrogatepass"))
            h.update(b"\x1f")
            if i in want:
                out[i] = h.copy().digest()
        return out


class KeyedState(Generic[S]):
    """Per-caller state, at most ``max_keys`` callers; the least recently seen is dropped.

    Args:
        make: builds the state of a caller seen for the first time.
        max_keys: how many callers to keep.
    """

    def __init__(self, make: Callable[[], S], *, max_keys: int) -> None:
        self._make, self._max = make, max(1, max_keys)
        self._items: OrderedDict[str, S] = OrderedDict()

    def get(self, key: str) -> S:
        """The caller's state (created if new; marks it most recently seen)."""
        state = self._items.get(key)
        if state is None:
            state = self._items[key] = self._make()
            if len(self._items) > self._max:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        return state

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Forget every caller."""
        self._items.clear()
