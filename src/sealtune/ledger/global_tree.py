"""The global tree: one RFC 6962 tree over every entry, under the stable origin.

Segments give each part of the log its own tree and origin
(``<origin>/segment/<n>``), which is what lets retention delete old entries.
A witness, an auditor's saved checkpoint and the workspace trust state need a
single log identity that only grows, so the ledger also keeps one **global
tree** whose leaves are the leaf hashes of all entries in sequence order
(entry ``seq`` is leaf ``seq - 1``) and whose checkpoints have the origin
``<origin>`` itself, with no extension lines. When retention deletes
entries, their 32-byte leaf hashes are kept (``pruned_hashes``), so the
global tree, its consistency proofs and witness cosigning keep working after
a prune. Each stored global checkpoint also keeps its compact range, so
extending it or checking that a later tree contains it costs only the
entries appended since.

What this protects against: rollback, truncation or a fork of the log
relative to any global checkpoint kept outside the database (the trust state,
an auditor's copy, a witness): :func:`check_extends` fails unless the stored
leaves reproduce that checkpoint's root and extend to the newest one.

What it does not: the stored hashes and compact ranges are untrusted inputs;
full verification (:mod:`sealtune.ledger.verify_global`) recomputes them from
the entries. Kept hashes of pruned entries prove what was in the log, not
what the entries said (that is gone by design).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sealtune.core import hashchain
from sealtune.core.hashchain import CompactRange
from sealtune.core.note import Checkpoint, NoteSigner, NoteVerifier, open_checkpoint
from sealtune.core.note import parse_checkpoint as _parse_body
from sealtune.core.note import parse_note as _split_note
from sealtune.errors import IntegrityError
from sealtune.ledger.base import GlobalCheckpointRow, LedgerError, ReadTxn, WriteTxn


def global_size(txn: ReadTxn) -> int:
    """The number of entries ever appended (the global tree's size).

    Raises:
        LedgerError: the ledger has no segment (damaged).
    """
    seg = txn.last_segment()
    if seg is None:
        raise LedgerError("the ledger has no segment; the database is damaged, run verify")
    return seg.first_seq + seg.size - 1


def open_global_checkpoint(
    note: str, verifiers: NoteVerifier | Iterable[NoteVerifier], origin: str
) -> Checkpoint:
    """Verify a signed global checkpoint of the ledger with origin ``origin``.

    Raises:
        IntegrityError: bad signature, malformed, another origin, or extension lines.
    """
    cp = open_checkpoint(note, verifiers)
    if cp.origin != origin or cp.extensions:
        raise IntegrityError("checkpoint is not a global checkpoint of this ledger")
    return cp


def is_global_note(note: str, origin: str) -> bool:
    """Whether ``note`` claims to be a global checkpoint of ``origin`` (unverified)."""
    return note.startswith(origin + "\n")


def _signed_root(row: GlobalCheckpointRow) -> bytes:
    """The root a stored global note claims (its signature is checked elsewhere)."""
    try:
        return _parse_body(_split_note(row.note)[0]).root
    except IntegrityError:
        raise LedgerError(f"the stored global checkpoint at size {row.size} is damaged; "
                          "run verify") from None


def _stored_frontier(row: GlobalCheckpointRow) -> CompactRange:
    """A stored checkpoint's compact range, checked against the root it signs."""
    try:
        frontier = CompactRange.from_bytes(row.frontier)
    except ValueError:
        frontier = CompactRange()
    if frontier.size != row.size or frontier.root() != _signed_root(row):
        raise LedgerError(f"the compact range of global checkpoint {row.size} is damaged; "
                          "run verify")
    return frontier


def frontier_at(txn: ReadTxn, size: int, known: Sequence[bytes] = ()) -> CompactRange:
    """The global tree's compact range at ``size``, from the nearest stored checkpoint.

    Args:
        txn: a transaction.
        size: the tree size wanted.
        known: the leaf hashes of the last ``len(known)`` entries up to ``size``,
            already in memory (the writer's own batch), so they are not read back.

    Raises:
        LedgerError: a stored compact range is damaged or leaf hashes are missing.
    """
    base = txn.global_checkpoint_at_most(size)
    frontier = CompactRange() if base is None else _stored_frontier(base)
    first_known = size - len(known) + 1
    read_upto = min(size, first_known - 1)
    missing = read_upto - frontier.size
    if missing > 0:
        hashes = txn.tree_leaf_hashes(frontier.size + 1, missing)
        if len(hashes) != missing:
            raise LedgerError(f"leaf hashes {frontier.size + 1} to {read_upto} are missing; "
                              "run verify")
        frontier.extend(hashes)
    frontier.extend(known[frontier.size - first_known + 1:])
    return frontier


def sign_global(txn: WriteTxn, signer: NoteSigner, origin: str, *,
                known: Sequence[bytes] = ()) -> GlobalCheckpointRow:
    """Sign the global tree at its current size (or return the stored checkpoint).

    Args:
        txn: the open write transaction.
        signer: the ledger key.
        origin: the ledger's origin (the global checkpoints' origin).
        known: leaf hashes of the newest entries already in memory (see :func:`frontier_at`).

    Returns:
        The newest global checkpoint row.
    """
    size = global_size(txn)
    latest = txn.global_checkpoint_at_most(size)
    if latest is not None and latest.size == size:
        return latest
    frontier = frontier_at(txn, size, known)
    note = signer.sign(Checkpoint(origin, size, frontier.root()).to_text())
    row = GlobalCheckpointRow(size, note, frontier.to_bytes())
    txn.insert_global_checkpoint(row)
    return row


def global_consistency_proof(txn: ReadTxn, old_size: int, new_size: int) -> list[bytes]:
    """The RFC 6962 consistency proof of the global tree from ``old_size`` to ``new_size``.

    Reads ``new_size`` leaf hashes (O(n)); used when a witness is asked to cosign.

    Raises:
        LedgerError: sizes out of order or beyond the log, or hashes missing.
    """
    if not 0 <= old_size <= new_size <= global_size(txn):
        raise LedgerError(f"no global consistency proof from size {old_size} to {new_size}")
    hashes = txn.tree_leaf_hashes(1, new_size)
    if len(hashes) != new_size:
        raise LedgerError("leaf hashes of the global tree are missing; run verify")
    return hashchain.consistency_proof(hashes, old_size) if 0 < old_size < new_size else []


def check_extends(txn: ReadTxn, cp: Checkpoint, *, label: str) -> CompactRange:
    """Check that the stored log contains ``cp`` (a verified global checkpoint).

    Args:
        txn: a read or write transaction.
        cp: the checkpoint kept outside the database.
        label: what it is, for messages (e.g. ``the trust state``).

    Returns:
        The compact range at ``cp.size`` (its root is ``cp.root``).

    Raises:
        IntegrityError: the log holds fewer entries (rolled back or truncated),
            or its first ``cp.size`` leaves give another root (forked or rewritten).
    """
    size = global_size(txn)
    if cp.size > size:
        raise IntegrityError(
            f"the audit log was rolled back or truncated: {label} covers {cp.size} entries, "
            f"the ledger holds {size}",
            hint="keep the workspace as evidence; restore the newest copy of ledger.db",
        )
    try:
        frontier = frontier_at(txn, cp.size)
    except LedgerError as exc:
        raise IntegrityError(f"the audit log cannot reproduce {label} ({exc.message})") from None
    if frontier.root() != cp.root:
        raise IntegrityError(
            f"the audit log forked or was rewritten: its first {cp.size} entries do not match "
            f"{label}",
            hint="keep the workspace as evidence and run 'sealtune audit verify'",
        )
    return frontier


def check_extends_to(
    txn: ReadTxn, old: Checkpoint, new: GlobalCheckpointRow, *, label: str
) -> None:
    """Check that stored checkpoint ``new`` extends ``old`` (both global; O(new - old)).

    Raises:
        IntegrityError: as :func:`check_extends`, or ``new`` does not extend ``old``.
    """
    frontier = check_extends(txn, old, label=label)
    count = new.size - old.size
    hashes = txn.tree_leaf_hashes(old.size + 1, count)
    if count < 0 or len(hashes) != count:
        raise IntegrityError(f"the audit log cannot show that it extends {label}")
    frontier.extend(hashes)
    if frontier.root() != _signed_root(new):
        raise IntegrityError(f"the newest global checkpoint does not extend {label}",
                             hint="keep the workspace as evidence and run 'sealtune audit verify'")
