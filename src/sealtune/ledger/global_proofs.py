"""Global inclusion proofs: many entries proven against one signed global checkpoint.

The global tree (:mod:`sealtune.ledger.global_tree`) has one origin for the
whole life of the ledger, so one signed global checkpoint (the one a witness
cosigns, the one the trust state holds) can prove every entry ever appended.
:func:`build_global_inclusion_proofs` proves any number of entries against a
stored global checkpoint in **one pass** over the tree's leaf hashes
(:func:`sealtune.core.hashchain.inclusion_proofs`: O(n + k log n) for ``k``
entries of ``n``), and checks that the pass reproduces the signed root before
handing anything out. Each proof is a portable JSON document
(``sealtune-global-inclusion-v1``, ``docs/formats/ledger-v1.md`` §6) that
carries the signed checkpoint; :func:`verify_global_inclusion_proof` checks it
with nothing but the ledger's verifier key and origin.

**Pruned entries.** Retention deletes entries' leaf bytes but keeps their
32-byte leaf hashes, so a pruned entry can still be proven included: its
proof has ``"leaf": null`` and its ``leaf_hash``. It shows that the log held
*an* entry with that hash at that sequence number, not what the entry said
(that is gone by design).

What this protects against: a proof from another ledger or log (the
checkpoint's origin must be the ledger's, with no extension lines, so a
segment checkpoint is refused), a forged or edited checkpoint (the ledger key
signs it), a leaf or path changed in any byte (the document must be exactly
as sealtune writes it, and the path must lead to the signed root), a leaf
placed at another sequence number. What it does not: a valid proof shows the
entry is in the log the key signed, not that the event is true, and not that
the log showed everyone this checkpoint (witness cosignatures do that).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sealtune.core import hashchain
from sealtune.core.note import Checkpoint, NoteVerifier
from sealtune.errors import IntegrityError
from sealtune.ledger.base import GlobalCheckpointRow, LedgerError, ReadTxn
from sealtune.ledger.entry import Entry, entry_from_leaf
from sealtune.ledger.global_tree import _signed_root, global_size, open_global_checkpoint

GLOBAL_INCLUSION_FORMAT = "sealtune-global-inclusion-v1"
_KEYS = frozenset({"format", "seq", "tree_size", "leaf", "leaf_hash", "proof", "checkpoint"})
_PAGE = 1 << 16  # leaf hashes read per query while streaming the tree
Verifiers = NoteVerifier | Iterable[NoteVerifier]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class GlobalInclusionProof:
    """Proof that entry ``seq`` is leaf ``seq - 1`` of the global tree at ``tree_size``.

    Attributes:
        seq: the entry's sequence number.
        tree_size: the size of the checkpoint proven against.
        leaf: the canonical leaf bytes, or None for an entry pruned by retention.
        leaf_hash: the RFC 6962 leaf hash ``SHA-256(0x00 || leaf)``.
        proof: the RFC 9162 audit path, bottom-up.
        checkpoint: the signed global checkpoint note of size ``tree_size``.
    """

    seq: int
    tree_size: int
    leaf: bytes | None
    leaf_hash: bytes
    proof: tuple[bytes, ...]
    checkpoint: str

    @property
    def pruned(self) -> bool:
        """Whether the entry's leaf bytes were deleted by retention (only its hash is left)."""
        return self.leaf is None

    def to_json(self) -> str:
        """The proof as its one canonical JSON document (``sealtune-global-inclusion-v1``)."""
        return json.dumps({
            "format": GLOBAL_INCLUSION_FORMAT, "seq": self.seq, "tree_size": self.tree_size,
            "leaf": None if self.leaf is None else self.leaf.decode("utf-8"),
            "leaf_hash": _b64(self.leaf_hash), "proof": [_b64(p) for p in self.proof],
            "checkpoint": self.checkpoint,
        }, ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class ProvenEntry:
    """What a verified global inclusion proof shows.

    Attributes:
        seq: the entry's sequence number.
        leaf_hash: its RFC 6962 leaf hash.
        entry: the entry, or None when it was pruned (only the hash is proven).
        checkpoint: the verified global checkpoint.
    """

    seq: int
    leaf_hash: bytes
    entry: Entry | None
    checkpoint: Checkpoint


def _leaf_hash_stream(txn: ReadTxn, size: int) -> Iterator[bytes]:
    for first in range(1, size + 1, _PAGE):
        count = min(_PAGE, size - first + 1)
        hashes = txn.tree_leaf_hashes(first, count)
        if len(hashes) != count:
            raise LedgerError(f"leaf hashes {first} to {first + count - 1} of the global tree "
                              "are missing; run verify")
        yield from hashes


def _checkpoint_row(txn: ReadTxn, size: int | None) -> GlobalCheckpointRow:
    row = txn.global_checkpoint_at_most(global_size(txn) if size is None else size)
    if row is None or (size is not None and row.size != size):
        where = "" if size is None else f" at size {size}"
        raise LedgerError(f"the ledger has no signed global checkpoint{where}",
                          hint="seal the ledger first (Ledger.seal(), or 'sealtune audit "
                               "checkpoint')")
    return row


def build_global_inclusion_proofs(txn: ReadTxn, seqs: Iterable[int], *,
                                  size: int | None = None) -> list[GlobalInclusionProof]:
    """Prove entries ``seqs`` against one stored global checkpoint, in one pass.

    Args:
        txn: a read transaction (one snapshot for the checkpoint, hashes and leaves).
        seqs: sequence numbers (repeats ignored); proofs come back in ascending order.
        size: the stored checkpoint to prove against; None: the newest one.

    Raises:
        LedgerError: no such checkpoint, an entry it does not cover, or stored
            hashes that do not reproduce its signed root (run verify).
    """
    wanted = sorted(set(seqs))
    row = _checkpoint_row(txn, size)
    outside = [s for s in wanted if type(s) is not int or not 1 <= s <= row.size]
    if outside:
        raise LedgerError(f"ledger entry {outside[0]} is not covered by the global checkpoint "
                          f"at size {row.size}", hint="seal the ledger after appending it")
    try:
        batch = hashchain.inclusion_proofs(_leaf_hash_stream(txn, row.size), row.size,
                                           [s - 1 for s in wanted])
    except ValueError:
        raise LedgerError("the global tree's stored leaf hashes are damaged; run verify") \
            from None
    if batch.root != _signed_root(row):
        raise LedgerError(f"the stored leaf hashes do not reproduce the global checkpoint at "
                          f"size {row.size}; run verify")
    proofs = []
    for seq in wanted:
        digest = batch.leaf_hashes[seq - 1]
        stored = txn.entry(seq)
        leaf = None if stored is None else bytes(stored.leaf)
        if leaf is not None and hashchain.leaf_hash(leaf) != digest:
            raise LedgerError(f"ledger entry {seq} does not match its leaf hash; run verify")
        proofs.append(GlobalInclusionProof(seq, row.size, leaf, digest,
                                           batch.proofs[seq - 1], row.note))
    return proofs


def _decode(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None


def parse_global_inclusion_proof(text: str) -> GlobalInclusionProof:
    """Read a proof document strictly: exactly the bytes :meth:`~GlobalInclusionProof.to_json`
    writes (keys, spacing, canonical base64), so no byte of it can change unnoticed.

    Raises:
        IntegrityError: anything else.
    """
    bad = IntegrityError(f"not a {GLOBAL_INCLUSION_FORMAT} proof as sealtune writes it")
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.keys() != _KEYS or \
                doc["format"] != GLOBAL_INCLUSION_FORMAT:
            raise ValueError("keys")
        seq, size, leaf, path, note = (doc[k] for k in ("seq", "tree_size", "leaf", "proof",
                                                        "checkpoint"))
        if (type(seq) is not int or type(size) is not int or not isinstance(note, str)
                or not (leaf is None or isinstance(leaf, str)) or not isinstance(path, list)
                or len(path) > 64):
            raise ValueError("types")
        proof = GlobalInclusionProof(seq, size, None if leaf is None else leaf.encode("utf-8"),
                                     _decode(doc["leaf_hash"]),
                                     tuple(_decode(p) for p in path), note)
    except (ValueError, TypeError, RecursionError, UnicodeError):
        raise bad from None
    if proof.to_json() != text:
        raise bad
    return proof


def verify_global_inclusion_proof(proof: GlobalInclusionProof | str, verifiers: Verifiers, *,
                                  origin: str) -> ProvenEntry:
    """Check a global inclusion proof offline; return what it proves.

    Args:
        proof: the proof or its JSON document.
        verifiers: the trusted ledger key(s).
        origin: the ledger's origin (its global checkpoints' origin).

    Raises:
        IntegrityError: the document, its checkpoint, its leaf or its path does not verify.
    """
    if isinstance(proof, str):
        proof = parse_global_inclusion_proof(proof)
    cp = open_global_checkpoint(proof.checkpoint, verifiers, origin)
    entry = None
    if proof.leaf is not None:
        try:
            entry = entry_from_leaf(proof.leaf)
        except ValueError:
            raise IntegrityError(f"the leaf of the proof of entry {proof.seq} is malformed") \
                from None
    consistent = (proof.tree_size == cp.size and 1 <= proof.seq <= cp.size
                  and (entry is None or (entry.seq == proof.seq
                                         and entry.leaf_hash == proof.leaf_hash)))
    if not consistent or not hashchain.verify_inclusion(
            proof.leaf_hash, proof.seq - 1, cp.size, proof.proof, cp.root):
        raise IntegrityError(f"global inclusion proof for entry {proof.seq} does not verify")
    return ProvenEntry(proof.seq, proof.leaf_hash, entry, cp)
