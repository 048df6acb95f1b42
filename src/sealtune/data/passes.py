"""Consistent passes over one input file, for screening and then redaction.

Screening needs the whole data set (two or three passes: duplicates,
conflicts, triggers) before any record can be kept or dropped, and memory
must stay bounded, so the data stage parses the input file again for every
pass instead of holding it. :class:`RecordPasses` makes those passes
consistent: the first pass fixes each record's id (an id that contains PII
becomes ``line-<n>``, a repeated id gets ``~<k>``; ids appear in reports and
the audit log) and remembers its line; every later pass must see the same
records at the same lines, or the file changed midway and the stage stops.

A record that parses but then fails (detection in the first pass through
:attr:`RecordPasses.on_first`, redaction in the last through
:meth:`RecordPasses.fail`) is a problem of its line: with ``on_error="skip"``
it is counted with the parse failures (its line number and the exception's
class, never its text) and left out of every later pass; otherwise the run
stops with a :class:`~sealtune.data.formats.DataFormatError` naming the file
and the line.

What this protects against: a report or audit event carrying PII through a
record id, findings attached to the wrong record because two records share
an id, one odd record aborting a skip-mode run (or a fail-mode error that
does not say where), and an input rewritten between passes. What it does not: a file
changed and restored between two passes with identical line structure
(ingest also compares size, inode and modification time before and after).
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.data.formats import (
    MAX_SKIPPED_LINES,
    DataFormatError,
    Opener,
    ReadStats,
    read_records,
)
from sealtune.data.pii import Analyzer
from sealtune.data.policy import Policy
from sealtune.data.records import Record
from sealtune.data.screen import ScreenReport, screen
from sealtune.errors import SealtuneError

if TYPE_CHECKING:
    from sealtune.data.formats import OnError

__all__ = ["REDACTION_SECTIONS", "Progress", "RecordPasses", "changed", "input_facts",
           "policy_facts", "screen_passes"]

#: ``progress(phase, records done, total or None)``; called every few hundred records.
Progress = Callable[[str, int, "int | None"], None]
#: The policy sections whose digest is the redaction-policy digest (``detection``
#: decides what is found; it and the unsafe switch are in the canonical form
#: only when set).
REDACTION_SECTIONS = ("keep_fields", "redaction", "recognizers", "detection",
                      "unsafe_no_dataset_wide_redaction")
_TICK = 256


class RecordPasses:
    """Consistent passes over one input file: same records, same (safe, unique) ids."""

    def __init__(self, path: Path, *, format: str | None, text_field: str | None,
                 on_error: str, analyzer: Analyzer, progress: Progress | None,
                 opener: Opener | None = None) -> None:
        self.path, self.format, self.text_field = path, format, text_field
        self.opener = opener
        self.on_error = on_error
        self.analyzer = analyzer
        self.progress = progress
        self.ids: list[str] = []
        self.lines = array("q")
        self.stats = ReadStats()
        self.renamed: Counter[str] = Counter()
        self.passes = 0
        self.on_first: Callable[[Record], None] | None = None
        self.failed = ReadStats()
        self._seen: set[str] = set()
        self._failed_lines: set[int] = set()

    @property
    def read(self) -> int:
        """Records read and kept in the passes (parsed, not failed)."""
        return self.stats.read - self.failed.skipped

    @property
    def skipped(self) -> int:
        """Lines skipped: malformed ones and records that failed later."""
        return self.stats.skipped + self.failed.skipped

    def records(self, phase: str) -> Iterator[Record]:
        """One pass: the records, with their ids, minus those that failed (skip mode).

        Raises:
            DataFormatError: a malformed line, or a record that fails (fail mode).
            SealtuneError: the input changed since the first pass.
        """
        first, self.passes = self.passes == 0, self.passes + 1
        total = None if first else len(self.ids)
        count = 0
        with read_records(self.path, format=self.format, text_field=self.text_field,
                          on_error=self._mode, opener=self.opener) as stream:
            for record in stream:
                if first:
                    if not self._first(record):
                        continue
                elif record.line in self._failed_lines:
                    continue
                elif count >= len(self.ids) or self.lines[count] != record.line:
                    raise changed(self.path)
                else:
                    record.id = self.ids[count]
                count += 1
                yield record
                if self.progress is not None and count % _TICK == 0:
                    self.progress(phase, count, total)
            self.stats = stream.stats
            self.format = stream.stats.format
        if not first and count != len(self.ids):
            raise changed(self.path)
        if self.progress is not None:
            self.progress(phase, count, count)

    @property
    def _mode(self) -> OnError:
        return "skip" if self.on_error == "skip" else "fail"

    def _first(self, record: Record) -> bool:
        try:
            rid = self._safe_id(record)
            if self.on_first is not None:
                self.on_first(record)
        except Exception as exc:  # a data problem of this line: see fail()
            self.fail(record, "detection", exc)
            return False
        record.id = rid
        self._seen.add(rid)
        self.ids.append(rid)
        self.lines.append(record.line)
        return True

    def fail(self, record: Record, stage: str, exc: Exception) -> None:
        """Skip ``record`` (counted) or raise, for an exception raised while processing it.

        Only data problems are skipped: a sealtune error other than a data
        format error, and ``MemoryError``, are re-raised as they are.

        Raises:
            DataFormatError: naming the file and the line (fail mode).
        """
        if isinstance(exc, MemoryError) or (isinstance(exc, SealtuneError)
                                            and not isinstance(exc, DataFormatError)):
            raise exc
        problem = f"{stage} failed ({type(exc).__name__})"
        if self.on_error != "skip":
            raise DataFormatError(str(self.path), record.line, None, problem) from None
        self._failed_lines.add(record.line)
        self.failed.skipped += 1
        self.failed.skip_reasons[problem] += 1
        if len(self.failed.skipped_lines) < MAX_SKIPPED_LINES:
            self.failed.skipped_lines.append(record.line)

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
    s, failed = source.stats, source.failed
    lines = sorted([*s.skipped_lines, *failed.skipped_lines])[:MAX_SKIPPED_LINES]
    return {"format": s.format, "records": source.read,
            "skipped_lines": source.skipped, "skipped_line_numbers": lines,
            "skip_reasons": dict(s.skip_reasons + failed.skip_reasons),
            "blank_lines": s.blank, "ids_renamed": dict(source.renamed)}
