"""The audit ledger facade: append, checkpoint, query, prove, prune, verify.

The log is a chain of segments, each an RFC 6962 Merkle tree with origin
``<origin>/segment/<n>``. Every append is one exclusive store transaction
that reads the open segment's compact range, adds the entry's leaf hash
(O(log n)), and signs a C2SP checkpoint every ``checkpoint_every`` entries,
when a segment closes (``segment_max_entries`` reached, or its first entry
older than ``segment_max_age``) and on demand. Each segment's checkpoints
carry the hash of the previous segment's final checkpoint, so retention can
delete old segments' entries and the signed chain still verifies.

What this protects against: silent edits, deletions, insertions or
reordering of entries and checkpoints by someone who can write the database
but does not hold the signing key (see :mod:`sealtune.ledger.verify`).

Besides the segments, one global tree over every entry carries the stable
origin ``<origin>`` (:mod:`sealtune.ledger.global_tree`): its checkpoints are
what a trust state outside the database (:mod:`sealtune.ledger.trust`), an
auditor (``trusted_checkpoints``) and witnesses keep, so that a rollback,
truncation or fork of the database is detected. :meth:`Ledger.seal` signs
everything unsigned; the workspace calls it before every command exits.

What it does not: it does not authenticate who appends (anyone who can write
the file can append true-looking events), it cannot detect removal of entries
after the newest signed checkpoint, or of the newest checkpoints themselves,
unless a later checkpoint was kept elsewhere (pass it to :meth:`Ledger.verify`),
and it does not keep sensitive data out of ``details`` (callers must). Without
a signer, appends work but nothing new is signed and segments do not close
until a process with the signer appends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TextIO

from sealtune.core.note import NoteSigner, NoteVerifier
from sealtune.errors import UsageError
from sealtune.ledger import export as _export
from sealtune.ledger.anchors import Anchors
from sealtune.ledger.base import (
    EntryFilter,
    LedgerError,
    LedgerStore,
    ReadTxn,
    open_store,
)
from sealtune.ledger.checkpoint import (
    ConsistencyProof,
    InclusionProof,
    build_consistency_proof,
    build_inclusion_proof,
    check_origin_prefix,
)
from sealtune.ledger.entry import (
    Entry,
    Event,
    JSONValue,
    Outcome,
    entry_from_row,
    format_time,
)
from sealtune.ledger.global_proofs import GlobalInclusionProof, build_global_inclusion_proofs
from sealtune.ledger.report import VerifyReport
from sealtune.ledger.sqlite import SqliteLedgerStore  # noqa: F401 - registers the default
from sealtune.ledger.verify import verify_store
from sealtune.ledger.verify_global import WitnessPolicy
from sealtune.ledger.writer import Writer

FORMAT = "sealtune-ledger-v1"
_PAGE = 1000


def utc_now() -> datetime:
    """Return the current time in UTC (the default ledger clock)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class PruneResult:
    """What :meth:`Ledger.prune` removed.

    Attributes:
        segments: the segments whose entries were deleted.
        entries_deleted: number of entries deleted.
        cutoff: entries of closed segments whose last entry is older were removed.
        event: the ``ledger.prune`` entry recording it (None if nothing was pruned).
    """

    segments: tuple[int, ...]
    entries_deleted: int
    cutoff: datetime
    event: Entry | None

    @property
    def segments_pruned(self) -> int:
        """How many segments were pruned."""
        return len(self.segments)


def _pruned_without_global_tree(txn: ReadTxn) -> bool:
    """A ledger pruned before the global tree existed cannot rebuild that tree."""
    if not any(s.pruned for s in txn.segments()):
        return False
    no_kept = next(iter(txn.scan_pruned_hashes()), None) is None
    return no_kept and txn.global_checkpoint_at_most(1 << 62) is None


