"""Helpers shared by the sealed-file operations (:mod:`sealtune.keys.files`).

Error reporting and auditing around the file operations, and the unwrap
callback they hand to :mod:`sealtune.core.envelope`.

What this protects against: raw OS errors or integrity details reaching the
user or the audit log (an OS error becomes a message naming the file; an
integrity failure names only the file; the ledger records the error class,
never a message). What it does not: decide anything about keys or outputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sealtune.errors import IntegrityError, SealtuneError

if TYPE_CHECKING:
    from sealtune.keys.service import KeyService

INTEGRITY_HINT = (
    "the file was modified or damaged, or sealed under a different key with the same "
    "name; restore it from a trusted copy"
)


@contextmanager
def io_errors(name: object) -> Iterator[None]:
    """Report OS errors as a SealtuneError naming the file (never raw)."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SealtuneError(
            f"{exc.filename or name}: {reason}", hint="check the path, permissions and free space"
        ) from None


@contextmanager
def audit_failures(keys: KeyService, action: str, name: str) -> Iterator[None]:
    """Record a failed ``action`` on ``name``; an integrity failure names only the file."""
    try:
        yield
    except IntegrityError:
        keys.audit(action, name, outcome="failure", details={"error": "IntegrityError"})
        raise IntegrityError(f"{name} failed its integrity check", hint=INTEGRITY_HINT) from None
    except SealtuneError as exc:
        keys.audit(action, name, outcome="failure", details={"error": type(exc).__name__})
        raise
