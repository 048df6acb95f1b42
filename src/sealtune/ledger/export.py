"""Export ledger entries as JSONL (verifiable) or CSV (for people and spreadsheets).

JSONL: one line per entry, exactly the canonical leaf bytes, so a third party
can recompute every leaf hash (``SHA-256(0x00 || line)``), follow the ``prev``
chain and check inclusion proofs without sealtune. CSV: a fixed header
(:data:`CSV_HEADER`), ``details`` as a canonical JSON string column; text
cells that a spreadsheet would run as a formula (starting with ``=``, ``+``,
``-``, ``@``, tab or carriage return) are prefixed with a single quote.

What this protects against: formula injection into spreadsheets through
attacker-chosen actor or resource names; ambiguity about what was signed (the
JSONL lines are the signed bytes).

What it does not: an export is a copy, not proof by itself; check it against
a signed checkpoint (inclusion proofs, or recomputing the segment roots). CSV
cells escaped for spreadsheets differ from the signed values, so never hash
CSV. Exports are as sensitive as the ledger: protect the files.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Literal, TextIO

from sealtune.errors import UsageError
from sealtune.ledger.entry import Entry, canonical_json

CSV_HEADER = (
    "seq", "time", "segment", "actor", "action", "resource", "outcome", "details", "prev",
    "leaf_hash",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def export_entries(entries: Iterable[Entry], fmt: Literal["jsonl", "csv"], out: TextIO) -> int:
    """Write entries to ``out`` and return how many were written.

    Args:
        entries: the entries, in order.
        fmt: ``jsonl`` (canonical leaves, one per line) or ``csv``.
        out: a text stream (open CSV files with ``newline=""``).

    Raises:
        UsageError: unknown format.
    """
    if fmt not in ("jsonl", "csv"):
        raise UsageError(f"unknown export format {fmt!r}", hint="use 'jsonl' or 'csv'")
    count = 0
    if fmt == "jsonl":
        for entry in entries:
            out.write(entry.leaf.decode("utf-8"))
            out.write("\n")
            count += 1
        return count
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for e in entries:
        writer.writerow((
            e.seq, e.time, e.segment, _cell(e.actor), _cell(e.action),
            _cell(e.resource), e.outcome, canonical_json(dict(e.details)).decode("utf-8"),
            e.prev, e.leaf_hash.hex(),
        ))
        count += 1
    return count
