"""Consistent passes over one input file, for screening and then redaction.

Screening needs the whole data set (two or three passes: duplicates,
conflicts, triggers) before any record can be kept or dropped, and memory
must stay bounded, so the data stage parses the input file again for every
pass instead of holding it. :class:`RecordPasses` makes those passes
consistent: the first pass fixes each record's id (an id that contains PII
becomes ``line-<n>``, a repeated id gets ``~<k>``; ids appear in reports and
the audit log) and remembers its line; every later pass must see the same
records at the same lines, or the file changed midway and the stage stops.

What this protects against: a report or audit event carrying PII through a
record id, findings attached to the wrong record because two records share
an id, and an input rewritten between passes. What it does not: a file
changed and restored between two passes with identical line structure
(ingest also compares size, inode and modification time before and after).
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sealtune.data.formats import ReadStats, read_records
from sealtune.data.pii import Analyzer
from sealtune.data.policy import Policy
from sealtune.data.records import Record
from sealtune.data.screen import ScreenReport, screen
from sealtune.errors import SealtuneError

__all__ = ["REDACTION_SECTIONS", "Progress", "RecordPasses", "changed", "input_facts",
           "policy_facts", "screen_passes"]

#: ``progress(phase, records done, total or None)``; called every few hundred records.
Progress = Callable[[str, int, "int | None"], None]
#: The policy sections whose digest is the redaction-policy digest (``detection``
#: decides what is found; it is in the canonical form only when NER is on).
REDACTION_SECTIONS = ("keep_fields", "redaction", "recognizers", "detection")
_TICK = 256


class RecordPasses:
    """Consistent passes over one input file: same records, same (safe, unique) ids."""

    def __init__(self, path: Path, *, format: str | None, text_field: str | None,
                 on_error: str, analyzer: Analyzer, progress: Progress | None) -> None:
        self.path, self.format, self.text_field = path, format, text_field
        self.on_error = on_error
        self.analyzer = analyzer
        self.progress = progress
        self.ids: list[str] = []
        self.lines = array("q")
        self.stats = ReadStats()
        self.renamed: Counter[str] = Counter()
        self.passes = 0
        self.on_first: Callable[[Record], None] | None = None
        self._seen: set[str] = set()

    def records(self, phase: str) -> Iterator[Record]:
        first, self.passes = self.passes == 0, self.passes + 1
        total = None if first else len(self.ids)
        count = 0
        with read_records(self.path, format=self.format, text_field=self.text_field,
                          on_error=self.on_error) as stream:  # type: ignore[arg-type]
            for count, record in enumerate(stream, start=1):
                if first:
                    record.id = self._safe_id(record)
                    self.ids.append(record.id)
                    self.lines.append(record.line)
                    if self.on_first is not None:
                        self.on_first(record)
                elif count > len(self.ids) or self.lines[count - 1] != record.line:
                    raise changed(self.path)
                else:
                    record.id = self.ids[count - 1]
                yield record
                if self.progress is not None and count % _TICK == 0:
                    self.progress(phase, count, total)
            self.stats = stream.stats
            self.format = stream.stats.format
        if not first and count != len(self.ids):
            raise changed(self.path)
        if self.progress is not None:
            self.progress(phase, count, count)

    def _safe_id(self, record: Record) -> str:
        rid = record.id
        if self.analyzer.analyze(rid):
            rid = f"line-{record.line}"
            self.renamed["pii"] += 1
        base, k = rid, 1
        while rid in self._seen:
            k += 1
            rid = f"{base}~{k}"
        if k > 1:
            self.renamed["duplicate"] += 1
        self._seen.add(rid)
        return rid


def changed(path: Path) -> SealtuneError:
    return SealtuneError(f"{path}: the input changed while it was being read",
                         hint="ingest a file that nothing else is writing")


def screen_passes(source: RecordPasses, policy: Policy) -> ScreenReport:
    return screen(lambda: source.records(f"screening, pass {source.passes + 1}"),
                  config=policy.screen_config())


def policy_facts(policy: Policy) -> dict[str, str]:
    return {"source": policy.source, "digest": policy.digest(),
            "redaction_digest": policy.digest(sections=REDACTION_SECTIONS),
            "screening_digest": policy.digest(sections=("screening",))}


def input_facts(source: RecordPasses) -> dict[str, Any]:
    s = source.stats
    return {"format": s.format, "records": s.read, "skipped_lines": s.skipped,
            "skipped_line_numbers": list(s.skipped_lines), "skip_reasons": dict(s.skip_reasons),
            "blank_lines": s.blank, "ids_renamed": dict(source.renamed)}
