"""The LedgerStore port: where ledger rows live (a SQLite file, or PostgreSQL).

A store offers two kinds of transaction: :meth:`LedgerStore.write`, which is
exclusive across processes (SQLite ``BEGIN IMMEDIATE``; PostgreSQL a
transaction-scoped advisory lock), and
:meth:`LedgerStore.read`, a consistent snapshot. Everything the ledger needs
(append, checkpoint, prune, proofs, verify) is built from the row operations
of :class:`ReadTxn` and :class:`WriteTxn`, so an adapter is one small file.

What this protects against: nothing by itself; stores are untrusted. Every
guarantee comes from :mod:`sealtune.ledger.verify` recomputing hashes and
checking signed checkpoints, so a store that lies (or a file edited by an
attacker) is detected, not trusted.

What it does not: a store cannot stop someone with write access to its files
from deleting or rewriting them; it only keeps honest writers consistent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from sealtune.errors import SealtuneError

#: The retention period the product defaults to (a legal requirement).
DEFAULT_RETENTION = timedelta(days=180)


class LedgerError(SealtuneError):
    """The ledger was used wrongly or is in a state that forbids the request."""

    prefix = "ledger"


@dataclass(frozen=True)
class SegmentRow:
    """Stored state of one segment (an RFC 6962 tree).

    Attributes:
        segment: segment number, from 1.
        first_seq: sequence number of its first entry.
        size: number of entries appended to it.
        frontier: the serialised compact range (None once pruned).
        first_time: canonical time of its first entry (None while empty).
        last_time: canonical time of the log's last entry when it was written.
        prev_note_hash: SHA-256 of the previous segment's final checkpoint note.
        chain_head: leaf hash of the log's last entry up to this segment.
        pruned: whether its entries were deleted by retention.
    """

    segment: int
    first_seq: int
    size: int
    frontier: bytes | None
    first_time: str | None
    last_time: str | None
    prev_note_hash: bytes | None
    chain_head: bytes | None
    pruned: bool = False


@dataclass(frozen=True)
class EntryRow:
    """Stored columns of one entry, plus its leaf bytes and leaf hash."""

    seq: int
    segment: int
    time: str
    actor: str
    action: str
    resource: str
    outcome: str
    details: str
    prev: str
    leaf: bytes
    leaf_hash: bytes


@dataclass(frozen=True)
class CheckpointRow:
    """A stored signed checkpoint note of one segment at one size."""

    segment: int
    size: int
    note: str


@dataclass(frozen=True)
class GlobalCheckpointRow:
    """A stored signed checkpoint of the global tree (origin ``<origin>``).

    Attributes:
        size: number of entries covered (sequence numbers 1 to ``size``).
        note: the signed note.
        frontier: the compact range at ``size`` (to extend it without rereading).
    """

    size: int
    note: str
    frontier: bytes


@dataclass(frozen=True)
class EntryFilter:
    """Equality and time-range filters for entry queries (None = any)."""

    since: str | None = None
    until: str | None = None
    actor: str | None = None
    action: str | None = None
    resource: str | None = None
    outcome: str | None = None


class ReadTxn(Protocol):
    """Row reads inside one consistent snapshot."""

    def get_meta(self, key: str) -> str | None:
        """Return a metadata value, or None."""
        ...

    def segments(self) -> list[SegmentRow]:
        """Return all segment rows, ascending."""
        ...

    def last_segment(self) -> SegmentRow | None:
        """Return the open (highest-numbered) segment, or None if there is none."""
        ...

    def checkpoints(self, segment: int | None = None) -> list[CheckpointRow]:
        """Return stored checkpoints (of one segment or all), by segment then size."""
        ...

    def latest_checkpoint(self, segment: int) -> CheckpointRow | None:
        """Return the largest stored checkpoint of ``segment``, or None."""
        ...

    def entry(self, seq: int) -> EntryRow | None:
        """Return one entry row, or None."""
        ...

    def query(self, flt: EntryFilter, *, after_seq: int, limit: int) -> list[EntryRow]:
        """Return up to ``limit`` matching rows with ``seq > after_seq``, ascending."""
        ...

    def scan(self) -> Iterator[EntryRow]:
        """Yield every entry row in ``seq`` order (for verification)."""
        ...

    def leaf_hashes(self, first_seq: int, count: int) -> list[bytes]:
        """Return the stored leaf hashes of ``count`` entries from ``first_seq``."""
        ...

    def tree_leaf_hashes(self, first_seq: int, count: int) -> list[bytes]:
        """Like :meth:`leaf_hashes`, but pruned entries' kept hashes come first."""
        ...

    def scan_pruned_hashes(self) -> Iterator[tuple[int, bytes]]:
        """Yield ``(seq, leaf hash)`` kept for pruned entries, in ``seq`` order."""
        ...

    def global_checkpoints(self) -> list[GlobalCheckpointRow]:
        """Return all stored global checkpoints, by size."""
        ...

    def global_checkpoint_at_most(self, size: int) -> GlobalCheckpointRow | None:
        """Return the largest stored global checkpoint of at most ``size`` entries."""
        ...

    def cosignatures(self, size: int) -> list[str]:
        """Return the stored cosignature lines of the global checkpoint at ``size``."""
        ...

    def cosigned_sizes(self) -> list[int]:
        """Return the sizes that have stored cosignatures, newest first."""
        ...

    def witness_size(self, url: str) -> int | None:
        """Return the size a witness at ``url`` last cosigned, as recorded here."""
        ...


