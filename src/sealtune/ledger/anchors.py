"""Anchors of the audit log: global checkpoints and what is kept outside the database.

A ledger database can be deleted, rolled back to an older copy or truncated by
anyone who can write it; only a checkpoint kept elsewhere shows that. This
module is the ledger's side of that: the newest global checkpoint and its
consistency proofs (for witnesses), the cheap check that the database still
contains a checkpoint kept elsewhere, moving the workspace trust state
forward, and the bookkeeping of witness cosignatures and sizes.

What this protects against: a rollback, truncation or fork of the database
relative to the trust state, an auditor's checkpoint or a witness (fails with
``IntegrityError``); the trust state moving backwards under concurrent
writers (updated under the ledger's write lock, after the checkpoint it
names is committed).

What it does not: it cannot tell a rollback of both the database and the
trust state (both live in the workspace) from an honest older state; only a
checkpoint an auditor kept, or witnesses that cosigned a newer one, can.
Cosignatures stored here are untrusted until verify checks them.
"""

from __future__ import annotations

from collections.abc import Sequence

from sealtune.core.cosignature import Cosignature
from sealtune.core.note import Checkpoint, NoteVerifier
from sealtune.errors import IntegrityError
from sealtune.ledger import global_tree
from sealtune.ledger.base import LedgerStore
from sealtune.ledger.trust import TrustState


class Anchors:
    """Global checkpoints, trust state and witness records of one ledger.

    Obtain it from :attr:`sealtune.ledger.Ledger.anchors`.
    """

    def __init__(self, store: LedgerStore, origin: str) -> None:
        self._store = store
        self._origin = origin

    def _open(self, note: str, verifiers: NoteVerifier | Sequence[NoteVerifier],
              label: str) -> Checkpoint:
        try:
            return global_tree.open_global_checkpoint(note, verifiers, self._origin)
        except IntegrityError:
            raise IntegrityError(
                f"{label} is not a global checkpoint of this ledger signed by its key "
                "(edited, replaced, or from another ledger)",
                hint="keep the workspace as evidence and run 'sealtune audit verify'",
            ) from None

    def latest_global_checkpoint(self) -> str | None:
        """Return the newest stored global checkpoint note, if any (unverified)."""
        with self._store.read() as txn:
            row = txn.global_checkpoint_at_most(global_tree.global_size(txn))
        return None if row is None else row.note

    def global_consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The global tree's RFC 6962 consistency proof from ``old_size`` to ``new_size``.

        Raises:
            LedgerError: sizes out of range or leaf hashes missing.
        """
        with self._store.read() as txn:
            return global_tree.global_consistency_proof(txn, old_size, new_size)

    def check_trusted(self, note: str, verifiers: NoteVerifier | Sequence[NoteVerifier], *,
                      label: str = "the trusted checkpoint") -> None:
        """Cheaply check that the log still contains a global checkpoint kept elsewhere.

        Costs the entries appended after it, not the whole log
        (:meth:`sealtune.ledger.Ledger.verify` checks everything).

        Raises:
            IntegrityError: the note does not verify, or the log was rolled back,
                truncated or forked relative to it.
        """
        cp = self._open(note, verifiers, label)
        with self._store.read() as txn:
            global_tree.check_extends(txn, cp, label=label)

    def advance_trust(self, trust: TrustState, verifiers: NoteVerifier | Sequence[NoteVerifier],
                      *, create: bool = False, reset: bool = False) -> str | None:
        """Move the trust state forward to the newest global checkpoint, if it extends it.

        Runs under the ledger's write lock, so concurrent writers never move the
        trust state backwards; the checkpoint is committed before the state names it.

        Args:
            trust: the trust state file.
            verifiers: the ledger key(s).
            create: write a trust state where none exists (a new ledger only).
            reset: replace the trust state whatever it holds (unsafe: see
                :func:`sealtune.ledger.audit.unsafe_reset_trust`).

        Returns:
            The note the trust state now holds, or None when the log has no global checkpoint.

        Raises:
            IntegrityError: the trust state is missing (and ``create`` is False),
                unreadable, or the log does not extend it (rolled back or forked).
        """
        with self._store.write() as txn:
            latest = txn.global_checkpoint_at_most(global_tree.global_size(txn))
            if latest is None:
                return None
            current = None if reset else trust.read()
            if current is None and not (create or reset):
                raise trust.missing_error()
            if current is not None:
                cp = self._open(current, verifiers, trust.label)
                global_tree.check_extends_to(txn, cp, latest, label=trust.label)
                if cp.size >= latest.size:
                    return current
            trust.write(latest.note)
            return latest.note

    def add_cosignatures(self, size: int, cosignatures: Sequence[Cosignature]) -> None:
        """Store witness cosignatures of the global checkpoint at ``size``.

        Callers store only cosignatures that verified; verify checks them again.
        """
        with self._store.write() as txn:
            for c in cosignatures:
                txn.put_cosignature(size, c.name, c.key_id, c.line)

    def cosignatures(self, size: int) -> list[str]:
        """The stored cosignature lines of the global checkpoint at ``size`` (unverified)."""
        with self._store.read() as txn:
            return txn.cosignatures(size)

    def witness_size(self, url: str) -> int:
        """The size the witness at ``url`` last cosigned (0 if never), as recorded here."""
        with self._store.read() as txn:
            return txn.witness_size(url) or 0

    def set_witness_size(self, url: str, size: int) -> None:
        """Record the size the witness at ``url`` cosigned."""
        with self._store.write() as txn:
            txn.set_witness_size(url, size)
