"""Full verification of a ledger against its signed checkpoints.

For every kept entry: the leaf is canonical, its hash matches, its columns
match the leaf, sequence numbers have no gaps, ``prev`` links to the previous
leaf hash, and the entry sits in the segment its signed range says. Every
segment's tree is recomputed in one streaming pass (O(log n) memory) and
compared with every stored checkpoint of it, and with any independently
obtained (trusted) checkpoint. The chain of final checkpoints is followed
across all segments, including pruned ones whose entries are gone; only a
prefix of old segments may lack entries, and only if a ``ledger.prune``
event records it.

What this detects (attacker with write access to the database, without the
signing key): an edited, deleted, inserted, swapped or renumbered entry,
recomputed leaf hashes and ``prev`` links (caught by the next signed
checkpoint: the report gives the range between the last good and the first
bad checkpoint), forged, edited, deleted or replayed checkpoints, a deleted
segment in the middle, entries deleted early and disguised as retention
without a prune record, a damaged frontier.

The global tree, the trust state and the witness policy are checked in the
same pass by :mod:`sealtune.ledger.verify_global`.

What it cannot detect: changes to entries after the newest signed checkpoint
(reported as the unsigned tail), or removal of the newest checkpoints together
with the entries after the previous ones (tail truncation), unless a later
checkpoint obtained elsewhere (the trust state, an auditor's copy) is passed
as trusted; a fake prune event appended by someone who can write the file (it
is itself logged and visible).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sealtune.core.hashchain import CompactRange, leaf_hash
from sealtune.core.note import NoteVerifier
from sealtune.errors import IntegrityError
from sealtune.ledger.base import DEFAULT_RETENTION, EntryRow, ReadTxn, SegmentRow
from sealtune.ledger.checkpoint import note_hash, open_segment_checkpoint
from sealtune.ledger.entry import ZERO_PREV, canonical_json, parse_leaf
from sealtune.ledger.kept import check_kept
from sealtune.ledger.report import MAX_PROBLEMS, Problem, VerifyReport
from sealtune.ledger.verify_global import GlobalCheck, GlobalSummary, WitnessPolicy

_COLUMNS = ("seq", "segment", "time", "actor", "action", "resource", "outcome", "prev")


@dataclass
class _Seg:
    n: int
    cps: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # size -> root, note hash
    trusted: dict[int, bytes] = field(default_factory=dict)
    first_seq: int | None = None
    prev: bytes | None = None
    final: int | None = None
    frontier: CompactRange = field(default_factory=CompactRange)
    start: int | None = None  # first seq actually seen
    guess: int | None = None  # where it should start, when no signature says so
    last_hash: bytes | None = None
    last_good: int = 0
    mismatch: bool = False

    def base(self) -> int:
        if self.first_seq is not None:
            return self.first_seq
        return self.start or self.guess or 1


class _Run:
    def __init__(self, txn: ReadTxn, prefix: str, verifiers: Sequence[NoteVerifier]) -> None:
        self.txn, self.prefix, self.verifiers = txn, prefix, verifiers
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.segs: dict[int, _Seg] = {}
        self.rows: dict[int, SegmentRow] = {s.segment: s for s in txn.segments()}
        self.valid = 0
        self.checked = 0
        self.prunes: list[tuple[int, int]] = []  # (through_segment, seq)
        self.row_bad: list[int] = []  # seqs of rows found bad by themselves
        self.total = 0
        self.first: Problem | None = None  # lowest seq, kept even past MAX_PROBLEMS

    def fail(self, seq: int | None, reason: str, rng: tuple[int, int] | None = None) -> None:
        problem = Problem(seq, reason, rng)
        self.total += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        if seq is not None and (self.first is None or seq < (self.first.seq or 0)):
            self.first = problem

    def problem_count(self) -> int:
        return self.total

    def fail_row(self, seq: int, reason: str) -> None:
        """A failure that pins down this very row (not merely a broken link to it)."""
        self.row_bad.append(seq)
        self.fail(seq, reason)

    def seg(self, n: int) -> _Seg:
        return self.segs.setdefault(n, _Seg(n))

    def load_checkpoints(self, trusted: Sequence[str]) -> None:
        for row in self.txn.checkpoints():
            try:
                sc = open_segment_checkpoint(row.note, self.verifiers, self.prefix)
            except IntegrityError:
                self.fail(None, f"the checkpoint of segment {row.segment} at size {row.size} "
                          "does not verify (forged, edited, or signed by another key)")
                continue
            if (sc.segment, sc.size) != (row.segment, row.size):
                self.fail(None, f"a checkpoint stored as segment {row.segment} size {row.size} "
                          f"is for segment {sc.segment} size {sc.size} (moved or replayed)")
                continue
            if self._bind(sc.segment, sc.first_seq, sc.prev_note_hash):
                self.seg(sc.segment).cps[sc.size] = (sc.root, note_hash(row.note))
                self.valid += 1
        for note in trusted:
            try:
                sc = open_segment_checkpoint(note, self.verifiers, self.prefix)
            except IntegrityError:
                self.fail(None, "a trusted checkpoint does not verify with the given key(s)")
                continue
            if self._bind(sc.segment, sc.first_seq, sc.prev_note_hash):
                self.seg(sc.segment).trusted[sc.size] = sc.root
        for n in range(1, max([*self.rows, *self.segs, 1]) + 1):
            self.seg(n)

    def _bind(self, n: int, first_seq: int, prev: bytes | None) -> bool:
        seg = self.seg(n)
        if seg.first_seq is None:
            seg.first_seq, seg.prev = first_seq, prev
        elif (seg.first_seq, seg.prev) != (first_seq, prev):
            self.fail(first_seq, f"checkpoints of segment {n} disagree on where it starts "
                      "(signed twice with different histories)")
            return False
        return True

    def link_segments(self) -> None:
        last = max(self.segs)
        for n in range(2, last + 1):
            cur, prev = self.segs[n], self.segs[n - 1]
            if not cur.cps:
                cur.guess = prev.base() + max(prev.cps, default=0)
                if cur.trusted:
                    self.fail(cur.guess, "the log was truncated: "
                              f"segment {n}, covered by a trusted checkpoint, is missing")
                else:
                    self.fail(cur.guess, f"segment {n} has no valid checkpoint, so the end of "
                              f"segment {n - 1} cannot be established (checkpoints deleted?)")
                continue
            finals = [size for size, (_, h) in prev.cps.items() if h == cur.prev]
            if not finals:
                top = max(prev.cps, default=0)
                self.fail(prev.base() + top, f"segment {n} links to a final checkpoint of "
                          f"segment {n - 1} that is missing or was replaced")
                continue
            prev.final = finals[0]
            row = self.rows.get(n)
            if row is not None and row.prev_note_hash != cur.prev:
                self.fail(None, f"the stored link of segment {n} differs from the signed one")
            if max(prev.cps) > prev.final:
                self.fail(prev.base() + prev.final, f"segment {n - 1} has a checkpoint beyond "
                          "its final size")
            if prev.first_seq is not None and cur.first_seq != prev.first_seq + prev.final:
                self.fail(prev.first_seq + prev.final, f"segment {n} does not start right "
                          f"after segment {n - 1}")

    def _bounds(self) -> list[tuple[int, int]]:
        """(first seq, segment) pairs, ascending; signed starts where known."""
        out = []
        for n, seg in self.segs.items():
            row = self.rows.get(n)
            start = seg.first_seq or (row.first_seq if row else None) or seg.guess
            if start is not None:
                out.append((start, n))
        return sorted(out)

    def scan(self, on_leaf: Callable[[int, bytes], None]) -> None:
        bounds = self._bounds()
        starts = [start for start, _ in bounds]
        cur: _Seg | None = None
        last_seq: int | None = None
        last_hash = ""
        for row in self.txn.scan():
            self.checked += 1
            seq, leaf = row.seq, bytes(row.leaf)
            h = leaf_hash(leaf)
            on_leaf(seq, h)
            claimed, prev = self._check_row(row, leaf, h)
            i = bisect_right(starts, seq) - 1
            if i < 0:
                self.fail_row(seq, f"entry {seq} lies before the start of the log")
                continue
            # Membership follows the signed sequence ranges, not the row's own claim.
            n = bounds[i][1]
            if claimed != n:
                self.fail_row(seq, f"entry {seq} claims segment {claimed} but belongs to "
                              f"segment {n}")
            if last_seq is not None and seq != last_seq + 1:
                self.fail_row(last_seq + 1, f"entries {last_seq + 1} to {seq - 1} are missing")
            if cur is None or n != cur.n:
                cur = self._enter(cur, n, seq)
            expected_prev = ZERO_PREV if seq == 1 else last_hash if last_seq == seq - 1 else None
            if expected_prev is not None and prev != expected_prev:
                self.fail(seq, f"entry {seq} does not link to the leaf hash of entry {seq - 1}")
            last_seq, last_hash = seq, h.hex()
            cur.frontier.append(h)
            cur.last_hash = h
            self._check_root(cur)
        if cur is not None:
            self._leave(cur)

    def _check_row(self, row: EntryRow, leaf: bytes, h: bytes) -> tuple[int, str]:
        """Check one row against its own leaf; return the leaf's segment and prev."""
        seq = row.seq
        if h != bytes(row.leaf_hash):
            self.fail_row(seq, f"entry {seq}: the stored leaf hash does not match its leaf")
        try:
            obj = parse_leaf(leaf, check_event=False)
        except ValueError:
            self.fail_row(seq, f"entry {seq}: the stored leaf is malformed")
            return row.segment, row.prev
        diff = [c for c in _COLUMNS if obj[c] != getattr(row, c)]
        if canonical_json(obj["details"]).decode("utf-8") != row.details:
            diff.append("details")
        if diff:
            self.fail_row(seq, f"entry {seq}: column(s) {', '.join(diff)} differ from the leaf")
        if obj["action"] == "ledger.prune" and obj["outcome"] == "success":
            through = obj["details"].get("through_segment")
            if type(through) is int:
                self.prunes.append((through, seq))
            kept = obj["details"].get("older_than_seconds")
            if type(kept) is int and kept < DEFAULT_RETENTION.total_seconds():
                self.warnings.append(f"entry {seq} records a prune with a retention of "
                                     f"{kept // 86400} days, shorter than the default "
                                     f"{DEFAULT_RETENTION.days}")
        return int(obj["segment"]), str(obj["prev"])

    def _enter(self, cur: _Seg | None, n: int, seq: int) -> _Seg:
        if cur is not None:
            self._leave(cur)
        new = self.segs[n]
        new.start = seq
        if new.first_seq is not None and seq != new.first_seq:
            self.fail_row(new.first_seq, f"entries {new.first_seq} to {seq - 1} at the start "
                          f"of segment {n} are missing")
        return new

    def _check_root(self, seg: _Seg) -> None:
        size = seg.frontier.size
        signed = seg.cps.get(size)
        trusted = seg.trusted.get(size)
        if signed is None and trusted is None:
            return
        root = seg.frontier.root()
        signed_bad = signed is not None and signed[0] != root
        if not (signed_bad or (trusted is not None and trusted != root)):
            seg.last_good = size
        elif not seg.mismatch:
            seg.mismatch = True
            lo, hi = seg.base() + seg.last_good, seg.base() + size - 1
            which = "signed" if signed_bad else "trusted"
            # A row already found bad by itself inside the range is the precise answer;
            # otherwise only the range is known and its lower bound is reported.
            pinned = min((s for s in self.row_bad if lo <= s <= hi), default=lo)
            self.fail(pinned, f"segment {seg.n}: entries {lo} to {hi} do not match the {which} "
                      f"checkpoint at size {size} (rewritten after signing)", (lo, hi))

    def _leave(self, seg: _Seg) -> None:
        count = seg.frontier.size
        sizes = sorted({*seg.cps, *seg.trusted})
        if sizes and sizes[-1] > count:
            lo = seg.base() + count
            self.fail(lo, f"segment {seg.n}: {sizes[-1] - count} signed entries from entry {lo} "
                      "are missing", (lo, seg.base() + sizes[-1] - 1))
        if seg.final is not None and count > seg.final:
            self.fail(seg.base() + seg.final, f"segment {seg.n} holds {count - seg.final} "
                      "entries after its final checkpoint (inserted)")
        row = self.rows.get(seg.n)
        if row is None:
            self.fail(None, f"segment {seg.n} has entries but no stored segment record")
        elif row.frontier != seg.frontier.to_bytes() or row.chain_head != seg.last_hash:
            self.fail(None, f"the stored state of segment {seg.n} does not match its entries "
                      "(new entries or checkpoints would extend a wrong tree)")

    def check_gaps(self) -> list[int]:
        """Classify segments without entries; return the legitimately pruned ones."""
        last = max(self.segs)
        kept = [s.n for s in self.segs.values() if s.start is not None]
        first_kept = min(kept, default=last)
        pruned: list[int] = []
        for n in sorted(self.segs):
            seg = self.segs[n]
            top = max([*seg.cps, *seg.trusted], default=0)
            if seg.start is not None or top == 0:
                continue
            if n == last or n > first_kept:
                self.fail(seg.base(), f"the entries of segment {n} were deleted "
                          "(only a prefix of old, closed segments may be pruned)")
                continue
            pruned.append(n)
            for size, root in seg.trusted.items():
                if size not in seg.cps:
                    self.warnings.append(f"a trusted checkpoint of pruned segment {n} at size "
                                         f"{size} cannot be checked: its entries are gone")
                elif seg.cps[size][0] != root:
                    self.fail(seg.base(), f"pruned segment {n} has a checkpoint that disagrees "
                              "with a trusted one")
        through = max((t for t, _ in self.prunes), default=0)
        if pruned and pruned[-1] > through:
            n = next(p for p in pruned if p > through)
            self.fail(self.segs[n].base(), f"segments {n} to {pruned[-1]} have no entries and "
                      "no ledger.prune event records their pruning")
        return pruned

    def report(
        self, pruned: list[int], checkpoint_every: int, glob: GlobalSummary
    ) -> VerifyReport:
        last = self.segs[max(self.segs)]
        signed = max(last.cps, default=0)
        tail = max(0, last.frontier.size - signed) if last.start is not None else 0
        signed_through = last.base() + signed - 1 if signed else max(last.base() - 1, 0)
        if tail:
            self.warnings.append(
                f"{tail} entries after entry {signed_through} are not covered by a signed "
                "checkpoint yet; they can be changed or removed undetected until one is signed")
        if tail > checkpoint_every:
            self.warnings.append(
                f"the unsigned tail exceeds checkpoint_every ({checkpoint_every}): a checkpoint "
                "may have been deleted, or no process holding the signer has appended")
        signed_through_prune = max((t for t, s in self.prunes if s <= signed_through), default=0)
        if pruned and signed_through_prune < pruned[-1]:
            self.warnings.append("the pruning of old segments is recorded only in unsigned "
                                 "entries so far")
        first = self.first
        lead = first or (self.problems[0] if self.problems else None)
        if lead is None:
            reason = (f"{self.checked} entries in {len(self.segs)} segments match "
                      f"{self.valid} signed checkpoints")
        else:
            reason = lead.reason
        return VerifyReport(
            ok=self.total == 0, first_bad_seq=None if first is None else first.seq,
            bad_range=None if first is None else first.range, reason=reason,
            problems=tuple(self.problems), problem_count=self.total, entries_checked=self.checked,
            segments=len(self.segs), checkpoints=self.valid, pruned_segments=len(pruned),
            unsigned_tail=tail, signed_through_seq=signed_through, warnings=tuple(self.warnings),
            global_checkpoints=glob.checkpoints, global_size=glob.size,
            global_checkpoint=glob.note, cosigned=glob.cosigned,
            witnesses_required=glob.required,
        )


