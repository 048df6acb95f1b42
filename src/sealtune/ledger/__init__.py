"""The tamper-evident audit ledger (users call it the audit log).

Every security-relevant event is appended to a segmented RFC 6962 Merkle log
with C2SP signed checkpoints, plus one global tree with a stable origin that a
trust state outside the database (:class:`TrustState`), auditors and C2SP
witnesses (:mod:`sealtune.ledger.witness`) track; see :class:`Ledger` and
``docs/formats/ledger-v1.md``.
:func:`verify_ledger` checks a ledger file against its trust state, auditors'
checkpoints and the witness policy (``sealtune audit verify``). What it
protects against and what it does not is stated in
:mod:`sealtune.ledger.log` and :mod:`sealtune.ledger.verify`.
"""

from sealtune.ledger.anchors import Anchors
from sealtune.ledger.audit import read_checkpoint_file, unsafe_reset_trust, verify_ledger
from sealtune.ledger.base import DEFAULT_RETENTION, LedgerError, LedgerStore
from sealtune.ledger.checkpoint import (
    ConsistencyProof,
    InclusionProof,
    SegmentCheckpoint,
    verify_consistency_proof,
    verify_inclusion_proof,
)
from sealtune.ledger.entry import Entry, Event, InvalidEventError, Outcome
from sealtune.ledger.export import CSV_HEADER, export_entries
from sealtune.ledger.global_proofs import (
    GlobalInclusionProof,
    ProvenEntry,
    verify_global_inclusion_proof,
)
from sealtune.ledger.log import Ledger, PruneResult, utc_now
from sealtune.ledger.report import Problem, VerifyReport
from sealtune.ledger.trust import TrustState
from sealtune.ledger.verify_global import WitnessPolicy

__all__ = [
    "CSV_HEADER",
    "DEFAULT_RETENTION",
    "Anchors",
    "ConsistencyProof",
    "Entry",
    "Event",
    "GlobalInclusionProof",
    "InclusionProof",
    "InvalidEventError",
    "Ledger",
    "LedgerError",
    "LedgerStore",
    "Outcome",
    "Problem",
    "ProvenEntry",
    "PruneResult",
    "SegmentCheckpoint",
    "TrustState",
    "VerifyReport",
    "WitnessPolicy",
    "export_entries",
    "read_checkpoint_file",
    "unsafe_reset_trust",
    "utc_now",
    "verify_consistency_proof",
    "verify_global_inclusion_proof",
    "verify_inclusion_proof",
    "verify_ledger",
]