class WriteTxn(ReadTxn, Protocol):
    """Row writes inside one exclusive transaction."""

    def set_meta(self, key: str, value: str) -> None:
        """Insert or replace a metadata value."""
        ...

    def put_segment(self, row: SegmentRow) -> None:
        """Insert or replace a segment row."""
        ...

    def insert_entries(self, rows: Sequence[EntryRow]) -> None:
        """Insert entry rows (their ``seq`` must be new)."""
        ...

    def insert_checkpoint(self, row: CheckpointRow) -> None:
        """Insert a checkpoint (ignored if that segment and size already exist)."""
        ...

    def delete_entries_before(self, seq: int) -> int:
        """Delete all entries with a smaller ``seq``; return how many."""
        ...

    def keep_hashes_before(self, seq: int) -> None:
        """Copy the leaf hashes of entries with a smaller ``seq`` to the pruned-hash table."""
        ...

    def insert_global_checkpoint(self, row: GlobalCheckpointRow) -> None:
        """Insert a global checkpoint (ignored if that size already exists)."""
        ...

    def put_cosignature(self, size: int, name: str, key_id: int, line: str) -> None:
        """Store (or replace) one witness's cosignature line of the checkpoint at ``size``."""
        ...

    def set_witness_size(self, url: str, size: int) -> None:
        """Record the size a witness at ``url`` last cosigned."""
        ...


class LedgerStore(Protocol):
    """The storage port of the audit ledger."""

    def read(self) -> AbstractContextManager[ReadTxn]:
        """Open a read-only snapshot transaction."""
        ...

    def write(self) -> AbstractContextManager[WriteTxn]:
        """Open an exclusive write transaction (committed on normal exit)."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...


#: An adapter's opener: ``(location, create)``; with ``create`` False a missing
#: ledger is an :class:`~sealtune.errors.IntegrityError`, never a fresh one.
StoreOpener = Callable[[str, bool], LedgerStore]

#: Store adapters by URL scheme (``sqlite`` for a file path); :func:`register_store`
#: refuses duplicates.
STORES: dict[str, StoreOpener] = {}


def store_scheme(location: Path | str) -> str:
    """The adapter a location names: a URL's scheme, else ``sqlite`` (a file path)."""
    text = str(location)
    scheme, sep, _ = text.partition("://")
    return scheme if sep and scheme.isalnum() else "sqlite"


def open_store(location: Path | str, *, create: bool) -> LedgerStore:
    """Open the store at ``location``: a SQLite file path or a ``postgresql://`` URL.

    Raises:
        LedgerError: no adapter for the URL's scheme (or it is not installed).
        IntegrityError: ``create`` is False and the ledger is missing.
    """
    scheme = store_scheme(location)
    if scheme == "postgresql" and scheme not in STORES:
        import sealtune.ledger.postgresql  # noqa: F401 - registers the adapter (lazy: psycopg)
    opener = STORES.get(scheme)
    if opener is None:
        raise LedgerError(f"no ledger store for {scheme}:// URLs",
                          hint=f"use a file path or one of: {', '.join(sorted(STORES))}")
    return opener(str(location), create)


def register_store(name: str, opener: StoreOpener) -> None:
    """Register a store adapter under ``name``.

    Raises:
        LedgerError: ``name`` is already registered.
    """
    if name in STORES:
        raise LedgerError(f"ledger store {name!r} is already registered")
    STORES[name] = opener