class Ledger:
    """A tamper-evident, segmented, signed audit log. Use :meth:`open`."""

    def __init__(
        self, store: LedgerStore, *, signer: NoteSigner | None, origin: str,
        checkpoint_every: int, segment_max_entries: int, segment_max_age: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        if checkpoint_every < 1 or segment_max_entries < 1 or segment_max_age <= timedelta(0):
            raise UsageError(
                "checkpoint_every, segment_max_entries and segment_max_age must be positive"
            )
        self._store = store
        self._appended = False
        self._origin = check_origin_prefix(origin)
        self._every = checkpoint_every
        self._clock = clock
        self._writer = Writer(signer=signer, origin=self._origin, every=checkpoint_every,
                              max_entries=segment_max_entries, max_age=segment_max_age,
                              clock=clock)
        self._init()

    @classmethod
    def open(
        cls, path: Path | str, *, signer: NoteSigner | None, origin: str,
        checkpoint_every: int = 1000, segment_max_entries: int = 100_000,
        segment_max_age: timedelta = timedelta(days=1), clock: Callable[[], datetime] = utc_now,
        create: bool = True,
    ) -> Ledger:
        """Open (creating if needed) the ledger in a SQLite file or PostgreSQL.

        Args:
            path: the database file (created 0600), or a ``postgresql://`` URL
                (:mod:`sealtune.ledger.postgresql`).
            signer: the checkpoint signer; None makes this instance unable to sign.
            origin: the log's origin prefix, fixed at creation.
            checkpoint_every: sign a checkpoint at least every this many entries.
            segment_max_entries: close a segment at this many entries.
            segment_max_age: close a segment once its first entry is this old.
            clock: returns the current aware time (tests inject a fake).
            create: create the file if it is missing; with False a missing file is
                an integrity failure (a deleted ledger must never be silently replaced).

        Raises:
            LedgerError: the file is not a ledger or was created with another origin.
            IntegrityError: ``create`` is False and the file is missing.
            UsageError: invalid options.
        """
        store = open_store(path, create=create)
        try:
            return cls(store, signer=signer, origin=origin, checkpoint_every=checkpoint_every,
                       segment_max_entries=segment_max_entries, segment_max_age=segment_max_age,
                       clock=clock)
        except BaseException:
            store.close()
            raise

    def _init(self) -> None:
        with self._store.write() as txn:
            fmt = txn.get_meta("format")
            if fmt is None:
                txn.set_meta("format", FORMAT)
                txn.set_meta("origin", self._origin)
                self._writer.init(txn)
            elif fmt != FORMAT:
                raise LedgerError(f"unsupported ledger format {fmt!r}")
            elif txn.get_meta("origin") != self._origin:
                raise LedgerError(
                    "this ledger was created with another origin",
                    hint="open it with the origin it was created with",
                )
            elif _pruned_without_global_tree(txn):
                raise LedgerError(
                    "this ledger was pruned by a sealtune without the global tree: the hashes "
                    "of its pruned entries are gone, so rollback can no longer be checked",
                    hint="export it ('sealtune audit export'), keep the file, start a new ledger",
                )

    def close(self) -> None:
        """Close the underlying store."""
        self._store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def origin(self) -> str:
        """The origin: of the global checkpoints, and the prefix of ``<origin>/segment/<n>``."""
        return self._origin

    @property
    def appended(self) -> bool:
        """Whether this instance appended (or pruned) anything since it was opened."""
        return self._appended

    # -- append path -----------------------------------------------------------

    def append(
        self, *, actor: str, action: str, resource: str, outcome: Outcome = "success",
        details: Mapping[str, JSONValue] | None = None,
    ) -> Entry:
        """Append one event in its own transaction and return the entry.

        Raises:
            InvalidEventError: a field is invalid (see :class:`Event`).
        """
        event = Event(actor, action, resource, outcome, details or {})
        with self._store.write() as txn:
            entry = self._writer.append(txn, [event])[0]
        self._appended = True
        return entry

    def append_many(self, events: Iterable[Event | Mapping[str, Any]]) -> list[Entry]:
        """Append several events in one transaction (all or none).

        Raises:
            InvalidEventError: any event is invalid (nothing is appended).
        """
        batch = [Event.coerce(e) for e in events]
        if not batch:
            return []
        with self._store.write() as txn:
            entries = self._writer.append(txn, batch)
        self._appended = True
        return entries

    # -- checkpoints and proofs ---------------------------------------------

    def checkpoint(self) -> str:
        """Sign (or return) the open segment's checkpoint at its size, and the global one.

        Returns:
            The open segment's checkpoint note (see :meth:`seal` for the global one).

        Raises:
            LedgerError: this instance has no signer.
        """
        with self._store.write() as txn:
            return self._writer.checkpoint(txn)

    def seal(self) -> str:
        """Sign everything unsigned and return the newest global checkpoint note.

        Raises:
            LedgerError: this instance has no signer.
        """
        with self._store.write() as txn:
            return self._writer.seal(txn)

    def latest_checkpoint(self) -> str | None:
        """Return the newest stored checkpoint note of the open segment, if any."""
        with self._store.read() as txn:
            seg = txn.last_segment()
            row = None if seg is None else txn.latest_checkpoint(seg.segment)
            return None if row is None else row.note

    @property
    def anchors(self) -> Anchors:
        """The global checkpoints and what is kept outside the database: trust, witnesses."""
        return Anchors(self._store, self._origin)

    def entry(self, seq: int) -> Entry:
        """Return one entry by sequence number (no verification).

        Raises:
            LedgerError: no such entry (never appended, or pruned).
        """
        with self._store.read() as txn:
            row = txn.entry(seq)
        if row is None:
            raise LedgerError(f"ledger entry {seq} does not exist (or was pruned)")
        return entry_from_row(row)

    def inclusion_proof(self, seq: int) -> InclusionProof:
        """Prove entry ``seq`` against the newest checkpoint of its segment.

        Raises:
            LedgerError: the entry does not exist or no checkpoint covers it yet.
        """
        with self._store.read() as txn:
            return build_inclusion_proof(txn, seq)

    def global_inclusion_proofs(self, seqs: Iterable[int], *,
                                size: int | None = None) -> list[GlobalInclusionProof]:
        """Prove entries ``seqs`` against the stored global checkpoint at ``size`` (None:
        the newest) in one pass; a pruned entry by its kept hash (:mod:`.global_proofs`).

        Raises:
            LedgerError: no such checkpoint, or an entry it does not cover.
        """
        with self._store.read() as txn:
            return build_global_inclusion_proofs(txn, seqs, size=size)

    def consistency_proof(self, segment: int, old_size: int, new_size: int) -> ConsistencyProof:
        """Prove that ``segment`` at ``old_size`` is a prefix of it at ``new_size``.

        Both sizes must have stored checkpoints.

        Raises:
            LedgerError: no checkpoint at one of the sizes, or the segment was pruned.
        """
        with self._store.read() as txn:
            return build_consistency_proof(txn, segment, old_size, new_size)

    # -- queries, export, retention, verification ----------------------------

    def entries(
        self, *, since: datetime | None = None, until: datetime | None = None,
        actor: str | None = None, action: str | None = None, resource: str | None = None,
        outcome: str | None = None, limit: int | None = None,
    ) -> Iterator[Entry]:
        """Yield entries in sequence order matching all given filters.

        ``since`` is inclusive and ``until`` exclusive. Pages through the store,
        so no transaction stays open while the caller iterates. No verification.
        """
        flt = EntryFilter(None if since is None else format_time(since),
                          None if until is None else format_time(until),
                          actor, action, resource, outcome)
        after, left = 0, limit
        while left is None or left > 0:
            page = _PAGE if left is None else min(_PAGE, left)
            with self._store.read() as txn:
                rows = txn.query(flt, after_seq=after, limit=page)
            yield from (entry_from_row(r) for r in rows)
            if len(rows) < page:
                return
            after = rows[-1].seq
            left = None if left is None else left - len(rows)

    def export(
        self, fmt: Literal["jsonl", "csv"], out: TextIO, since: datetime | None = None
    ) -> int:
        """Write entries as JSONL (canonical leaves) or CSV; return the row count."""
        return _export.export_entries(self.entries(since=since), fmt, out)

    def prune(
        self, older_than: timedelta, *, now: datetime | None = None, actor: str = "sealtune"
    ) -> PruneResult:
        """Delete entries of closed segments whose last entry is older than the cutoff.

        Only a prefix of closed, fully checkpointed segments is pruned; the
        open segment never is. Checkpoints are kept, and a ``ledger.prune``
        event recording the deletion is appended (and signed when possible).

        Args:
            older_than: retention period (see ``DEFAULT_RETENTION``, 180 days).
            now: the current time (defaults to the ledger clock).
            actor: who requested the prune, recorded in the event.

        Raises:
            UsageError: ``older_than`` is not positive.
        """
        if older_than <= timedelta(0):
            raise UsageError("prune older_than must be a positive duration")
        now_dt = self._clock() if now is None else now
        with self._store.write() as txn:
            victims, deleted, event = self._writer.prune(txn, now=now_dt, older_than=older_than,
                                                         actor=actor)
        self._appended = self._appended or event is not None
        return PruneResult(tuple(s.segment for s in victims), deleted, now_dt - older_than, event)

    def verify(
        self, verifier: NoteVerifier | Sequence[NoteVerifier], *,
        trusted_checkpoints: Iterable[str] = (), trust_state: str | None = None,
        witnesses: WitnessPolicy | None = None,
    ) -> VerifyReport:
        """Check the whole ledger against its signed checkpoints.

        Args:
            verifier: the ledger's verifier key(s).
            trusted_checkpoints: checkpoint notes (global or segment) obtained
                independently (an auditor's copy, an earlier export); the log
                must still contain them, which makes rollback, truncation and
                rewrites after them detectable.
            trust_state: the workspace's trust state note (checked the same way,
                named as such in the report).
            witnesses: a k-of-n policy the newest global checkpoint must meet.

        Returns:
            The report; call ``report.raise_if_failed()`` to raise IntegrityError.
        """
        verifiers = [verifier] if isinstance(verifier, NoteVerifier) else list(verifier)
        with self._store.read() as txn:
            return verify_store(txn, prefix=self._origin, verifiers=verifiers,
                                trusted=list(trusted_checkpoints), trust_state=trust_state,
                                witnesses=witnesses, checkpoint_every=self._every)
