"""Audit-log operations on a workspace's ledger file and trust state.

:func:`verify_ledger` is what ``sealtune audit verify`` runs: the database
must exist, verify completely, contain the trust state's checkpoint (and any
checkpoint an auditor kept) and meet the witness policy; on success the trust
state moves forward. :func:`unsafe_reset_trust` adopts the current ledger as
trusted after a full verification, for a workspace created before trust
states existed or after an investigated incident; it is recorded in the
ledger as ``ledger.unsafe_trust_reset``. :func:`read_checkpoint_file` reads
a checkpoint an auditor kept, bounded in size.

What this protects against: a missing, truncated, rolled-back or forked
ledger passing ``audit verify`` (exit 3 names what is wrong); the trust state
being moved to a state that did not verify.

What it does not: :func:`unsafe_reset_trust` accepts whatever the database
holds as the new reference, including a rollback, which is why it is unsafe,
warned about and logged; rollback of both files together is only caught by
an auditor's checkpoint or witnesses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from sealtune.core.note import NoteSigner, NoteVerifier
from sealtune.errors import IntegrityError, UsageError
from sealtune.ledger.log import Ledger
from sealtune.ledger.report import Problem, VerifyReport
from sealtune.ledger.trust import TrustState
from sealtune.ledger.verify_global import WitnessPolicy


def verify_ledger(
    path: Path | str, *, origin: str, verifiers: Sequence[NoteVerifier], trust: TrustState,
    trusted: Sequence[str] = (), witnesses: WitnessPolicy | None = None,
    checkpoint_every: int = 1000,
) -> VerifyReport:
    """Verify a workspace ledger against its signatures, trust state and witness policy.

    Args:
        path: the ledger database.
        origin: the ledger's origin.
        verifiers: the ledger key(s).
        trust: the workspace trust state.
        trusted: checkpoint notes an auditor kept (``--trusted``).
        witnesses: the k-of-n witness policy, if configured.
        checkpoint_every: the configured checkpoint interval (for warnings).

    Returns:
        The report. When it is ok, the trust state has moved forward to its newest
        global checkpoint.

    Raises:
        IntegrityError: the database is missing or the trust state is unreadable.
    """
    note = trust.read()
    with Ledger.open(path, signer=None, origin=origin, checkpoint_every=checkpoint_every,
                     create=False) as ledger:
        report = ledger.verify(verifiers, trusted_checkpoints=trusted, trust_state=note,
                               witnesses=witnesses)
        if note is None:
            return _failed(report, trust.missing_error().message)
        if report.ok:
            ledger.anchors.advance_trust(trust, verifiers)
    return report


def unsafe_reset_trust(
    path: Path | str, *, origin: str, signer: NoteSigner, trust: TrustState, actor: str,
    checkpoint_every: int = 1000,
) -> VerifyReport:
    """Adopt the ledger as it is as the new trust state (unsafe; logged).

    Verifies everything except the trust state; only if that passes, appends a
    ``ledger.unsafe_trust_reset`` event, signs it and writes the new state.

    Returns:
        The verification report (the trust state is unchanged unless it is ok).

    Raises:
        IntegrityError: the database is missing.
    """
    previous = trust.read()
    with Ledger.open(path, signer=signer, origin=origin, checkpoint_every=checkpoint_every,
                     create=False) as ledger:
        report = ledger.verify(signer.verifier())
        if not report.ok:
            return report
        old_size = None if previous is None else _size_line(previous)
        ledger.append(actor=actor, action="ledger.unsafe_trust_reset", resource=origin,
                      details={"previous_trusted_size": old_size,
                               "new_trusted_size": report.global_size})
        ledger.seal()
        ledger.anchors.advance_trust(trust, signer.verifier(), reset=True)
    return report


#: The largest checkpoint file :func:`read_checkpoint_file` reads.
MAX_CHECKPOINT_FILE = 64 * 1024


def read_checkpoint_file(path: Path) -> str:
    """Read a checkpoint an auditor kept (``audit checkpoint`` output) for ``trusted``.

    Raises:
        UsageError: it cannot be read or is larger than a checkpoint can be.
        IntegrityError: it is not UTF-8 text.
    """
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CHECKPOINT_FILE + 1)
    except OSError as exc:
        raise UsageError(f"--trusted {path}: cannot read it ({exc.strerror})") from None
    if len(data) > MAX_CHECKPOINT_FILE:
        raise UsageError(f"--trusted {path}: too large to be a checkpoint")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError(f"--trusted {path} is not a checkpoint note") from None


def _size_line(note: str) -> int | None:
    """The size line of a checkpoint note, for the record (None if unreadable)."""
    lines = note.split("\n", 2)
    return int(lines[1]) if len(lines) > 2 and lines[1].isdigit() and len(lines[1]) < 20 else None


def _failed(report: VerifyReport, reason: str) -> VerifyReport:
    problem = Problem(None, reason)
    return replace(report, ok=False, reason=reason, problems=(problem, *report.problems),
                   problem_count=report.problem_count + 1)