def verify_store(
    txn: ReadTxn, *, prefix: str, verifiers: Sequence[NoteVerifier], trusted: Sequence[str] = (),
    trust_state: str | None = None, witnesses: WitnessPolicy | None = None,
    checkpoint_every: int = 1000,
) -> VerifyReport:
    """Verify everything in one read snapshot of a ledger store.

    Args:
        txn: a read transaction of the store.
        prefix: the ledger's origin prefix (the global checkpoints' origin).
        verifiers: trusted checkpoint verifier(s).
        trusted: checkpoint notes (global or segment) obtained independently of this store.
        trust_state: the workspace trust state's global checkpoint note.
        witnesses: a k-of-n witness policy for the newest global checkpoint.
        checkpoint_every: the expected checkpoint interval (for warnings).

    Returns:
        The report (never raises for integrity failures).
    """
    run = _Run(txn, prefix, verifiers)
    glob = GlobalCheck(txn, prefix, verifiers, run)
    run.load_checkpoints(glob.load(trusted, trust_state))
    run.link_segments()
    glob.pruned(run.segs)
    run.scan(glob.leaf)
    check_kept(txn, run.fail_row)
    pruned = run.check_gaps()
    glob.finish()
    glob.witnesses(witnesses)
    return run.report(pruned, checkpoint_every, glob.summary)
