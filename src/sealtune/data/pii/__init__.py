"""PII and secret detection for the data stage.

The public surface::

    from sealtune.data.pii import analyze, Analyzer, Entity

    analyze("客户张伟，手机１３８ ００１３ ８０００")
    # [Entity(type='PERSON', start=2, end=4, ...), Entity(type='PHONE', start=8, end=21, ...)]

    analyzer = Analyzer.from_policy(policy_dict, source="policy.toml", ner=False)
    analyzer.analyze(text, types={"CN_ID", "BANK_CARD"})

:class:`Analyzer` normalises the text once (NFKC, see
:mod:`~sealtune.data.pii.normalize`), runs every selected recognizer on it,
maps spans back to offsets in the original string and drops overlapping
claims (the higher score, then the longer span, wins). Recognizers come from
the :data:`RECOGNIZERS` registry (pattern tier by default, the model-based
NER tier on request) plus any declared in a policy (:mod:`.custom`).

What this protects against: PII and credentials in training text reaching a
model (and thus its outputs) without being redacted. What it does not: it
finds what its validators and patterns describe; names and addresses with
no cue are missed by the pattern tier, and any detector can be evaded by
spelling data out in words. Each recognizer's module says what it catches
and what it does not.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sealtune.data.pii import address, bank_card, cn_id, email, ip, passport, person, phone, secrets
from sealtune.data.pii._text import resolve_overlaps
from sealtune.data.pii.base import (
    ENTITY_TYPES,
    PATTERN_TYPES,
    RECOGNIZERS,
    Entity,
    Recognizer,
    RecognizerSpec,
    register_recognizer,
)
from sealtune.data.pii.custom import VALIDATORS, PatternRecognizer, register_validator
from sealtune.data.pii.normalize import Normalized, normalize_with_starts
from sealtune.errors import ConfigError, UsageError

__all__ = [
    "ENTITY_TYPES", "PATTERN_TYPES", "RECOGNIZERS", "VALIDATORS", "Analyzer", "Entity",
    "PatternRecognizer", "Recognizer", "RecognizerSpec", "analyze", "register_recognizer",
    "register_validator",
]

_BUILTIN_MODULES = (address, bank_card, cn_id, email, ip, passport, person, phone, secrets)
_POLICY_KEYS = {"types", "recognizers", "ner", "min_score"}
# Remembered answers (see Analyzer.analyze): at most this many texts of at
# most this many characters, about 2 MB at worst.
_MEMO_TEXTS = 256
_MEMO_CHARS = 2048


def _load_ner() -> None:
    from sealtune.data.pii import ner  # noqa: F401  (registers the NER tier)


class Analyzer:
    """Runs recognizers over text and returns non-overlapping entities.

    Args:
        types: entity types to report (default: every type the recognizers emit).
        ner: also build the model-based NER tier (needs spaCy / jieba installed).
        extra: more recognizers, e.g. from a policy.
        recognizers: use exactly these instead of the registry.
        min_score: drop entities scoring below this.

    Raises:
        UsageError: ``types`` names a type no recognizer emits.
        ConfigError: the NER tier is requested but its packages are missing.
    """

    def __init__(self, *, types: Iterable[str] | None = None, ner: bool = False,
                 extra: Sequence[Recognizer] = (), recognizers: Sequence[Recognizer] | None = None,
                 min_score: float = 0.0) -> None:
        if recognizers is None:
            if ner:
                _load_ner()
            tiers = {"pattern", "ner"} if ner else {"pattern"}
            recognizers = [spec.factory() for spec in RECOGNIZERS.values() if spec.tier in tiers]
        self.recognizers: tuple[Recognizer, ...] = (*recognizers, *extra)
        self.known_types = frozenset(t for r in self.recognizers for t in r.entity_types)
        self.types = self._check_types(types)
        self.min_score = min_score
        self._active = tuple(r for r in self.recognizers if r.entity_types & self.types)
        self._filtered = self.types != self.known_types
        self._memo: dict[str, tuple[Entity, ...]] = {}

    def _check_types(self, types: Iterable[str] | None) -> frozenset[str]:
        if types is None:
            return self.known_types
        wanted = frozenset(types)
        unknown = wanted - self.known_types
        if unknown:
            raise UsageError(f"unknown entity type(s) {sorted(unknown)}",
                             hint=f"known types: {', '.join(sorted(self.known_types))}")
        return wanted

    @classmethod
    def from_policy(cls, policy: Mapping[str, Any], *, source: str = "policy",
                    ner: bool | None = None) -> Analyzer:
        """Build from a policy's ``[pii]`` table (types, recognizers, ner, min_score).

        Raises:
            ConfigError: an unknown key or an invalid recognizer, naming ``source``.
        """
        section = policy.get("pii", {})
        if not isinstance(section, Mapping):
            raise ConfigError(f"{source}: [pii] must be a table")
        unknown = set(section) - _POLICY_KEYS
        if unknown:
            raise ConfigError(f"{source}: unknown keys in [pii]: {sorted(unknown)}",
                              hint=f"allowed: {sorted(_POLICY_KEYS)}")
        raw = section.get("recognizers", [])
        if not isinstance(raw, list):
            raise ConfigError(f"{source}: pii.recognizers must be an array of tables")
        extra = [PatternRecognizer.from_mapping(item, where=f"{source}: pii.recognizers[{i}]")
                 if isinstance(item, Mapping) else _not_table(source, i)
                 for i, item in enumerate(raw)]
        names = [r.name for r in extra]
        clash = {n for n in names if names.count(n) > 1 or n in RECOGNIZERS}
        if clash:
            raise ConfigError(f"{source}: recognizer name(s) {sorted(clash)} already used")
        use_ner = section.get("ner", False) if ner is None else ner
        min_score = section.get("min_score", 0.0)
        if not isinstance(use_ner, bool) or not isinstance(min_score, int | float):
            raise ConfigError(f"{source}: pii.ner must be a boolean, pii.min_score a number")
        types = section.get("types")
        if types is not None and not (isinstance(types, list) and
                                      all(isinstance(t, str) for t in types)):
            raise ConfigError(f"{source}: pii.types must be a list of type names")
        try:
            return cls(types=types, ner=use_ner, extra=extra, min_score=float(min_score))
        except UsageError as exc:
            raise ConfigError(f"{source}: pii.types: {exc.message}", hint=exc.hint) from None

    def analyze(self, text: str, *, types: Iterable[str] | None = None) -> list[Entity]:
        """Entities in ``text`` with offsets into ``text`` itself, sorted by start.

        The answers for the last few hundred short texts are remembered: a
        chat data set repeats its system prompt in every record.
        """
        if types is not None:
            wanted = self._check_types(types)
            return self._analyze(text, wanted, tuple(r for r in self._active
                                                     if r.entity_types & wanted), filtered=True)
        if len(text) > _MEMO_CHARS:
            return self._analyze(text, self.types, self._active, filtered=self._filtered)
        hit = self._memo.get(text)
        if hit is None:
            hit = self._memo[text] = tuple(self._analyze(text, self.types, self._active,
                                                         filtered=self._filtered))
            if len(self._memo) > _MEMO_TEXTS:
                self._memo.clear()  # a new generation: bounded, and no lock needed
                self._memo[text] = hit
        return list(hit)

    def _analyze(self, text: str, wanted: frozenset[str], active: tuple[Recognizer, ...], *,
                 filtered: bool) -> list[Entity]:
        seen, starts = normalize_with_starts(text)
        found: list[Entity] = []
        for recognizer in active:
            found += recognizer.analyze(seen)
        if self.min_score > 0 or filtered:
            found = [e for e in found if e.type in wanted and e.score >= self.min_score]
        if starts is not None:
            norm = Normalized(seen, len(text), starts)
            found = [Entity(e.type, *norm.to_original(e.start, e.end), e.score, e.recognizer)
                     for e in found]
        return resolve_overlaps(found)


def _not_table(source: str, index: int) -> PatternRecognizer:
    raise ConfigError(f"{source}: pii.recognizers[{index}] must be a table")


_default: Analyzer | None = None
_default_lock = threading.Lock()


def analyze(text: str, *, types: Iterable[str] | None = None) -> list[Entity]:
    """Detect PII and secrets in ``text`` with the default (pattern-tier) analyzer."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Analyzer()
    return _default.analyze(text, types=types)
