"""Export a dataset's records in plaintext for review: the one deliberate way out of the seal.

The public surface::

    from sealtune.data.export import export_dataset

    result = export_dataset(ws, "support-v1", "review.jsonl")            # the training data
    result = export_dataset(ws, "support-v1", "-", part="quarantine")    # to stdout

The records are written as JSON lines exactly as they are sealed
(``{"id", "messages", "extra"}``: the *redacted* text, what training sees;
the raw input was never kept). The export is recorded in the audit ledger as
``data.export`` (dataset, part, record count, destination) *before* the
first byte is written, so no export goes unrecorded; a failure adds a
``failure`` event with the error class. Record text never reaches the
ledger, a log or an error message.

Where the bytes go is the shared output helper's business
(:func:`sealtune.outputs.open_output`): ``-`` is stdout; a regular file (new
or existing) is written atomically (an unnamed temp file linked into place
when complete, so a failure or a kill leaves nothing half-written); a device
or FIFO is written through. A terminal is refused unless ``force``:
plaintext in a terminal ends up in its scrollback and session logs.

What this protects against: an export nobody can trace, plaintext landing in
a terminal by accident, a half-written file. What it does not: the output is
plaintext outside any seal (pseudonyms, masked values and tokens, but also
whatever the detectors missed, which is the point of a review): keep it on
an encrypted volume and delete it after the review; the ledger records that
an export happened, not where the file went afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from sealtune.data import store
from sealtune.errors import UsageError
from sealtune.keys.sealing import open_sealed_lines
from sealtune.outputs import open_output

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

__all__ = ["ExportResult", "export_dataset"]


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_dataset` wrote.

    Attributes:
        name: the dataset.
        part: ``data`` or ``quarantine``.
        records: records written.
        destination: the output path, or ``-`` for stdout.
    """

    name: str
    part: str
    records: int
    destination: str


def export_dataset(ws: Workspace, name: str, out: str | os.PathLike[str], *, part: str = "data",
                   force: bool = False) -> ExportResult:
    """Write the records of ``name`` (``part``: data or quarantine) to ``out`` in plaintext.

    Args:
        ws: the workspace.
        name: the dataset.
        out: a file path, or ``-`` for stdout.
        part: ``data`` (what training uses) or ``quarantine`` (held for review).
        force: write to a terminal anyway.

    Raises:
        UsageError: no such dataset or part; a terminal without ``force``; a
            directory or other unwritable kind of destination.
        SealtuneError: the destination cannot be written.
        IntegrityError: the sealed file was modified (a file output is then not
            left in place).
    """
    if part not in ("data", "quarantine"):
        raise UsageError(f"part {part!r}: use data or quarantine")
    info = store.show_dataset(ws, name, verify=False)
    destination = os.fspath(out)
    entry = info.manifest["files"][part]
    lines = (line + b"\n" for line in open_sealed_lines(info.file(part), keys=ws.keys)
             if line.strip())
    # Opened first: a refused destination (a terminal, a directory) is refused before
    # anything is recorded; the event is written before the first byte.
    with open_output(destination, plaintext=True, allow_terminal=force) as fh:
        ws.audit("data.export", f"dataset/{name}", details={
            "part": part, "records": entry.get("records"), "to": destination,
            "content_sha256": entry.get("content_sha256", entry.get("sha256"))})
        try:
            records = _copy(lines, fh)
        except BaseException as exc:
            ws.audit("data.export", f"dataset/{name}", outcome="failure",
                     details={"part": part, "error": type(exc).__name__})
            raise
    return ExportResult(name, part, records, destination)


def _copy(lines: Iterable[bytes], fh: BinaryIO) -> int:
    count = 0
    for line in lines:
        fh.write(line)
        count += 1
    fh.flush()
    return count
