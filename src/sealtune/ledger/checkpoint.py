"""Segment checkpoints and portable inclusion / consistency proofs.

A segment checkpoint is a C2SP tlog-checkpoint with origin
``<origin-prefix>/segment/<n>`` and two extension lines::

    sealtune-prev <base64 SHA-256 of segment n-1's final checkpoint note>   (n > 1)
    sealtune-first-seq <sequence number of the segment's first entry>

so the chain of final checkpoints, and the sequence range of every segment,
stay verifiable after retention has deleted old entries. Proofs are JSON
documents that carry the signed checkpoint note they refer to; a third party
checks them with :func:`verify_inclusion_proof` / :func:`verify_consistency_proof`
and nothing but the verifier key.

What this protects against: a proof or checkpoint from another segment or log
(the origin is checked), edited checkpoint fields, proofs that do not lead to
the signed root, leaves whose position disagrees with their content.

What it does not: a valid proof shows the entry is in the log the key signed,
not that the event described is true, and not that the log showed everyone
the same checkpoint (compare checkpoints with a witness for that).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sealtune.core import hashchain
from sealtune.core.note import Checkpoint, NoteVerifier, open_checkpoint
from sealtune.errors import IntegrityError, UsageError
from sealtune.ledger.base import LedgerError, ReadTxn
from sealtune.ledger.entry import Entry, entry_from_leaf

EXT_PREV = "sealtune-prev"
EXT_FIRST_SEQ = "sealtune-first-seq"
INCLUSION_FORMAT = "sealtune-inclusion-v1"
CONSISTENCY_FORMAT = "sealtune-consistency-v1"
_SEGMENT_SUFFIX = re.compile(r"/segment/([1-9][0-9]{0,17})")
_DECIMAL = re.compile(r"[1-9][0-9]{0,18}")
_ORIGIN_CHARS = re.compile(r"[!-*,-~]+")  # printable ASCII without space and '+'
_NUMERIC_KEYS = frozenset({"seq", "segment", "leaf_index", "tree_size", "old_size", "new_size"})
Verifiers = NoteVerifier | Iterable[NoteVerifier]


def check_origin_prefix(prefix: str) -> str:
    """Validate a ledger origin prefix (e.g. ``sealtune.example/ws-1/audit``).

    Raises:
        UsageError: empty, over 200 characters, or not printable ASCII without
            spaces and ``+``.
    """
    if (
        not isinstance(prefix, str)
        or not 0 < len(prefix) <= 200
        or not _ORIGIN_CHARS.fullmatch(prefix)
    ):
        raise UsageError(
            "ledger origin must be 1-200 printable ASCII characters without spaces or '+'",
            hint="use a schema-less URL such as 'sealtune.example/workspace-1/audit'",
        )
    return prefix


def segment_origin(prefix: str, segment: int) -> str:
    """Return the checkpoint origin of one segment."""
    return f"{prefix}/segment/{segment}"


def note_hash(note: str) -> bytes:
    """Return SHA-256 of a complete note (text and signature lines), as chained."""
    return hashlib.sha256(note.encode("utf-8")).digest()


@dataclass(frozen=True)
class SegmentCheckpoint:
    """The parsed content of a segment checkpoint.

    Attributes:
        prefix: the ledger origin prefix.
        segment: segment number.
        size: tree size (entries in the segment covered).
        root: RFC 6962 root at that size.
        first_seq: sequence number of the segment's first entry.
        prev_note_hash: hash of segment ``n - 1``'s final note (None for n = 1).
    """

    prefix: str
    segment: int
    size: int
    root: bytes
    first_seq: int
    prev_note_hash: bytes | None

    def to_text(self) -> str:
        """Return the checkpoint note text to sign."""
        ext = [] if self.prev_note_hash is None else [
            f"{EXT_PREV} {base64.b64encode(self.prev_note_hash).decode('ascii')}"
        ]
        ext.append(f"{EXT_FIRST_SEQ} {self.first_seq}")
        origin = segment_origin(self.prefix, self.segment)
        return Checkpoint(origin, self.size, self.root, tuple(ext)).to_text()

    @classmethod
    def from_checkpoint(cls, cp: Checkpoint, prefix: str | None = None) -> SegmentCheckpoint:
        """Interpret a verified checkpoint strictly as a segment checkpoint.

        Args:
            cp: the parsed, signature-checked checkpoint.
            prefix: the expected origin prefix (None accepts any).

        Raises:
            IntegrityError: wrong origin or missing, extra or malformed extensions.
        """
        bad = IntegrityError("checkpoint is not a sealtune segment checkpoint")
        cut = cp.origin.rfind("/segment/")
        match = _SEGMENT_SUFFIX.fullmatch(cp.origin[cut:]) if cut > 0 else None
        if match is None or (prefix is not None and cp.origin[:cut] != prefix):
            raise bad
        segment = int(match.group(1))
        ext = list(cp.extensions)
        prev = None
        if segment > 1:
            if not ext or not ext[0].startswith(EXT_PREV + " "):
                raise bad
            prev_text = ext.pop(0)[len(EXT_PREV) + 1 :]
            try:
                prev = base64.b64decode(prev_text, validate=True)
            except (binascii.Error, ValueError):
                raise bad from None
            if len(prev) != 32 or base64.b64encode(prev).decode("ascii") != prev_text:
                raise bad
        if len(ext) != 1 or not ext[0].startswith(EXT_FIRST_SEQ + " "):
            raise bad
        seq_text = ext[0][len(EXT_FIRST_SEQ) + 1 :]
        if not _DECIMAL.fullmatch(seq_text) or (segment == 1 and seq_text != "1"):
            raise bad
        return cls(cp.origin[:cut], segment, cp.size, cp.root, int(seq_text), prev)


def open_segment_checkpoint(
    note: str, verifiers: Verifiers, prefix: str | None = None
) -> SegmentCheckpoint:
    """Verify a signed segment checkpoint note and parse it.

    Raises:
        IntegrityError: bad signature, malformed, or not a segment checkpoint.
    """
    return SegmentCheckpoint.from_checkpoint(open_checkpoint(note, verifiers), prefix)


def _b64list(items: Sequence[bytes]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in items]


def _load(doc: str | Mapping[str, Any], fmt: str, keys: set[str]) -> dict[str, Any]:
    bad = IntegrityError(f"malformed {fmt} proof")
    try:
        obj = json.loads(doc) if isinstance(doc, str) else dict(doc)
    except (ValueError, TypeError):
        raise bad from None
    if not isinstance(obj, dict) or set(obj) != keys or obj.get("format") != fmt:
        raise bad
    path = obj["proof"]
    if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
        raise bad
    try:
        obj["proof"] = [base64.b64decode(p, validate=True) for p in path]
    except (binascii.Error, ValueError):
        raise bad from None
    numbers = [v for k, v in obj.items() if k in _NUMERIC_KEYS]
    if any(type(v) is not int or v < 0 for v in numbers):
        raise bad
    return obj


@dataclass(frozen=True)
class InclusionProof:
    """Proof that one entry is in a segment, with the signed checkpoint it uses.

    Attributes:
        seq: the entry's sequence number.
        segment: its segment.
        leaf_index: its zero-based index in the segment's tree.
        tree_size: the checkpoint's tree size.
        leaf: the canonical leaf bytes (hash them to check).
        proof: the RFC 9162 audit path.
        checkpoint: the signed checkpoint note of size ``tree_size``.
    """

    seq: int
    segment: int
    leaf_index: int
    tree_size: int
    leaf: bytes
    proof: tuple[bytes, ...]
    checkpoint: str

    def to_json(self) -> str:
        """Return the proof as a JSON document (``sealtune-inclusion-v1``)."""
        return json.dumps({
            "format": INCLUSION_FORMAT, "seq": self.seq, "segment": self.segment,
            "leaf_index": self.leaf_index, "tree_size": self.tree_size,
            "leaf": self.leaf.decode("utf-8"), "proof": _b64list(self.proof),
            "checkpoint": self.checkpoint,
        }, ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class ConsistencyProof:
    """Proof that a segment at ``old_size`` is a prefix of it at ``new_size``.

    Attributes:
        segment: the segment.
        old_size: the older tree size.
        new_size: the newer tree size.
        proof: the RFC 9162 consistency path.
        old_checkpoint: the signed note at ``old_size``.
        new_checkpoint: the signed note at ``new_size``.
    """

    segment: int
    old_size: int
    new_size: int
    proof: tuple[bytes, ...]
    old_checkpoint: str
    new_checkpoint: str

    def to_json(self) -> str:
        """Return the proof as a JSON document (``sealtune-consistency-v1``)."""
        return json.dumps({
            "format": CONSISTENCY_FORMAT, "segment": self.segment, "old_size": self.old_size,
            "new_size": self.new_size, "proof": _b64list(self.proof),
            "old_checkpoint": self.old_checkpoint, "new_checkpoint": self.new_checkpoint,
        }, ensure_ascii=False, sort_keys=True)


def verify_inclusion_proof(
    proof: InclusionProof | str, verifiers: Verifiers, *, prefix: str | None = None
) -> Entry:
    """Check an inclusion proof offline and return the entry it proves.

    Args:
        proof: the proof or its JSON document.
        verifiers: the trusted ledger key(s).
        prefix: the expected origin prefix (None accepts any signed by the key).

    Raises:
        IntegrityError: the proof, its checkpoint or its leaf does not verify.
    """
    if isinstance(proof, InclusionProof):
        proof = proof.to_json()
    keys = {"format", "seq", "segment", "leaf_index", "tree_size", "leaf", "proof", "checkpoint"}
    doc = _load(proof, INCLUSION_FORMAT, keys)
    if not isinstance(doc["leaf"], str) or not isinstance(doc["checkpoint"], str):
        raise IntegrityError("malformed inclusion proof")
    cp = open_segment_checkpoint(doc["checkpoint"], verifiers, prefix)
    try:
        entry = entry_from_leaf(doc["leaf"].encode("utf-8"))
    except ValueError:
        raise IntegrityError("inclusion proof leaf is malformed") from None
    consistent = (
        cp.segment == doc["segment"] == entry.segment
        and cp.size == doc["tree_size"]
        and entry.seq == doc["seq"] == cp.first_seq + doc["leaf_index"]
    )
    if not consistent or not hashchain.verify_inclusion(
        entry.leaf_hash, doc["leaf_index"], cp.size, doc["proof"], cp.root
    ):
        raise IntegrityError(f"inclusion proof for entry {doc['seq']} does not verify")
    return entry


def verify_consistency_proof(
    proof: ConsistencyProof | str, verifiers: Verifiers, *, prefix: str | None = None
) -> tuple[SegmentCheckpoint, SegmentCheckpoint]:
    """Check a consistency proof offline.

    Returns:
        The old and new segment checkpoints, both verified.

    Raises:
        IntegrityError: a checkpoint or the proof does not verify.
    """
    if isinstance(proof, ConsistencyProof):
        proof = proof.to_json()
    keys = {"format", "segment", "old_size", "new_size", "proof", "old_checkpoint",
            "new_checkpoint"}
    doc = _load(proof, CONSISTENCY_FORMAT, keys)
    if not isinstance(doc["old_checkpoint"], str) or not isinstance(doc["new_checkpoint"], str):
        raise IntegrityError("malformed consistency proof")
    old = open_segment_checkpoint(doc["old_checkpoint"], verifiers, prefix)
    new = open_segment_checkpoint(doc["new_checkpoint"], verifiers, prefix)
    consistent = (
        old.prefix == new.prefix
        and old.segment == new.segment == doc["segment"]
        and (old.first_seq, old.prev_note_hash) == (new.first_seq, new.prev_note_hash)
        and (old.size, new.size) == (doc["old_size"], doc["new_size"])
    )
    if not consistent or not hashchain.verify_consistency(
        old.size, new.size, doc["proof"], old.root, new.root
    ):
        raise IntegrityError(f"consistency proof for segment {doc['segment']} does not verify")
    return old, new


def build_inclusion_proof(txn: ReadTxn, seq: int) -> InclusionProof:
    """Build the inclusion proof of entry ``seq`` against its segment's newest checkpoint.

    Raises:
        LedgerError: the entry does not exist or no checkpoint covers it yet.
    """
    row = txn.entry(seq)
    if row is None:
        raise LedgerError(f"ledger entry {seq} does not exist (or was pruned)")
    cp = txn.latest_checkpoint(row.segment)
    seg = next((s for s in txn.segments() if s.segment == row.segment), None)
    index = seq - (seg.first_seq if seg else seq)
    if seg is None or cp is None or cp.size <= index:
        raise LedgerError(
            f"ledger entry {seq} is not covered by a signed checkpoint yet",
            hint="call Ledger.checkpoint() with the signer first",
        )
    hashes = txn.leaf_hashes(seg.first_seq, cp.size)
    if len(hashes) != cp.size:
        raise LedgerError(f"segment {row.segment} is incomplete; run verify")
    return InclusionProof(seq, row.segment, index, cp.size, bytes(row.leaf),
                          tuple(hashchain.inclusion_proof(hashes, index)), cp.note)


def build_consistency_proof(
    txn: ReadTxn, segment: int, old_size: int, new_size: int
) -> ConsistencyProof:
    """Build a consistency proof between two stored checkpoints of one segment.

    Raises:
        LedgerError: no checkpoint at one of the sizes, or the segment was pruned.
    """
    notes = {c.size: c.note for c in txn.checkpoints(segment)}
    seg = next((s for s in txn.segments() if s.segment == segment), None)
    if old_size not in notes or new_size not in notes or old_size > new_size:
        raise LedgerError(
            f"segment {segment} has no checkpoints at sizes {old_size} and {new_size}"
        )
    if seg is None or seg.pruned:
        raise LedgerError(f"segment {segment} was pruned; only its checkpoints remain")
    hashes = txn.leaf_hashes(seg.first_seq, new_size)
    if len(hashes) != new_size:
        raise LedgerError(f"segment {segment} is incomplete; run verify")
    return ConsistencyProof(segment, old_size, new_size,
                            tuple(hashchain.consistency_proof(hashes, old_size)),
                            notes[old_size], notes[new_size])
