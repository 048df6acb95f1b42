"""The ledger part of an evidence bundle: inclusion proofs of a run's events and a checkpoint.

Write side: :func:`collect` signs a checkpoint of the workspace's ledger
(:meth:`~sealtune.ledger.Ledger.checkpoint`) and writes, under ``ledger/``,
``checkpoint.txt`` (the signed C2SP checkpoint note) and
``proofs/<seq>.json`` (one ``sealtune-inclusion-v1`` proof per event, each
carrying the checkpoint it was built against; see ``docs/formats/ledger-v1.md``).
:func:`run_events` picks a step's events by time and resource.

Verify side: :func:`check` verifies every proof offline with the pinned
ledger key and the ledger's origin, requires the events the statements name
(sequence number and SHA-256 of the leaf bytes) and no others, and requires
the proofs of the checkpoint's segment to use exactly that checkpoint.

This module is the only place that knows how the ledger proves things, so
that moving to another proof scheme (a single never-pruned tree, witness
cosignatures under ``ledger/cosignatures/``) changes nothing elsewhere; the
file names it may write are :data:`PATTERNS`.

What this protects against: events edited, dropped or invented after they
were appended (the proofs would not lead to the signed root), proofs from
another ledger (origin and key are checked). What it does not: show that the
events are true or complete (the ledger proves entries were not changed,
not who appended them), or that the log showed everyone the same checkpoint
(witness cosignatures are for that, not yet written here).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sealtune.core.note import NoteVerifier
from sealtune.errors import SealtuneError, UsageError
from sealtune.evidence.report import Check
from sealtune.ledger import Ledger, verify_inclusion_proof
from sealtune.ledger.checkpoint import open_segment_checkpoint

PREFIX = "ledger/"
CHECKPOINT = "ledger/checkpoint.txt"
#: The file names this module writes (the bundle's layout refuses any others under ledger/).
PATTERNS = (re.compile(r"ledger/checkpoint\.txt"),
            re.compile(r"ledger/proofs/[1-9][0-9]{0,17}\.json"))
_PROOF = re.compile(r"ledger/proofs/([1-9][0-9]{0,17})\.json")


@dataclass(frozen=True)
class LedgerEvidence:
    """What :func:`collect` produced.

    Attributes:
        files: bundle-relative path -> bytes.
        events: sequence number -> lower-case hex SHA-256 of the entry's leaf bytes.
    """

    files: dict[str, bytes]
    events: dict[int, str]


def run_events(ledger: Ledger, *, since: datetime, resources: Sequence[str]) -> list[int]:
    """Sequence numbers of entries appended at or after ``since`` about ``resources``.

    An entry matches when its resource equals one of ``resources`` or starts
    with it followed by ``/`` (``dataset/x`` matches ``dataset/x/conv-7``).
    """
    if not resources:
        raise UsageError("name at least one resource whose events belong to the step")
    return [e.seq for e in ledger.entries(since=since)
            if any(e.resource == r or e.resource.startswith(r + "/") for r in resources)]


def collect(ledger: Ledger, seqs: Iterable[int]) -> LedgerEvidence:
    """Sign a checkpoint and prove each event in ``seqs`` against it.

    Raises:
        LedgerError: an event does not exist (or was pruned), or the ledger
            cannot sign (no signer).
    """
    note = ledger.checkpoint()
    files = {CHECKPOINT: note.encode("utf-8")}
    events: dict[int, str] = {}
    for seq in sorted(set(seqs)):
        proof = ledger.inclusion_proof(seq)
        files[f"ledger/proofs/{seq}.json"] = proof.to_json().encode("utf-8")
        events[seq] = hashlib.sha256(proof.leaf).hexdigest()
    return LedgerEvidence(files, events)


class _VerifyOnce(NoteVerifier):
    """A ledger verifier that checks each (note, signature) pair once per bundle.

    Every proof of a segment carries the same checkpoint note; its Ed25519
    signature need not be verified again for each event. Only successes are
    remembered, so a bad signature is refused every time.
    """

    def __init__(self, inner: NoteVerifier) -> None:
        super().__init__(inner.name, inner.public_key)
        self._good: set[tuple[bytes, bytes]] = set()

    def verify(self, message: bytes, signature: bytes) -> bool:
        seen = (bytes(message), bytes(signature))
        if seen in self._good:
            return True
        ok = super().verify(message, signature)
        if ok:
            self._good.add(seen)
        return ok


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SealtuneError(f"{name} is not UTF-8") from None


def _checkpoint(files: Mapping[str, bytes], verifiers: Sequence[NoteVerifier],
                origin: str) -> tuple[Check, tuple[int, str] | None]:
    if CHECKPOINT not in files:
        return Check("ledger.checkpoint", False, f"{CHECKPOINT} is missing"), None
    try:
        note = _text(files[CHECKPOINT], CHECKPOINT)
        cp = open_segment_checkpoint(note, verifiers, prefix=origin)
    except SealtuneError as exc:
        return Check("ledger.checkpoint", False, f"{CHECKPOINT}: {exc.message}"), None
    return Check("ledger.checkpoint", True,
                 f"signed by the ledger key for {origin}: segment {cp.segment}, "
                 f"{cp.size} entries"), (cp.segment, note)


def _one_proof(seq: int, data: bytes, leaf_sha256: str, head: tuple[int, str] | None,
               verifiers: Sequence[NoteVerifier], origin: str) -> str | None:
    """What is wrong with one proof file, or None."""
    name = f"ledger/proofs/{seq}.json"
    try:
        text = _text(data, name)
        entry = verify_inclusion_proof(text, verifiers, prefix=origin)
    except SealtuneError as exc:
        return f"{name}: {exc.message}"
    if entry.seq != seq or hashlib.sha256(entry.leaf).hexdigest() != leaf_sha256:
        return f"{name}: proves another entry than the statements name"
    if head is not None and entry.segment == head[0] and json.loads(text)["checkpoint"] != head[1]:
        return f"{name}: built against another checkpoint than {CHECKPOINT}"
    return None


def check(files: Mapping[str, bytes], *, events: Mapping[int, str],
          verifiers: Sequence[NoteVerifier], origin: str) -> list[Check]:
    """Verify the ledger files of a bundle.

    Args:
        files: bundle-relative path -> bytes (only ``ledger/`` paths are read).
        events: the events the statements name: seq -> hex SHA-256 of the leaf.
        verifiers: the pinned ledger key(s).
        origin: the ledger's origin prefix.

    Returns:
        ``ledger.checkpoint`` and ``ledger.proofs``.
    """
    verifiers = [_VerifyOnce(v) for v in verifiers]
    first, head = _checkpoint(files, verifiers, origin)
    proofs = {int(m.group(1)): data for p, data in files.items()
              if (m := _PROOF.fullmatch(p)) is not None}
    problems = [f"event {s} has no proof" for s in sorted(set(events) - set(proofs))]
    problems += [f"proof {s} is for an event no statement names"
                 for s in sorted(set(proofs) - set(events))]
    for seq in sorted(set(proofs) & set(events)):
        problem = _one_proof(seq, proofs[seq], events[seq], head, verifiers, origin)
        if problem is not None:
            problems.append(problem)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return [first, Check("ledger.proofs", False, problems[0] + more)]
    return [first, Check("ledger.proofs", True,
                         f"{len(events)} events proven included in the signed ledger")]
