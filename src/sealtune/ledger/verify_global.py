"""Verification of the global tree, the trust state and the witness policy.

Runs inside :func:`sealtune.ledger.verify.verify_store`, in the same read
snapshot and the same streaming pass as the segment checks: the global tree is
recomputed from the kept hashes of pruned entries and then every entry's
recomputed leaf hash, in sequence order (O(log n) memory), and compared with
every stored global checkpoint, with the trust state and with any trusted
global checkpoint at their sizes. The kept hashes of each pruned segment must
also reproduce that segment's signed final root. With a witness policy, the
newest global checkpoint must carry at least ``k`` valid cosignatures from
the policy's witness keys.

What this detects: a deleted database replaced by another, a rollback to an
older copy, truncation (entries and checkpoints after some point deleted), a
fork or rewrite of signed entries, relative to any checkpoint kept outside
the database; forged, edited or moved global checkpoints; damaged compact
ranges; edited kept hashes of pruned entries; forged cosignatures (never
counted) and too few of them.

What it cannot detect: a rollback of both the database and the trust state to
an older consistent pair, unless an auditor's checkpoint or a witness that saw
a newer one is consulted; cosignatures from a rolled-back state still verify
for the older checkpoint they signed (the witnesses refuse to go back: see
``audit checkpoint --witness``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sealtune.core.cosignature import (
    CosignatureLine,
    CosignatureVerifier,
    check_cosignatures,
    parse_signature_line,
)
from sealtune.core.hashchain import CompactRange
from sealtune.core.note import NoteVerifier
from sealtune.core.note import parse_note as _split_note
from sealtune.errors import IntegrityError, UsageError
from sealtune.ledger.base import ReadTxn
from sealtune.ledger.global_tree import is_global_note, open_global_checkpoint


@dataclass(frozen=True)
class WitnessPolicy:
    """At least ``k`` of these witnesses must cosign a recent global checkpoint.

    Attributes:
        k: how many distinct witnesses must cosign.
        verifiers: the witness keys (cosignature v1 vkeys).
        max_unwitnessed: at most this many entries may follow the newest global
            checkpoint that ``k`` of them cosigned (0: the newest one itself).

    Raises:
        UsageError: ``k`` is not between 1 and the number of keys, or a key repeats.
    """

    k: int
    verifiers: tuple[CosignatureVerifier, ...]
    max_unwitnessed: int = 0

    def __post_init__(self) -> None:
        ids = {(v.name, v.key_id) for v in self.verifiers}
        if len(ids) != len(self.verifiers):
            raise UsageError("the witness policy lists a witness key twice")
        if not 1 <= self.k <= len(self.verifiers):
            raise UsageError(f"witness policy k={self.k} must be between 1 and the number of "
                             f"witness keys ({len(self.verifiers)})")

    @classmethod
    def from_keys(cls, k: int, keys: Iterable[str], *, max_unwitnessed: int = 0
                  ) -> WitnessPolicy:
        """Build a policy from vkey strings.

        Raises:
            ConfigError: a key is malformed.
            UsageError: as the constructor.
        """
        return cls(k, tuple(CosignatureVerifier.from_key_string(key) for key in keys),
                   max_unwitnessed)


class Failer(Protocol):
    """Where problems and warnings go (the segment verifier's run)."""

    warnings: list[str]

    def problem_count(self) -> int:
        """How many problems were recorded so far."""
        ...

    def fail(self, seq: int | None, reason: str, rng: tuple[int, int] | None = None) -> None:
        """Record one problem."""
        ...


class PrunedSegment(Protocol):
    """What the check needs to know of a segment: its signed start and final root."""

    first_seq: int | None
    final: int | None
    cps: dict[int, tuple[bytes, bytes]]


@dataclass(frozen=True)
class GlobalSummary:
    """Global-tree figures for the report.

    Attributes:
        checkpoints: stored global checkpoints whose signature verified.
        size: entries covered by the newest valid global checkpoint.
        note: that checkpoint's note.
        cosigned: valid cosignatures on it from the policy's witnesses.
        required: ``k`` of the witness policy (0 without a policy).
    """

    checkpoints: int = 0
    size: int = 0
    note: str | None = None
    cosigned: int = 0
    required: int = 0


@dataclass
class GlobalCheck:
    """One verification run's view of the global tree. Use it in this order:
    :meth:`load`, :meth:`pruned`, :meth:`leaf` per entry, :meth:`finish`, :meth:`witnesses`."""

    txn: ReadTxn
    origin: str
    verifiers: Sequence[NoteVerifier]
    run: Failer
    cps: dict[int, tuple[bytes, str]] = field(default_factory=dict)  # size -> root, note
    trusted: dict[int, list[tuple[bytes, str]]] = field(default_factory=dict)  # -> root, label
    frontier: CompactRange = field(default_factory=CompactRange)
    broken: bool = False
    gap: tuple[int, int] | None = None
    summary: GlobalSummary = field(default_factory=GlobalSummary)

    def load(self, trusted: Sequence[str], trust_state: str | None) -> list[str]:
        """Check stored global checkpoints; split out trusted global notes.

        Returns:
            The trusted notes that are not global checkpoints (segment ones).
        """
        for row in self.txn.global_checkpoints():
            try:
                cp = open_global_checkpoint(row.note, self.verifiers, self.origin)
            except IntegrityError:
                self.run.fail(None, f"the global checkpoint at size {row.size} does not verify "
                              "(forged, edited, or signed by another key)")
                continue
            if cp.size != row.size:
                self.run.fail(None, f"a global checkpoint stored at size {row.size} is for size "
                              f"{cp.size} (moved or replayed)")
                continue
            self.cps[cp.size] = (cp.root, row.note)
            if not _frontier_ok(row.frontier, cp.size, cp.root):
                self.run.fail(None, f"the stored compact range of global checkpoint {cp.size} "
                              "is damaged (later checkpoints would extend a wrong tree)")
        labelled = [(note, "a trusted checkpoint") for note in trusted]
        if trust_state is not None:
            labelled.append((trust_state, "the trust state"))
        return [note for note, label in labelled if not self._trust(note, label)]

    def _trust(self, note: str, label: str) -> bool:
        """Record a trusted global note; return False if it is a segment checkpoint."""
        if not is_global_note(note, self.origin) and label != "the trust state":
            return False
        try:
            cp = open_global_checkpoint(note, self.verifiers, self.origin)
        except IntegrityError:
            self.run.fail(None, f"{label} does not verify with the given key(s) or is not a "
                          "global checkpoint of this ledger")
            return True
        self.trusted.setdefault(cp.size, []).append((cp.root, label))
        return True

    def pruned(self, segs: Mapping[int, PrunedSegment]) -> None:
        """Feed the kept hashes of pruned entries; check them against segment final roots."""
        starts = {s.first_seq: s for s in segs.values() if s.first_seq and s.final is not None}
        current: tuple[PrunedSegment, CompactRange] | None = None
        for seq, h in self.txn.scan_pruned_hashes():
            if seq in starts:
                current = (starts[seq], CompactRange())
            self.leaf(seq, h)
            if current is not None:
                seg, rng = current
                rng.append(h)
                if rng.size == seg.final:
                    if rng.root() != seg.cps[rng.size][0]:
                        self.run.fail(seq - rng.size + 1, "the kept leaf hashes of a pruned "
                                      "segment do not match its final checkpoint (edited)")
                    current = None

    def leaf(self, seq: int, leaf_hash: bytes) -> None:
        """Append the next leaf (entry ``seq``) and compare roots at checkpoint sizes."""
        if self.broken:
            return
        if seq != self.frontier.size + 1:
            # Missing entries are the segment checks' to name; see finish() for the rest.
            self.broken = True
            self.gap = (self.frontier.size + 1, seq - 1)
            return
        self.frontier.append(leaf_hash)
        size = self.frontier.size
        if size not in self.cps and size not in self.trusted:
            return
        root = self.frontier.root()
        signed = self.cps.get(size)
        if signed is not None and signed[0] != root:
            self.run.fail(size, f"entries up to {size} do not match the signed global "
                          "checkpoint at that size (rewritten after signing)", (1, size))
        for want, label in self.trusted.get(size, []):
            if want != root:
                self.run.fail(size, f"the audit log forked or was rewritten: its first {size} "
                              f"entries do not match {label}", (1, size))

    def finish(self) -> None:
        """Report checkpoints beyond the recomputed tree (truncation, rollback)."""
        total = self.frontier.size
        if self.gap is not None and (self.cps or self.trusted) and not self.run.problem_count():
            # Entries and segments check out, so the kept hashes of pruned entries are gone.
            lo, hi = self.gap
            self.run.fail(lo, f"the global tree cannot be recomputed: the kept leaf hashes of "
                          f"entries {lo} to {hi} are missing", (lo, hi))
        if not self.broken:
            for size in sorted(s for s in self.cps if s > total):
                self.run.fail(total + 1, f"the global checkpoint at size {size} covers entries "
                              f"{total + 1} to {size}, which are missing (truncated)",
                              (total + 1, size))
            for size in sorted(s for s in self.trusted if s > total):
                for _, label in self.trusted[size]:
                    self.run.fail(total + 1, f"the audit log was rolled back or truncated: "
                                  f"{label} covers {size} entries, the ledger holds {total}",
                                  (total + 1, size))
        if total and not self.cps:
            self.run.warnings.append("the log has no global checkpoint yet: rollback cannot be "
                                     "checked until one is signed")
        newest = max(self.cps, default=0)
        note = self.cps[newest][1] if newest in self.cps else None
        self.summary = GlobalSummary(len(self.cps), newest, note)

    def witnesses(self, policy: WitnessPolicy | None) -> None:
        """Enforce ``policy``: ``k`` valid cosignatures on a global checkpoint at most
        ``policy.max_unwitnessed`` entries behind the newest one (fail closed)."""
        note = self.summary.note
        if policy is None or note is None:
            if policy is not None:
                self.run.fail(None, "the witness policy cannot be met: no global checkpoint")
            return
        newest, bad, witnessed, valid, best = self.summary.size, 0, 0, 0, 0
        for size in self.txn.cosigned_sizes():  # newest first; stops at the first that meets k
            if size > newest or newest - size > policy.max_unwitnessed:
                if size > newest:
                    bad += len(self.txn.cosignatures(size))  # for a checkpoint that is not here
                    continue
                break
            count, forged = self._cosigned(size, policy)
            bad += forged
            best = max(best, count)
            if count >= policy.k:
                witnessed, valid = size, count
                break
        self.summary = GlobalSummary(self.summary.checkpoints, newest, note, valid, policy.k)
        extra = f"; {bad} stored cosignature(s) did not verify (forged)" if bad else ""
        if valid < policy.k:
            self.run.fail(None, f"no global checkpoint within {policy.max_unwitnessed} entries of "
                          f"the newest (size {newest}) is witnessed enough: the best has {best} "
                          f"of the {policy.k} witness cosignatures the policy requires{extra}; "
                          "run 'sealtune audit checkpoint --witness'")
            return
        if newest > witnessed:
            self.run.warnings.append(f"{newest - witnessed} entries after the newest witnessed "
                                     f"checkpoint (size {witnessed}) are not yet witnessed "
                                     f"(allowed: {policy.max_unwitnessed})")
        if bad:
            self.run.warnings.append(f"{bad} stored cosignature(s) did not verify and were not "
                                     "counted (forged or edited)")

    def _cosigned(self, size: int, policy: WitnessPolicy) -> tuple[int, int]:
        """Valid cosignatures by the policy's witnesses on the checkpoint at ``size``, and
        the count of stored lines that did not verify."""
        row = self.txn.global_checkpoint_at_most(size)
        if row is None or row.size != size:
            return 0, len(self.txn.cosignatures(size))
        lines: list[CosignatureLine] = []
        malformed = 0
        for text in self.txn.cosignatures(size):
            try:
                lines.append(parse_signature_line(text))
            except IntegrityError:
                malformed += 1
        check = check_cosignatures(_split_note(row.note)[0], lines, policy.verifiers)
        return len(check.valid), len(check.invalid) + malformed


def _frontier_ok(data: bytes, size: int, root: bytes) -> bool:
    try:
        frontier = CompactRange.from_bytes(data)
    except ValueError:
        return False
    return frontier.size == size and frontier.root() == root
