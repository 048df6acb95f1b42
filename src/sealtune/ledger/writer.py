"""The ledger's write engine (private): append, sign, close segments, prune.

Everything here runs inside one exclusive store transaction opened by
:class:`sealtune.ledger.log.Ledger`, so concurrent writers (threads or
processes) see and extend one consistent state: the open segment's compact
range, sequence number and chain head are read and written in the same
transaction as the entries and checkpoints.

What this protects against: interleaved or lost appends, a segment closing
without a signed final checkpoint, a prune losing the global tree's leaves,
pruning of anything but a prefix of closed, fully signed segments, signing a
checkpoint over a damaged frontier (refused with LedgerError).

What it does not: it trusts the stored state it extends (someone who edits
the database before the next signature gets the edit signed, exactly as if
they had appended it); :mod:`sealtune.ledger.verify` is what checks history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from sealtune.core.hashchain import CompactRange, leaf_hash
from sealtune.core.note import NoteSigner
from sealtune.ledger.base import CheckpointRow, EntryRow, LedgerError, SegmentRow, WriteTxn
from sealtune.ledger.checkpoint import SegmentCheckpoint, note_hash
from sealtune.ledger.entry import ZERO_PREV, Entry, Event, build_leaf, format_time, parse_time
from sealtune.ledger.global_tree import sign_global
from sealtune.ledger.kept import kept_events


class Writer:
    """Append and checkpoint logic over a write transaction (no I/O of its own).

    Args:
        signer: the checkpoint signer, or None (then nothing is signed and no
            segment is closed).
        origin: the ledger's origin prefix.
        every: sign at least every this many entries.
        max_entries: close a segment at this size.
        max_age: close a segment once its first entry is this old.
        clock: the ledger clock.
    """

    def __init__(
        self, *, signer: NoteSigner | None, origin: str, every: int, max_entries: int,
        max_age: timedelta, clock: Callable[[], datetime],
    ) -> None:
        self.signer = signer
        self.origin = origin
        self.every = every
        self.max_entries = max_entries
        self.max_age = max_age
        self.clock = clock
        self._close_at: tuple[int, str] | None = None
        # A lower bound of the newest global checkpoint's size (checkpoints are never
        # removed), so most appends need no query to know that none is due.
        self._global_hint = 0

    def init(self, txn: WriteTxn) -> None:
        """Create segment 1 (and sign its and the global tree's empty checkpoints)."""
        first = SegmentRow(1, 1, 0, CompactRange().to_bytes(), None, None, None, None)
        txn.put_segment(first)
        if self.signer is not None:
            self.sign(txn, first, CompactRange())
            sign_global(txn, self.signer, self.origin)

    def append(self, txn: WriteTxn, events: Sequence[Event]) -> list[Entry]:
        """Append events in order, closing segments and signing as due."""
        seg = open_segment(txn)
        frontier = frontier_of(seg)
        latest = txn.latest_checkpoint(seg.segment)
        signed = 0 if latest is None else latest.size
        rows: list[EntryRow] = []
        out: list[Entry] = []
        for event in events:
            now = self.now_text(seg)
            if self.due(seg, now):
                self._flush(txn, seg, frontier, rows)
                seg, frontier = self.close_segment(txn, seg, frontier)
                signed = 0
            seq = seg.first_seq + seg.size
            prev = ZERO_PREV if seg.chain_head is None else seg.chain_head.hex()
            leaf = build_leaf(seq=seq, time=now, event=event, segment=seg.segment, prev=prev)
            h = leaf_hash(leaf)
            frontier.append(h)
            rows.append(EntryRow(seq, seg.segment, now, event.actor, event.action, event.resource,
                                 event.outcome, event.details_json, prev, leaf, h))
            out.append(Entry(seq, now, event.actor, event.action, event.resource,
                             event.outcome, event.details, seg.segment, prev, leaf, h))
            seg = replace(seg, size=seg.size + 1, first_time=seg.first_time or now,
                          last_time=now, chain_head=h)
            if self.signer is not None and seg.size - signed >= self.every:
                self.sign(txn, seg, frontier)
                signed = seg.size
        self._flush(txn, seg, frontier, rows)
        if self.signer is not None:
            self._global_due(txn, self.signer, seg.first_seq + seg.size - 1,
                             [e.leaf_hash for e in out])
        return out

    def _global_due(self, txn: WriteTxn, signer: NoteSigner, size: int,
                    fresh: list[bytes]) -> None:
        """Sign the global tree if ``every`` entries are unsigned (once per transaction)."""
        if size - self._global_hint < self.every:
            return
        latest = txn.global_checkpoint_at_most(size)
        self._global_hint = 0 if latest is None else latest.size
        if size - self._global_hint >= self.every:
            self._global_hint = sign_global(txn, signer, self.origin, known=fresh).size

    def now_text(self, seg: SegmentRow) -> str:
        """The append time: the clock, but never before the previous entry's time."""
        now = format_time(self.clock())
        return now if seg.last_time is None or now >= seg.last_time else seg.last_time

    def due(self, seg: SegmentRow, now: str) -> bool:
        """Whether the open segment must close before the next append at ``now``."""
        if self.signer is None or seg.size == 0 or seg.first_time is None:
            return False
        if seg.size >= self.max_entries:
            return True
        if self._close_at is None or self._close_at[0] != seg.segment:
            deadline = parse_time(seg.first_time) + self.max_age
            self._close_at = (seg.segment, format_time(deadline))
        return now >= self._close_at[1]

    def close_segment(
        self, txn: WriteTxn, seg: SegmentRow, frontier: CompactRange
    ) -> tuple[SegmentRow, CompactRange]:
        """Sign ``seg``'s final checkpoint, open the next segment and sign its size 0."""
        final = self.sign(txn, seg, frontier)
        new = SegmentRow(seg.segment + 1, seg.first_seq + seg.size, 0, CompactRange().to_bytes(),
                         None, seg.last_time, note_hash(final), seg.chain_head)
        txn.put_segment(new)
        self.sign(txn, new, CompactRange())
        return new, CompactRange()

    def sign(self, txn: WriteTxn, seg: SegmentRow, frontier: CompactRange) -> str:
        """Sign (or return the stored) checkpoint of ``seg`` at its current size.

        Raises:
            LedgerError: no signer, or the frontier does not match the segment.
        """
        if self.signer is None:
            raise LedgerError(
                "this ledger instance has no signer", hint="open it with the ledger's NoteSigner"
            )
        if frontier.size != seg.size:
            raise LedgerError(f"segment {seg.segment} state is inconsistent; run verify")
        latest = txn.latest_checkpoint(seg.segment)
        if latest is not None and latest.size == seg.size:
            return latest.note
        body = SegmentCheckpoint(self.origin, seg.segment, seg.size, frontier.root(),
                                 seg.first_seq, seg.prev_note_hash).to_text()
        note = self.signer.sign(body)
        txn.insert_checkpoint(CheckpointRow(seg.segment, seg.size, note))
        return note

    def checkpoint(self, txn: WriteTxn) -> str:
        """Sign the open segment and the global tree at their current sizes.

        Returns:
            The open segment's checkpoint note.
        """
        seg = open_segment(txn)
        note = self.sign(txn, seg, frontier_of(seg))
        self.seal(txn)
        return note

    def seal(self, txn: WriteTxn) -> str:
        """Sign whatever is unsigned (open segment and global tree); return the global note.

        Raises:
            LedgerError: no signer, or damaged stored state.
        """
        if self.signer is None:
            raise LedgerError(
                "this ledger instance has no signer", hint="open it with the ledger's NoteSigner"
            )
        seg = open_segment(txn)
        self.sign(txn, seg, frontier_of(seg))
        row = sign_global(txn, self.signer, self.origin)
        self._global_hint = row.size
        return row.note

    def prune(
        self, txn: WriteTxn, *, now: datetime, older_than: timedelta, actor: str
    ) -> tuple[list[SegmentRow], int, Entry | None]:
        """Delete the prunable prefix of segments and record it; see ``Ledger.prune``."""
        seg = open_segment(txn)
        if self.due(seg, format_time(now)):
            self.close_segment(txn, seg, frontier_of(seg))
        cutoff = format_time(now - older_than)
        victims = prunable(txn, cutoff)
        if not victims:
            return [], 0, None
        end = victims[-1].first_seq + victims[-1].size
        kept = kept_events(txn, before=end, actor=actor)  # quoted before they go
        txn.keep_hashes_before(end)  # the global tree keeps its leaves (32 bytes per entry)
        deleted = txn.delete_entries_before(end)
        for s in victims:
            txn.put_segment(replace(s, frontier=None, pruned=True))
        details = {"first_segment": victims[0].segment, "through_segment": victims[-1].segment,
                   "entries": deleted, "cutoff": cutoff,
                   "older_than_seconds": int(older_than.total_seconds()), "kept": len(kept)}
        event = self.append(txn, [Event(actor, "ledger.prune", self.origin, "success", details),
                                  *kept])
        if self.signer is not None:
            self.checkpoint(txn)
        return victims, deleted, event[0]

    @staticmethod
    def _flush(
        txn: WriteTxn, seg: SegmentRow, frontier: CompactRange, rows: list[EntryRow]
    ) -> None:
        if rows:
            txn.insert_entries(rows)
            rows.clear()
        txn.put_segment(replace(seg, frontier=frontier.to_bytes()))


def open_segment(txn: WriteTxn) -> SegmentRow:
    """Return the open segment.

    Raises:
        LedgerError: there is none (damaged database).
    """
    seg = txn.last_segment()
    if seg is None:
        raise LedgerError("the ledger has no segment; the database is damaged, run verify")
    return seg


def frontier_of(seg: SegmentRow) -> CompactRange:
    """Return a segment's stored compact range.

    Raises:
        LedgerError: missing, malformed, or not of the segment's size.
    """
    try:
        frontier = CompactRange.from_bytes(seg.frontier or b"")
    except ValueError:
        frontier = None
    if frontier is None or frontier.size != seg.size:
        raise LedgerError(f"segment {seg.segment} frontier is damaged; run verify")
    return frontier


def prunable(txn: WriteTxn, cutoff: str) -> list[SegmentRow]:
    """The oldest closed, unpruned, fully signed segments whose last entry < ``cutoff``."""
    victims = []
    for seg in txn.segments()[:-1]:
        if seg.pruned:
            continue
        latest = txn.latest_checkpoint(seg.segment)
        if seg.last_time is None or seg.last_time >= cutoff or latest is None:
            break
        if latest.size != seg.size:
            break
        victims.append(seg)
    return victims
