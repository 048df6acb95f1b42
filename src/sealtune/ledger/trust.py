"""The workspace trust state: the newest global checkpoint, kept outside the database.

``<workspace>/ledger.trust`` holds one signed global checkpoint note (C2SP
tlog-checkpoint, origin ``<origin>``), the newest one this workspace signed or
verified. The ledger must always contain it and extend it; a database that
was deleted, truncated, rolled back to an older copy or forked fails against
it. The file is written atomically (temp file, fsync, rename, fsync of the
directory), mode 0600, and only moves forward, under the ledger's write lock
(:meth:`sealtune.ledger.anchors.Anchors.advance_trust`). Like a witness's
state, it is the same note format an auditor can pass to ``audit verify
--trusted``.

What this protects against: a rollback of ``ledger.db`` alone (a restored
backup, an edited copy, deleted newest checkpoints and entries), a deleted
database silently replaced by a new one, a crash between signing and writing
the state (the checkpoint is committed first, so the state never names a
checkpoint the database lacks).

What it does not: the state lives in the same workspace as the database, so
an attacker who can rewrite both can roll both back together. Keep a
checkpoint elsewhere (``audit checkpoint`` output, ``--trusted``) or have
witnesses cosign (``audit checkpoint --witness``) to detect that.
"""

from __future__ import annotations

from pathlib import Path

from sealtune.errors import IntegrityError
from sealtune.outputs import write_atomic

MAX_TRUST_BYTES = 64 * 1024


class TrustState:
    """The trust state file of one workspace.

    Args:
        path: the file (``<workspace>/ledger.trust``).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def label(self) -> str:
        """How messages name it."""
        return f"the trust state ({self.path.name})"

    def exists(self) -> bool:
        """Whether the file exists."""
        return self.path.exists()

    def read(self) -> str | None:
        """Return the note it holds, or None if the file does not exist.

        Raises:
            IntegrityError: the file is unreadable, too large or not UTF-8.
        """
        try:
            with self.path.open("rb") as fh:
                data = fh.read(MAX_TRUST_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IntegrityError(f"{self.path} cannot be read ({exc.strerror})") from None
        if len(data) > MAX_TRUST_BYTES:
            raise IntegrityError(f"{self.path} is too large to be a checkpoint")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise IntegrityError(f"{self.path} is not a checkpoint note") from None

    def write(self, note: str) -> None:
        """Replace the state with ``note`` atomically and durably (mode 0600)."""
        write_atomic(self.path, note.encode("utf-8"), mode=0o600)

    def missing_error(self) -> IntegrityError:
        """The error for a ledger whose trust state is gone."""
        return IntegrityError(
            f"{self.path} is missing: the audit log can no longer be checked for rollback",
            hint="if it was deleted, keep the workspace as evidence; a workspace created before "
                 "trust states existed adopts one with 'sealtune audit verify "
                 "--unsafe-reset-trust'",
        )
