"""The Check port of poisoning screening: findings, per-check config, the registry.

A check looks at records in one or more streaming passes and reports
:class:`Finding` s: the record id, the check name, a short structured reason
and a score. A finding never carries record text: reasons are built from
counts, lengths, scores, script names and fingerprints only, so a findings
report can be shown, logged and archived without leaking the data it
describes (see :func:`sealtune.data.screen.screen`).

Checks register by name in :data:`CHECKS`; a duplicate name is refused, so a
plug-in cannot silently replace a built-in check. What to do with a finding
(flag it, drop the record, or quarantine it: sealed aside for review, not
trained on) is policy, given per check in :class:`CheckConfig`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, Protocol, get_args, runtime_checkable

import numpy as np

from sealtune.data.records import Record
from sealtune.data.screen import _points, _text
from sealtune.errors import ConfigError

Action = Literal["flag", "drop", "quarantine"]
ACTIONS: tuple[str, ...] = get_args(Action)
#: Strength order used when several findings hit one record.
ACTION_RANK: dict[str, int] = {"flag": 0, "quarantine": 1, "drop": 2}
#: Permutations of the shared signatures; checks needing fewer use a prefix.
NUM_PERM = 128
#: Character n-gram size of the shared signatures. Measured on planted near
#: copies (bench/poison.py): with whitespace and punctuation removed, 3-grams
#: keep 95-98 % of edited copies at Jaccard >= 0.8, 4-grams 88-92 %, 5-grams
#: 79-83 %, with the same rate of unrelated pairs above 0.8 (1-2 in 20,000).
SHINGLE = 3


@dataclass(frozen=True, slots=True)
class Finding:
    """One screening result about one record.

    Attributes:
        check: the registry name of the check, e.g. ``near_duplicate``.
        record_id: the record's id.
        reason: short structured text (``key=value`` pairs); never record text.
        score: check-specific strength, higher is more suspicious.
        related_ids: other records involved (the duplicate's original, the
            cluster, the conflicting answers), at most a few dozen.
        action: what the policy says to do with the record.
        example: a masked example of what the finding is about (a near-duplicate
            cluster's representative, every letter and digit starred), or None.
    """

    check: str
    record_id: str
    reason: str
    score: float
    related_ids: tuple[str, ...] = ()
    action: Action = "flag"
    example: str | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (no record text, by construction: ``example`` is masked)."""
        out: dict[str, object] = {
            "check": self.check, "record_id": self.record_id, "reason": self.reason,
            "score": round(self.score, 4), "related_ids": list(self.related_ids),
            "action": self.action}
        if self.example is not None:
            out["example_masked"] = self.example
        return out


@dataclass(frozen=True)
class CheckConfig:
    """Policy for one check: the action for its findings and threshold overrides.

    Attributes:
        action: ``flag`` (report only), ``drop`` (remove the record) or
            ``quarantine`` (seal it aside for review; not trained on).
        thresholds: overrides of the check's documented defaults; an unknown
            key is an error when the check is built, never ignored.
    """

    action: Action = "flag"
    thresholds: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ConfigError(f"screen action {self.action!r} is not one of {', '.join(ACTIONS)}",
                              hint="set action to flag, drop or quarantine")


class Sample:
    """One record as the checks see it: normalised text and cached signatures.

    Built by the facade per batch; signatures are computed once for the
    whole batch and shared by every check that asks for them. Turns are
    normalised one at a time through a memo the batch's samples share (a
    system prompt in every record is normalised once per batch, and the
    question's turns once for :attr:`prompt` and :attr:`question`): the
    normalised join of turns is the join of their normalised forms (see
    :func:`._text.normalize_turns`).
    """

    __slots__ = ("__dict__", "index", "record")

    def __init__(self, index: int, record: Record) -> None:
        self.index = index
        self.record = record
        self.memo: dict[str, str] = {}

    @property
    def id(self) -> str:
        """The record id."""
        return self.record.id

    @cached_property
    def prompt(self) -> str:
        """Normalised prompt side (system and user turns)."""
        return _text.normalize_turns((m.content for m in self.record.messages
                                      if m.role != "assistant"), self.memo)

    @cached_property
    def question(self) -> str:
        """Normalised user turns only: the question, whatever system prompt came with it."""
        if all(m.role != "system" for m in self.record.messages):
            return self.prompt
        return _text.normalize_turns((m.content for m in self.record.messages
                                      if m.role not in ("system", "assistant")), self.memo)

    @cached_property
    def response(self) -> str:
        """Normalised response side (assistant turns)."""
        return _text.normalize_turns((m.content for m in self.record.messages
                                      if m.role == "assistant"), self.memo)


class SampleBatch:
    """A batch of :class:`Sample` s with lazily computed, shared MinHash signatures.

    The samples share one normalisation memo and the batch caches the
    shingle text of each side (as code points): per batch, a few times the
    batch's text at most.
    """

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.samples = samples
        self._sigs: dict[tuple[str, int], _text.U32] = {}
        self._shingled: dict[str, _points.Points] = {}
        memo: dict[str, str] = {}
        for s in samples:
            s.memo = memo

    def shingled(self, side: Literal["prompt", "question", "response"]) -> _points.Points:
        """:func:`._text.shingle_text` of each sample's ``side``, as code points (computed
        once per batch)."""
        if side not in self._shingled:
            self._shingled[side] = _points.shingle_points([getattr(s, side) for s in self.samples])
        return self._shingled[side]

    def signatures(self, side: Literal["prompt", "question", "response", "record"], *,
                   width: int = NUM_PERM) -> _text.U32:
        """``len(samples) x width`` signatures of the prompt, the question, the response or both.

        ``width``: the first ``width`` of the ``NUM_PERM`` slots only (the same
        values, computed for less).

        ``question`` is the user turns alone (:attr:`Sample.question`): shared
        system prompts would otherwise dominate a short record's shingles.

        ``record`` is the union of the two shingle sets (element-wise minimum
        of the two signatures), i.e. the whole record.
        """
        key = (side, width)
        if key not in self._sigs:
            if side == "record":
                self._sigs[key] = np.minimum(self.signatures("prompt", width=width),
                                             self.signatures("response", width=width))
            else:
                self._sigs[key] = _text.signatures(self.shingled(side), num_perm=NUM_PERM,
                                                   n=SHINGLE, width=width)
        return self._sigs[key]


@runtime_checkable
class Check(Protocol):
    """A screening check: sees batches in ``passes`` streaming passes, then reports."""

    @property
    def passes(self) -> int:
        """How many passes over the data the check needs (1 or more)."""
        ...

    def observe(self, pass_no: int, batch: SampleBatch) -> None:
        """Look at one batch of pass ``pass_no`` (0-based); keep bounded state only."""
        ...

    def findings(self, ids: Sequence[str]) -> list[Finding]:
        """The findings after the last pass; ``ids[i]`` is the id of record index ``i``."""
        ...


@dataclass(frozen=True)
class CheckSpec:
    """A registry entry.

    Attributes:
        name: registry name (also :attr:`Finding.check`, or its prefix).
        factory: builds the check from the merged thresholds and the action.
        defaults: every threshold the check accepts, with its default.
        default_on: whether :func:`screen` runs it when no config is given.
        summary: one line for docs and ``--help``.
    """

    name: str
    factory: Callable[[Mapping[str, float], Action], Check]
    defaults: Mapping[str, float]
    default_on: bool = True
    summary: str = ""

    def build(self, config: CheckConfig) -> Check:
        """Build the check, refusing threshold keys it does not know."""
        unknown = sorted(set(config.thresholds) - set(self.defaults))
        if unknown:
            raise ConfigError(f"screen check {self.name!r}: unknown threshold(s) {unknown}",
                              hint=f"known thresholds: {sorted(self.defaults)}")
        return self.factory({**self.defaults, **config.thresholds}, config.action)


#: Check name -> spec. Built-in modules register on import of the package.
CHECKS: dict[str, CheckSpec] = {}


def register_check(spec: CheckSpec) -> None:
    """Register a check; a duplicate name is refused.

    Raises:
        ValueError: ``spec.name`` is already registered.
    """
    if spec.name in CHECKS:
        raise ValueError(f"screen check {spec.name!r} is already registered")
    CHECKS[spec.name] = spec
