"""The Recognizer port of PII and secret detection, and its registry.

A recognizer finds entities of one or more types in a text and returns them
as :class:`Entity` spans (Python string indices). Recognizers are handed the
NFKC-normalised text (see :mod:`sealtune.data.pii.normalize`); the
:class:`~sealtune.data.pii.Analyzer` maps spans back to the original text,
resolves overlaps and filters by type, so a recognizer only has to be right
about its own family.

Recognizers register by name in :data:`RECOGNIZERS`; a duplicate name is
refused, so a plug-in cannot silently replace a built-in detector. Entries
are factories: nothing heavy (a spaCy pipeline, jieba's dictionary) is
loaded until an analyzer that uses it is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

#: The built-in entity types, exactly as the policy and the CLI name them.
ENTITY_TYPES: tuple[str, ...] = (
    "CN_ID",
    "PHONE",
    "BANK_CARD",
    "EMAIL",
    "IP_ADDRESS",
    "PERSON",
    "ADDRESS",
    "PASSPORT",
    "SECRET",
)

#: Types found by the pattern tier with validators (the "pattern types").
PATTERN_TYPES: tuple[str, ...] = (
    "CN_ID", "PHONE", "BANK_CARD", "EMAIL", "IP_ADDRESS", "PASSPORT", "SECRET",
)

Tier = Literal["pattern", "ner"]


@dataclass(frozen=True, slots=True)
class Entity:
    """One detected span.

    Attributes:
        type: the entity type, e.g. ``CN_ID`` or a custom type name.
        start: start index into the text (Python ``str`` index).
        end: end index (exclusive).
        score: confidence in [0, 1]; validated matches score higher.
        recognizer: the registry name of the recognizer that found it.
    """

    type: str
    start: int
    end: int
    score: float
    recognizer: str

    def as_dict(self) -> dict[str, object]:
        """The CLI's JSON shape: type, start, end, score (no text, ever)."""
        return {"type": self.type, "start": self.start, "end": self.end,
                "score": round(self.score, 4)}


@runtime_checkable
class Recognizer(Protocol):
    """Finds entities in (normalised) text."""

    @property
    def name(self) -> str:
        """Registry name, also reported in :attr:`Entity.recognizer`."""
        ...

    @property
    def entity_types(self) -> frozenset[str]:
        """The types this recognizer can emit."""
        ...

    def analyze(self, text: str) -> list[Entity]:
        """Return the entities found in ``text`` (any order, may overlap)."""
        ...


@dataclass(frozen=True)
class RecognizerSpec:
    """A registry entry: how to build a recognizer and which tier it is in.

    Attributes:
        name: registry name.
        factory: builds the recognizer (may import heavy packages lazily).
        tier: ``pattern`` (fast, always on) or ``ner`` (model-based, opt-in).
        entity_types: the types the recognizer emits, known without building it.
    """

    name: str
    factory: Callable[[], Recognizer]
    tier: Tier
    entity_types: frozenset[str]


#: Recognizer name -> spec. Built-in modules register on import.
RECOGNIZERS: dict[str, RecognizerSpec] = {}


def register_recognizer(
    name: str,
    factory: Callable[[], Recognizer],
    *,
    entity_types: frozenset[str] | set[str] | tuple[str, ...],
    tier: Tier = "pattern",
) -> None:
    """Register a recognizer factory under ``name``; duplicates are refused.

    Raises:
        ValueError: ``name`` is already registered.
    """
    if name in RECOGNIZERS:
        raise ValueError(f"recognizer {name!r} is already registered")
    RECOGNIZERS[name] = RecognizerSpec(name, factory, tier, frozenset(entity_types))
