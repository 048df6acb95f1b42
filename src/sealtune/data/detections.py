"""What the first pass over an input detected, kept until the redaction pass.

Dataset-wide redaction needs every record's detections before the first
record is redacted (a name detected in record 7 must be replaced in record
1), and the data stage reads its input several times anyway (screening), so
detection runs once, in the first pass, and :class:`Detections` keeps:

* each record's entities, packed (18 bytes per entity: field, start, end,
  type, score; no text), so the last pass redacts without detecting again;
* the dataset-wide values (:class:`~sealtune.data.redact.DatasetValues`),
  unless the policy turns them off.

Both live only in this process's memory, for the length of one scan or
ingest, and are never written anywhere, sealed or not.

What this protects against: detecting twice (the costliest step) and a
value detected late in the file escaping redaction early in it. What it
does not: memory grows with the number of entities (18 bytes each, plus
about 40 bytes per record that holds any) and with the dictionary (bounded
by :data:`~sealtune.data.redact.spread.DATASET_LIMIT` values); an input
changed between the passes is refused by :class:`~sealtune.data.passes.RecordPasses`
and the ingest's before/after identity check, not here.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sealtune.data.findings import PiiStats
from sealtune.data.parallel_redaction import record_line, redact_on_processes
from sealtune.data.passes import Progress, RecordPasses
from sealtune.data.pii import Analyzer, Entity
from sealtune.data.policy import UNSAFE_NO_DATASET_WIDE, Policy
from sealtune.data.records import Record
from sealtune.data.redact import DatasetValues, Redactor
from sealtune.errors import UsageError
from sealtune.keys.sealing import SealedSource, is_sealed

if TYPE_CHECKING:
    from sealtune.keys.service import KeyService

__all__ = ["Detections", "kept_texts", "open_passes", "redaction_facts", "redaction_pass",
           "unsafe_facts", "warn_unsafe"]

_PACK = struct.Struct("<IIIHf")
_EMPTY = b""


def kept_texts(record: Record, keep_fields: Collection[str]) -> list[str]:
    """The names of the kept extra fields that hold text, in record order."""
    return [k for k, v in record.extra.items() if k in keep_fields and isinstance(v, str)]


class Detections:
    """Per-record entities and dataset-wide values from one pass over an input.

    Args:
        analyzer: the PII analyzer.
        keep_fields: the policy's kept extra fields (their text is analysed too).
        dataset_wide: collect dataset-wide values (the policy's default).
    """

    def __init__(self, analyzer: Analyzer, *, keep_fields: Collection[str],
                 dataset_wide: bool) -> None:
        self.analyzer = analyzer
        self.keep_fields = frozenset(keep_fields)
        self.values = DatasetValues() if dataset_wide else None
        #: Processes for the redaction pass (``--workers``; :mod:`.parallel_redaction`).
        self.workers = 1
        self._packed: list[bytes] = []
        self._types: list[str] = []
        self._type_ids: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._packed)

    def add(self, record: Record) -> None:
        """Detect in ``record`` (the next one) and remember what was found.

        Nothing is kept if detection raises, so the record can be skipped.
        """
        texts = [m.content for m in record.messages]
        texts += [record.extra[k] for k in kept_texts(record, self.keep_fields)]
        found = [self.analyzer.analyze(t) for t in texts]
        packed = b"".join(_PACK.pack(i, e.start, e.end, self._type_id(e.type), e.score)
                          for i, entities in enumerate(found) for e in entities)
        if self.values is not None:
            for text, entities in zip(texts, found, strict=True):
                for e in entities:
                    self.values.learn(e.type, text[e.start:e.end])
        self._packed.append(packed or _EMPTY)  # last: the record's index stays aligned

    def entities(self, index: int, record: Record
                 ) -> tuple[list[list[Entity]], dict[str, list[Entity]]]:
        """The entities of record ``index`` (in pass order): per message, per kept field."""
        names = kept_texts(record, self.keep_fields)
        fields: list[list[Entity]] = [[] for _ in range(len(record.messages) + len(names))]
        for i, start, end, type_id, score in _PACK.iter_unpack(self._packed[index]):
            fields[i].append(Entity(self._types[type_id], start, end, score, "detected"))
        n = len(record.messages)
        return fields[:n], dict(zip(names, fields[n:], strict=True))

    def _type_id(self, entity_type: str) -> int:
        found = self._type_ids.get(entity_type)
        if found is None:
            found = self._type_ids[entity_type] = len(self._types)
            self._types.append(entity_type)
        return found


def redaction_pass(source: RecordPasses, found: Detections, redactor: Redactor, pii: PiiStats, *,
                   phase: str, wanted: Callable[[Record], bool] = lambda _: True,
                   ) -> Iterator[tuple[Record, bytes | None]]:
    """The last pass: each wanted record (as read) and its redacted sealed-dataset JSON line.

    Records are redacted with their first-pass entities and the dataset-wide
    values, and counted in ``pii``; the line is None for a record the policy
    drops. A record that fails is skipped and counted, or stops the run
    (:meth:`RecordPasses.fail`). With ``found.workers > 1`` records are
    redacted on that many processes, in the same order, with the same results
    (:mod:`sealtune.data.parallel_redaction`).
    """
    if found.workers > 1:
        yield from redact_on_processes(source, found, redactor, pii, phase=phase,
                                       wanted=wanted, workers=found.workers)
        return
    for index, record in enumerate(source.records(phase)):
        if not wanted(record):
            continue
        try:
            by_message, by_extra = found.entities(index, record)
            outcome = redactor.redact_record(record, by_message, entities_by_extra=by_extra,
                                             dataset=found.values)
            line = record_line(outcome)
        except Exception as exc:  # a data problem of this record: see RecordPasses.fail
            source.fail(record, "redaction", exc)
            continue
        pii.count(record, by_message, by_extra, outcome)
        yield record, line


def open_passes(path: Path, policy: Policy, *, format: str | None, text_field: str | None,
                on_error: str, progress: Progress | None, keys: KeyService | None = None,
                data_key: bytes | bytearray | None = None,
                analyzer: Analyzer | None = None,
                workers: int = 1) -> tuple[RecordPasses, Detections]:
    """The passes over ``path``, detecting PII in the first one.

    A sealed input (``sealtune seal``) is unlocked once with ``keys`` and read
    through :class:`~sealtune.keys.sealing.SealedSource` (its plaintext stays in
    memory); the read is audited as ``data.read``. Warns if dataset-wide
    redaction is off. ``analyzer`` replaces the policy's (the ``ray`` executor's
    :class:`~sealtune.data.executors.PrecomputedAnalyzer`: same findings).

    ``workers > 1`` detects on that many processes first, in one extra read
    (:mod:`sealtune.data.parallel`: same findings).

    Inside the data sandbox there is no key service: the sealed input's data
    key comes over the key pipe as ``data_key`` (the parent audits the read).

    Raises:
        UsageError: the input is sealed and neither ``keys`` nor ``data_key`` was given.
    """
    warn_unsafe(policy, stacklevel=4)
    opener = None
    if is_sealed(path) and data_key is not None:
        opener = SealedSource(path, data_key=data_key).open
    elif is_sealed(path):
        if keys is None:
            raise UsageError(f"{path}: is a sealed file; it is opened with the workspace keys",
                             hint="pass keys=workspace.keys (the CLI does)")
        opener = SealedSource(path, keys=keys).open
        keys.audit("data.read", str(path), details={"part": "sealed input"})
    if analyzer is None and workers > 1:
        from sealtune.data.parallel import detect_on_processes

        analyzer = cast("Analyzer", detect_on_processes(
            path, policy, workers=workers, format=format, text_field=text_field, opener=opener))
    analyzer = analyzer if analyzer is not None else policy.analyzer()  # ray: precomputed
    source = RecordPasses(path, format=format, text_field=text_field, on_error=on_error,
                          analyzer=analyzer, progress=progress, opener=opener)
    found = Detections(analyzer, keep_fields=policy.keep_fields,
                       dataset_wide=not policy.unsafe_no_dataset_wide_redaction)
    source.on_first = found.add
    found.workers = workers
    return source, found


def warn_unsafe(policy: Policy, *, stacklevel: int = 2) -> None:
    """Warn if the policy turns dataset-wide redaction off."""
    if policy.unsafe_no_dataset_wide_redaction:
        warnings.warn(f"{policy.source}: {UNSAFE_NO_DATASET_WIDE} is set: values detected in "
                      "one record are not redacted where they appear undetected in others",
                      UserWarning, stacklevel=stacklevel)


def unsafe_facts(policy: Policy) -> dict[str, list[str]]:
    """``{"unsafe": [...]}`` naming the weakening options the policy sets, or ``{}``."""
    return {"unsafe": [UNSAFE_NO_DATASET_WIDE]} if policy.unsafe_no_dataset_wide_redaction \
        else {}


def redaction_facts(policy: Policy, found: Detections) -> dict[str, Any]:
    """How far redaction reached beyond detection (counts only, never a value)."""
    values = found.values
    return {"record_wide": True, "dataset_wide": values is not None,
            **({"dataset_values": values.to_json()} if values is not None else {}),
            **unsafe_facts(policy)}
