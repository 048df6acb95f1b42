"""What the data stage reports about PII: counts per type and action, masked examples.

:class:`PiiStats` detects and redacts records through a
:class:`~sealtune.data.redact.Redactor` and counts what it found and did.
Its report (:meth:`PiiStats.to_json`) carries counts, drop reasons (entity
type, operator and field, never a value) and at most three examples per
type in masked form (:func:`mask`: every letter and digit starred), so the
findings report can be shown, archived and attached to a review without
holding any raw value.

What this protects against: the report itself becoming a PII leak. What it
does not: the masked shape still shows a value's format and length (a
phone's grouping, an e-mail's domain length), which is why it is limited to
three examples per type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sealtune.data.pii import Analyzer, Entity
from sealtune.data.records import Record
from sealtune.data.redact import DatasetValues, RedactionOutcome, Redactor

__all__ = ["MAX_EXAMPLES", "PiiStats", "mask"]

MAX_EXAMPLES = 3


def mask(value: str, *, limit: int = 40) -> str:
    """``value`` with every letter and digit (any script) replaced by ``*``; separators kept.

    Shows the shape of a detected value (``+** ***-****-****``, ``****@*****.***``)
    without any of its characters.
    """
    out = "".join("*" if ch.isalnum() else ch for ch in value)
    return out if len(out) <= limit else out[:limit] + "…"


@dataclass
class PiiStats:
    """Entity counts of a scan or ingest, with masked examples (never a raw value).

    Attributes:
        entities: per entity type.
        actions: per action (operator name, e.g. ``pseudonym``).
        by_type: type -> action -> count.
        records_with_pii: records holding at least one entity.
        dropped: records removed by a ``drop_record`` rule.
        drop_reasons: why (``messages[i]: TYPE (operator drop_record)``) -> count.
        fields_removed: extra fields removed by minimisation -> records affected.
        examples: type -> up to three distinct masked examples.
        spread: scope (``record``, ``dataset``) -> type -> occurrences of a
            detected value found undetected and redacted (included in ``entities``).
    """

    entities: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    by_type: dict[str, Counter[str]] = field(default_factory=dict)
    records_with_pii: int = 0
    dropped: int = 0
    drop_reasons: Counter[str] = field(default_factory=Counter)
    fields_removed: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    spread: dict[str, Counter[str]] = field(default_factory=dict)

    def redact(self, redactor: Redactor, analyzer: Analyzer, record: Record) -> RedactionOutcome:
        """Detect and redact one record (record-wide only), counting what was found and done."""
        found = [analyzer.analyze(m.content) for m in record.messages]
        extra = {k: analyzer.analyze(v) for k, v in record.extra.items()
                 if k in redactor.keep_fields and isinstance(v, str)}
        return self.apply(redactor, record, found, extra)

    def apply(self, redactor: Redactor, record: Record, found: Sequence[Sequence[Entity]],
              extra: Mapping[str, Sequence[Entity]], *,
              dataset: DatasetValues | None = None) -> RedactionOutcome:
        """Redact one record given its detected entities, counting what was found and done."""
        outcome = redactor.redact_record(record, found, entities_by_extra=extra,
                                         dataset=dataset)
        self.count(record, found, extra, outcome)
        return outcome

    def count(self, record: Record, found: Sequence[Sequence[Entity]],
              extra: Mapping[str, Sequence[Entity]], outcome: RedactionOutcome) -> None:
        """Count one record's redaction: ``found``/``extra`` are its detected entities."""
        for (scope, etype), n in outcome.spread.items():
            self.spread.setdefault(scope, Counter())[etype] += n
        if outcome.counts:
            self.records_with_pii += 1
        for (etype, action), n in outcome.counts.items():
            self.entities[etype] += n
            self.actions[action] += n
            self.by_type.setdefault(etype, Counter())[action] += n
        self.fields_removed.update(outcome.minimised)
        if outcome.dropped:
            self.dropped += 1
            self.drop_reasons[outcome.drop_reason or "policy"] += 1
        texts = [m.content for m in record.messages]
        self._examples([*zip(texts, found, strict=True),
                        *((record.extra[k], v) for k, v in extra.items())])

    def _examples(self, pairs: Sequence[tuple[str, Sequence[Entity]]]) -> None:
        for text, entities in pairs:
            for e in entities:
                seen = self.examples.setdefault(e.type, [])
                if len(seen) >= MAX_EXAMPLES:
                    continue
                shown = mask(text[e.start:e.end])
                if shown not in seen:
                    seen.append(shown)

    def merge(self, later: PiiStats) -> None:
        """Add the counts of records counted after this one's (e.g. by a worker).

        Each type's examples are the first :data:`MAX_EXAMPLES` distinct ones of
        both in order, as if one object had counted every record: ``later``'s
        first distinct examples hold every one a single count would have added.
        """
        self.entities.update(later.entities)
        self.actions.update(later.actions)
        for etype, actions in later.by_type.items():
            self.by_type.setdefault(etype, Counter()).update(actions)
        self.records_with_pii += later.records_with_pii
        self.dropped += later.dropped
        self.drop_reasons.update(later.drop_reasons)
        self.fields_removed.update(later.fields_removed)
        for scope, counts in later.spread.items():
            self.spread.setdefault(scope, Counter()).update(counts)
        for etype, shown in later.examples.items():
            seen = self.examples.setdefault(etype, [])
            for example in shown:
                if len(seen) < MAX_EXAMPLES and example not in seen:
                    seen.append(example)

    def to_json(self) -> dict[str, Any]:
        return {"entities": dict(sorted(self.entities.items())),
                "actions": dict(sorted(self.actions.items())),
                "by_type": {t: dict(c) for t, c in sorted(self.by_type.items())},
                "records_with_pii": self.records_with_pii,
                "records_dropped": self.dropped, "drop_reasons": dict(self.drop_reasons),
                "fields_removed": dict(sorted(self.fields_removed.items())),
                "spread": {scope: dict(sorted(counts.items()))
                           for scope, counts in sorted(self.spread.items())},
                "examples_masked": dict(sorted(self.examples.items()))}
