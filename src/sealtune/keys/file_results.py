"""What the sealed-file operations of :mod:`sealtune.keys.files` return.

Plain frozen records: :class:`SealResult`, :class:`OpenResult`,
:class:`RewrapResult`, :class:`FileInfo` and the :class:`KeyEntry` they list
(and :func:`labels`, how the audit log names entries).
Import them from :mod:`sealtune.keys.files`, which re-exports them.

What this protects against: secrets leaking through results that the CLI
prints and the audit log records: a record holds KEK names and versions,
file ids, suites and sizes, never a data key, a wrapped key blob or
plaintext. What it does not: vouch for :class:`FileInfo`, which is read
without any key and is NOT authenticated (a modified header can claim
anything there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sealtune.keys.base import WrappedKey


@dataclass(frozen=True)
class KeyEntry:
    """One wrapped copy of a file's data key (no key material).

    Attributes:
        kek_uri: ``<backend>:<name>`` of the KEK.
        version: the KEK version that wrapped it.
    """

    kek_uri: str
    version: int


@dataclass(frozen=True)
class SealResult:
    """The outcome of :func:`seal_file`.

    Attributes:
        path: the sealed file (``<stdout>`` for the standard output).
        file_id: hex file id.
        suite: the payload algorithm (``aes-256-gcm`` or ``sm4-gcm``).
        plaintext_size: bytes sealed.
        sealed_size: bytes of the sealed file.
        entries: the KEKs the data key is wrapped under.
    """

    path: Path
    file_id: str
    suite: str
    plaintext_size: int
    sealed_size: int
    entries: tuple[KeyEntry, ...]


@dataclass(frozen=True)
class OpenResult:
    """The outcome of :func:`open_file` (and :func:`verify_file`).

    Attributes:
        path: where the plaintext went (``<stdout>`` for the standard
            output); for :func:`verify_file`, the file verified (nothing is
            written).
        file_id: hex file id.
        suite: the payload algorithm.
        plaintext_size: plaintext bytes (written, or authenticated).
        unwrapped_by: the entry whose KEK unwrapped the data key.
        warning: set when a header slot was damaged or an interrupted rewrap
            was recovered from; ``rewrap_file`` repairs it.
    """

    path: Path
    file_id: str
    suite: str
    plaintext_size: int
    unwrapped_by: KeyEntry
    warning: str | None


@dataclass(frozen=True)
class RewrapResult:
    """The outcome of :func:`rewrap_file`.

    Attributes:
        path: the rewrapped file.
        file_id: hex file id.
        generation: the new header generation.
        before: entries before.
        after: entries after.
        repaired: the header had a damaged or stale slot, now cleared.
    """

    path: Path
    file_id: str
    generation: int
    before: tuple[KeyEntry, ...]
    after: tuple[KeyEntry, ...]
    repaired: bool


@dataclass(frozen=True)
class FileInfo:
    """Header facts of a sealed file, read without any key (NOT authenticated).

    Attributes:
        path: the file.
        file_id: hex file id.
        suite: the payload algorithm.
        suite_title: the full construction name.
        size: bytes on disk.
        plaintext_size: from the payload length, or None if that is impossible.
        segment_size: ciphertext segment size.
        slot_size: header slot size.
        generation: the newest decodable slot's generation (0 if none).
        entries: that slot's entries.
    """

    path: Path
    file_id: str
    suite: str
    suite_title: str
    size: int
    plaintext_size: int | None
    segment_size: int
    slot_size: int
    generation: int
    entries: tuple[KeyEntry, ...]


def key_entries(wrapped: Sequence[WrappedKey]) -> tuple[KeyEntry, ...]:
    """The KEK names and versions of ``wrapped``, without the blobs."""
    return tuple(KeyEntry(w.kek_uri, w.version) for w in wrapped)


def labels(entries: Sequence[KeyEntry]) -> list[str]:
    """``<kek_uri>@<version>`` of each entry, as the audit log records them."""
    return [f"{e.kek_uri}@{e.version}" for e in entries]
