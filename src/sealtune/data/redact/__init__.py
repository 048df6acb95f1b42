"""Redact detected PII and secrets in records, by policy.

The public surface::

    from sealtune.data.redact import DatasetKeys, Redactor, detokenize

    keys = DatasetKeys.generate()                 # the caller seals keys.secret
    redactor = Redactor(policy, keys=keys)        # policy: sealtune.data.policy.Policy
    outcome = redactor.redact(record, analyzer)   # detect + redact one record
    outcome = redactor.redact_record(record, [analyzer.analyze(m.content)
                                              for m in record.messages])
    outcome.record          # the new Record, or None if the policy dropped it
    outcome.counts          # {(entity type, action): n}

Each entity type maps to an operator of the :data:`OPERATORS` registry
(``mask``, ``tag``, ``pseudonym``, ``token``, ``drop_field``,
``drop_record``); types the policy does not name use its ``default``,
except ``SECRET``, which is tagged unless the policy says otherwise (and may
only be tagged or dropped). Overlapping entities are merged into one span,
replaced as a whole by the operator of the strongest claim (a secret first,
then the higher score, then the longer span), so no fragment of the
weaker one survives; a drop anywhere in the span wins. Replacements are
computed against the original offsets, so earlier replacements never shift
later spans. The record's extra fields are minimised to the policy's
``keep_fields``.

A value detected anywhere in a record is replaced at *every* occurrence in
that record, in every turn and kept text field (and, given the dataset-wide
values, in every record): see :mod:`.spread`. Within a record the same value
always gets the same replacement, whatever the operator (a non-deterministic
token included), so a conversation stays coherent.

What this protects against: detected values reaching the sealed dataset
and the model, and unneeded fields being kept. What it does not: values
the detector missed stay (redaction is only as good as detection), and each
operator's module says what its output still discloses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sealtune.data.pii.base import Entity
from sealtune.data.records import Message, Record
from sealtune.data.redact import drop, mask, pseudonym, tag, token
from sealtune.data.redact.base import OPERATORS, Effect, Operator, register_operator
from sealtune.data.redact.keys import DatasetKeys, TokenKey
from sealtune.data.redact.spread import DatasetValues, spread
from sealtune.data.redact.tag import Tag
from sealtune.data.redact.token import AuditSink, detokenize, tokenize
from sealtune.errors import UsageError

if TYPE_CHECKING:
    from sealtune.data.policy import Policy

__all__ = [
    "OPERATORS", "AuditSink", "DatasetKeys", "DatasetValues", "Effect", "Operator",
    "RedactionOutcome", "Redactor", "TextRedaction", "TokenKey", "detokenize",
    "register_operator", "tokenize",
]

_ = (drop, mask, pseudonym, tag, token)  # imported to register the built-in operators
_STRENGTH: dict[Effect, int] = {"replace": 0, "drop_field": 1, "drop_record": 2}


class Detector(Protocol):
    """Anything that finds entities in a text (e.g. :class:`sealtune.data.pii.Analyzer`)."""

    def analyze(self, text: str) -> list[Entity]:
        """Entities with offsets into ``text``."""
        ...


@dataclass(frozen=True)
class TextRedaction:
    """The result of redacting one text.

    Attributes:
        text: the redacted text (meaningless when ``effect`` is a drop).
        effect: the strongest effect applied: ``replace``, ``drop_field`` or ``drop_record``.
        counts: ``{(entity type, action): n}``.
        reason: for a drop, which type and operator caused it (no value).
    """

    text: str
    effect: Effect
    counts: Counter[tuple[str, str]]
    reason: str | None = None


@dataclass(frozen=True)
class RedactionOutcome:
    """The result of redacting one record.

    Attributes:
        record: the redacted, minimised record; ``None`` if it was dropped.
        counts: ``{(entity type, action): n}`` over all its fields.
        drop_reason: why it was dropped (type, operator and field; never a value).
        minimised: the extra fields removed because the policy does not keep them.
        spread: occurrences of detected values found undetected, per (scope,
            type), scope ``record`` or ``dataset``; included in ``counts``.
    """

    record: Record | None
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    drop_reason: str | None = None
    minimised: tuple[str, ...] = ()
    spread: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def dropped(self) -> bool:
        """True if the policy dropped the record."""
        return self.record is None

    def by_type(self) -> Counter[str]:
        """Entities per type."""
        out: Counter[str] = Counter()
        for (etype, _), n in self.counts.items():
            out[etype] += n
        return out

    def by_action(self) -> Counter[str]:
        """Entities per action (operator name)."""
        out: Counter[str] = Counter()
        for (_, action), n in self.counts.items():
            out[action] += n
        return out


class Redactor:
    """Applies a policy's redaction rules and field minimisation to records.

    Args:
        policy: a loaded :class:`~sealtune.data.policy.Policy`.
        keys: the dataset keys; required if any rule uses ``pseudonym`` or ``token``.

    Raises:
        UsageError: the policy needs keys and none were given.
    """

    def __init__(self, policy: Policy, *, keys: DatasetKeys | None = None) -> None:
        where = f"{policy.source}: redaction"
        if "default" not in policy.redaction:
            raise UsageError(f"{where}: no default rule", hint="build policies with "
                             "load_policy, parse_policy or default_policy")
        self._ops = {etype: rule.build(f"{where}.{etype}")
                     for etype, rule in policy.redaction.items()}
        self._default = self._ops.pop("default")
        self._secret = self._ops.pop("SECRET", Tag())
        if self._secret.discloses:
            raise UsageError(f"{where}.SECRET: operator {self._secret.name} would keep the secret")
        needs = [op.name for op in (*self._ops.values(), self._default) if op.needs_keys]
        if needs and keys is None:
            raise UsageError(f"the policy uses {sorted(set(needs))}, which need the dataset keys",
                             hint="pass keys=DatasetKeys.generate() and seal keys.secret")
        self.keys = keys
        self.policy = policy  # what parallel redaction rebuilds it from
        self.keep_fields = frozenset(policy.keep_fields)

    def operator_for(self, entity_type: str) -> Operator:
        """The operator applied to ``entity_type``."""
        if entity_type == "SECRET":
            return self._secret
        return self._ops.get(entity_type, self._default)

    def redact_text(self, text: str, entities: Sequence[Entity], *, where: str = "text",
                    memo: dict[tuple[str, str, str], str] | None = None) -> TextRedaction:
        """Redact ``text`` given its entities (offsets into ``text``; may overlap).

        ``memo`` (operator, type, value) -> replacement, shared by the texts of
        one record, makes every occurrence of a value get the same replacement.

        Raises:
            UsageError: an entity span lies outside the text (named by ``where``).
        """
        counts: Counter[tuple[str, str]] = Counter()
        pieces: list[str] = []
        effect: Effect = "replace"
        reason: str | None = None
        cursor = 0
        for group in _clusters(entities, len(text), where):
            if len(group) == 1:  # the usual case: no overlap to settle
                winner = group[0]
                start, end, op = winner.start, winner.end, self.operator_for(winner.type)
            else:
                start, end = group[0].start, max(e.end for e in group)
                op = self._group_operator(group)
                winner = min(group, key=lambda e: (e.type != "SECRET", -e.score,
                                                   e.start - e.end, e.start))
            for e in group:
                counts[(e.type, op.name)] += 1
            if _STRENGTH[op.effect] > _STRENGTH[effect]:
                effect = op.effect
                culprit = next(e.type for e in group if self.operator_for(e.type) is op)
                reason = f"{where}: {culprit} (operator {op.name})"
            if op.effect == "replace":
                value = text[start:end]
                pieces += [text[cursor:start], self._apply(op, value, winner.type, memo)]
                cursor = end
        pieces.append(text[cursor:])
        return TextRedaction("".join(pieces), effect, counts, reason)

    def _apply(self, op: Operator, value: str, entity_type: str,
               memo: dict[tuple[str, str, str], str] | None) -> str:
        if memo is None:
            return op.apply(value, entity_type=entity_type, keys=self.keys)
        key = (op.name, entity_type, value)
        if key not in memo:
            memo[key] = op.apply(value, entity_type=entity_type, keys=self.keys)
        return memo[key]

    def _group_operator(self, group: list[Entity]) -> Operator:
        ops = [self.operator_for(e.type) for e in group]
        strongest = max(ops, key=lambda op: _STRENGTH[op.effect])
        if strongest.effect != "replace":
            return strongest
        winner = min(group, key=lambda e: (e.type != "SECRET", -e.score, e.start - e.end,
                                           e.start))
        return self.operator_for(winner.type)

    def redact_record(self, record: Record, entities_by_message: Sequence[Sequence[Entity]], *,
                      entities_by_extra: Mapping[str, Sequence[Entity]] | None = None,
                      dataset: DatasetValues | None = None) -> RedactionOutcome:
        """Redact one record and minimise its extra fields.

        A value detected in any of its texts is also replaced wherever else it
        occurs in the record, with the same replacement; with ``dataset``,
        every dataset-wide value is too (:func:`.spread.spread`).

        Args:
            record: the parsed record (not modified).
            entities_by_message: entities of each message, aligned with ``record.messages``.
            entities_by_extra: entities of kept string extra fields, by field name.
            dataset: the values detected anywhere in the dataset.

        Raises:
            UsageError: the entity lists do not fit the record.
        """
        if len(entities_by_message) != len(record.messages):
            raise UsageError(f"record at line {record.line}: {len(entities_by_message)} entity "
                             f"lists for {len(record.messages)} messages")
        extra = {k: v for k, v in record.extra.items() if k in self.keep_fields}
        minimised = tuple(sorted(k for k in record.extra if k not in self.keep_fields))
        given = entities_by_extra or {}
        for key, entities in given.items():
            if key in extra and entities and not isinstance(extra[key], str):
                raise UsageError(f"record at line {record.line}: extra field {key!r} is not text")
        text_keys = [k for k, v in extra.items() if isinstance(v, str)]
        everywhere, spread_counts = spread(
            [*(m.content for m in record.messages), *(extra[k] for k in text_keys)],
            [*entities_by_message, *(given.get(k, ()) for k in text_keys)], dataset=dataset)
        n = len(record.messages)
        memo: dict[tuple[str, str, str], str] = {}
        counts: Counter[tuple[str, str]] = Counter()
        messages: list[Message] = []
        for i, (message, entities) in enumerate(zip(record.messages, everywhere[:n],
                                                    strict=True)):
            if not entities:  # most turns: nothing to replace, nothing to count
                messages.append(Message(message.role, message.content))
                continue
            result = self.redact_text(message.content, entities, where=f"messages[{i}]",
                                      memo=memo)
            counts.update(result.counts)  # all positive: what += would keep
            if result.effect == "drop_record":
                return RedactionOutcome(None, counts, result.reason, spread=spread_counts)
            messages.append(Message(message.role,
                                    "" if result.effect == "drop_field" else result.text))
        for key, entities in zip(text_keys, everywhere[n:], strict=True):
            if not entities:
                continue
            result = self.redact_text(extra[key], entities, where=f"extra.{key}", memo=memo)
            counts.update(result.counts)
            if result.effect == "drop_record":
                return RedactionOutcome(None, counts, result.reason, minimised, spread_counts)
            if result.effect == "drop_field":
                del extra[key]
            else:
                extra[key] = result.text
        new = Record(id=record.id, line=record.line, messages=messages, extra=extra,
                     source_format=record.source_format)
        return RedactionOutcome(new, counts, None, minimised, spread_counts)

    def redact(self, record: Record, detector: Detector, *,
               dataset: DatasetValues | None = None) -> RedactionOutcome:
        """Detect entities in every message and kept text field, then :meth:`redact_record`."""
        by_message = [detector.analyze(m.content) for m in record.messages]
        by_extra = {k: detector.analyze(v) for k, v in record.extra.items()
                    if k in self.keep_fields and isinstance(v, str)}
        return self.redact_record(record, by_message, entities_by_extra=by_extra,
                                  dataset=dataset)


def _clusters(entities: Sequence[Entity], length: int, where: str) -> list[list[Entity]]:
    """Entities grouped into maximal runs of overlapping spans, in text order."""
    groups: list[list[Entity]] = []
    end = -1
    for e in sorted(entities, key=lambda e: (e.start, e.end)):
        if not 0 <= e.start < e.end <= length:
            raise UsageError(f"{where}: entity span [{e.start}, {e.end}) is outside the text")
        if groups and e.start < end:
            groups[-1].append(e)
            end = max(end, e.end)
        else:
            groups.append([e])
            end = e.end
    return groups
