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

Where the bytes go (:func:`write_plaintext`, the one function that writes):
``-`` is stdout; a regular file (new or existing) is written atomically (an
unnamed temp file renamed into place when complete, so a failure or a kill
leaves nothing half-written); an existing device or FIFO is written
through. A terminal is refused unless ``force``: plaintext in a terminal
ends up in its scrollback and session logs.

What this protects against: an export nobody can trace, plaintext landing in
a terminal by accident, a half-written file. What it does not: the output is
plaintext outside any seal (pseudonyms, masked values and tokens, but also
whatever the detectors missed, which is the point of a review): keep it on
an encrypted volume and delete it after the review; the ledger records that
an export happened, not where the file went afterwards.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from sealtune.data import store
from sealtune.data.sealed import iter_sealed_lines
from sealtune.errors import SealtuneError, UsageError
from sealtune.keys.atomic import atomic_output

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

__all__ = ["ExportResult", "export_dataset", "write_plaintext"]

STDOUT = "-"
_TTY_HINT = ("plaintext in a terminal stays in its scrollback: write to a file (on an "
             "encrypted volume), or pass --force")


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
                   force: bool = False, stdout: BinaryIO | None = None) -> ExportResult:
    """Write the records of ``name`` (``part``: data or quarantine) to ``out`` in plaintext.

    Args:
        ws: the workspace.
        name: the dataset.
        out: a file path, or ``-`` for stdout.
        part: ``data`` (what training uses) or ``quarantine`` (held for review).
        force: write to a terminal anyway.
        stdout: where ``-`` writes (default: ``sys.stdout.buffer``).

    Raises:
        UsageError: no such dataset or part; a terminal without ``force``.
        SealtuneError: the destination cannot be written.
        IntegrityError: the sealed file was modified (the output is then not left in
            place when it is a file).
    """
    if part not in ("data", "quarantine"):
        raise UsageError(f"part {part!r}: use data or quarantine")
    info = store.show_dataset(ws, name, verify=False)
    destination = os.fspath(out)
    sink = stdout if stdout is not None else sys.stdout.buffer
    _check_destination(destination, sink, force=force)
    entry = info.manifest["files"][part]
    ws.audit("data.export", f"dataset/{name}", details={
        "part": part, "records": entry.get("records"), "to": destination,
        "sha256": entry.get("sha256")})
    lines = (line + b"\n" for line in iter_sealed_lines(info.file(part), keys=ws.keys)
             if line.strip())
    try:
        records = write_plaintext(destination, lines, stdout=sink)
    except BaseException as exc:
        ws.audit("data.export", f"dataset/{name}", outcome="failure",
                 details={"part": part, "error": type(exc).__name__})
        raise
    return ExportResult(name, part, records, destination)


def _check_destination(destination: str, stdout: BinaryIO, *, force: bool) -> None:
    if force:
        return
    if destination == STDOUT:
        if stdout.isatty():
            raise UsageError("refusing to write plaintext records to a terminal", hint=_TTY_HINT)
        return
    try:
        if not stat.S_ISCHR(os.stat(destination).st_mode):
            return  # a file (written atomically), a FIFO (never a terminal)
        fd = os.open(destination, os.O_WRONLY | os.O_NOCTTY)
    except OSError:
        return  # missing (created atomically), or not openable (fails when written)
    try:
        if os.isatty(fd):
            raise UsageError(f"{destination}: is a terminal; refusing to write plaintext there",
                             hint=_TTY_HINT)
    finally:
        os.close(fd)


def write_plaintext(destination: str, lines: Iterable[bytes], *, stdout: BinaryIO) -> int:
    """Write ``lines`` to ``destination`` (``-``, a regular file, a device); return the count.

    A regular file appears only once complete; stdout, devices and FIFOs are
    written through. (The one place this stage writes plaintext: keep it so.)
    """
    if destination == STDOUT:
        return _copy(lines, stdout)
    path = Path(destination)
    try:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode):
            with path.open("wb") as fh:
                return _copy(lines, fh)
        with atomic_output(path) as fh:
            return _copy(lines, fh)
    except OSError as exc:
        raise SealtuneError(f"{destination}: cannot write ({type(exc).__name__})",
                            hint="check the path (a file, not a directory) and its permissions"
                            ) from None


def _copy(lines: Iterable[bytes], fh: BinaryIO) -> int:
    count = 0
    for line in lines:
        fh.write(line)
        count += 1
    fh.flush()
    return count
