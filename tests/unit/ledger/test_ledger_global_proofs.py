"""Global inclusion proofs (``sealtune-global-inclusion-v1``): many entries, one checkpoint.

Proofs of entries in every segment verify against the one global checkpoint;
every byte of a proof document matters; a proof against another origin, a
segment checkpoint or a forged checkpoint fails; pruned entries are proven by
their kept hash; and the batch equals one-at-a-time proofs for any tree size.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from sealtune.core.hashchain import inclusion_proof, leaf_hash
from sealtune.core.note import NoteSigner, open_checkpoint
from sealtune.errors import IntegrityError
from sealtune.ledger import (
    GlobalInclusionProof,
    Ledger,
    LedgerError,
    verify_global_inclusion_proof,
)
from sealtune.ledger.entry import Event

MakeLedger = Callable[..., Ledger]
Fill = Callable[[Ledger, int], None]


def test_entries_of_every_segment_verify_against_one_global_checkpoint(
        make_ledger: MakeLedger, fill: Fill, signer: NoteSigner, origin: str) -> None:
    ledger = make_ledger(checkpoint_every=3, segment_max_entries=4)
    fill(ledger, 23)
    note = ledger.seal()
    proofs = ledger.global_inclusion_proofs([23, 1, 5, 5, 12])
    assert [p.seq for p in proofs] == [1, 5, 12, 23]  # sorted, repeats once
    segments = set()
    for p in proofs:
        assert p.checkpoint == note and p.tree_size == 23 and not p.pruned
        proven = verify_global_inclusion_proof(p.to_json(), [signer.verifier()], origin=origin)
        assert proven.entry is not None and proven.entry.seq == p.seq
        assert proven.entry == ledger.entry(p.seq) and proven.checkpoint.size == 23
        segments.add(proven.entry.segment)
        doc = json.loads(p.to_json())
        assert doc["format"] == "sealtune-global-inclusion-v1" and doc["leaf"] is not None
    assert len(segments) == 4  # one origin proves entries of four segments


def test_a_stored_older_checkpoint_can_be_chosen(make_ledger: MakeLedger, fill: Fill,
                                                 signer: NoteSigner, origin: str) -> None:
    ledger = make_ledger(checkpoint_every=1000)
    fill(ledger, 5)
    old = ledger.seal()
    fill(ledger, 5)
    ledger.seal()
    (p,) = ledger.global_inclusion_proofs([3], size=5)
    assert p.checkpoint == old and p.tree_size == 5
    assert verify_global_inclusion_proof(p, [signer.verifier()], origin=origin).seq == 3
    with pytest.raises(LedgerError, match="not covered"):
        ledger.global_inclusion_proofs([6], size=5)
    with pytest.raises(LedgerError, match="no signed global checkpoint at size 7"):
        ledger.global_inclusion_proofs([1], size=7)
    for bad in (0, -1, 11):
        with pytest.raises(LedgerError):
            ledger.global_inclusion_proofs([bad])


def test_every_byte_of_a_proof_matters(make_ledger: MakeLedger, fill: Fill,
                                       signer: NoteSigner, origin: str) -> None:
    ledger = make_ledger()
    fill(ledger, 6)
    ledger.seal()
    text = ledger.global_inclusion_proofs([4])[0].to_json()
    verifiers = [signer.verifier()]
    verify_global_inclusion_proof(text, verifiers, origin=origin)
    data = text.encode("utf-8")
    for i in range(len(data)):
        for mask in (0x01, 0x20):
            flipped = bytearray(data)
            flipped[i] ^= mask
            try:
                changed = flipped.decode("utf-8")
            except UnicodeDecodeError:
                continue  # not text: a proof is read as text, so this cannot arrive
            with pytest.raises(IntegrityError):
                verify_global_inclusion_proof(changed, verifiers, origin=origin)
    # Whitespace that JSON ignores is still refused: the document is exactly as written.
    with pytest.raises(IntegrityError):
        verify_global_inclusion_proof(text.replace(", ", ",", 1), verifiers, origin=origin)


def test_another_origin_a_segment_checkpoint_or_a_forged_one_fails(
        make_ledger: MakeLedger, fill: Fill, signer: NoteSigner, origin: str,
        tmp_path: Path) -> None:
    ledger = make_ledger(checkpoint_every=2)
    fill(ledger, 4)
    ledger.seal()
    proof = ledger.global_inclusion_proofs([2])[0]
    verifiers = [signer.verifier()]
    with pytest.raises(IntegrityError):
        verify_global_inclusion_proof(proof, verifiers, origin="sealtune.test/ws-2/audit")
    other = make_ledger(path=tmp_path / "other.db", origin="sealtune.test/ws-2/audit")
    fill(other, 4)
    other.seal()
    theirs = other.global_inclusion_proofs([2])[0]  # same key, another ledger
    with pytest.raises(IntegrityError):
        verify_global_inclusion_proof(theirs, verifiers, origin=origin)
    segment_note = ledger.latest_checkpoint()
    assert segment_note is not None and open_checkpoint(segment_note, verifiers).size == 4
    as_segment = GlobalInclusionProof(proof.seq, proof.tree_size, proof.leaf, proof.leaf_hash,
                                      proof.proof, segment_note)
    with pytest.raises(IntegrityError):  # the same tree size, but a segment's origin
        verify_global_inclusion_proof(as_segment, verifiers, origin=origin)
    impostor = NoteSigner(Ed25519PrivateKey.generate(), signer.name)  # same name, other key
    text = proof.checkpoint[: proof.checkpoint.index("\n\n") + 1]
    forged = GlobalInclusionProof(proof.seq, proof.tree_size, proof.leaf, proof.leaf_hash,
                                  proof.proof, impostor.sign(text))
    with pytest.raises(IntegrityError):
        verify_global_inclusion_proof(forged, verifiers, origin=origin)
    with pytest.raises(IntegrityError):  # the impostor's own key does not make it ours
        verify_global_inclusion_proof(forged, [signer.verifier()], origin=origin)


def test_a_leaf_moved_or_swapped_fails(make_ledger: MakeLedger, fill: Fill,
                                       signer: NoteSigner, origin: str) -> None:
    ledger = make_ledger()
    fill(ledger, 8)
    ledger.seal()
    a, b = ledger.global_inclusion_proofs([3, 6])
    verifiers = [signer.verifier()]
    cases = [
        GlobalInclusionProof(a.seq, a.tree_size, b.leaf, b.leaf_hash, a.proof, a.checkpoint),
        GlobalInclusionProof(b.seq, a.tree_size, a.leaf, a.leaf_hash, a.proof, a.checkpoint),
        GlobalInclusionProof(a.seq, a.tree_size, None, b.leaf_hash, a.proof, a.checkpoint),
        GlobalInclusionProof(a.seq, a.tree_size, a.leaf, leaf_hash(b"x"), a.proof,
                             a.checkpoint),
        GlobalInclusionProof(a.seq, a.tree_size - 1, a.leaf, a.leaf_hash, a.proof,
                             a.checkpoint),
        GlobalInclusionProof(a.seq, a.tree_size, a.leaf, a.leaf_hash, a.proof[:-1],
                             a.checkpoint),
    ]
    for case in cases:
        with pytest.raises(IntegrityError):
            verify_global_inclusion_proof(case.to_json(), verifiers, origin=origin)


def test_pruned_entries_are_proven_by_their_kept_hash(
        make_ledger: MakeLedger, fill: Fill, signer: NoteSigner, origin: str,
        clock: object) -> None:
    ledger = make_ledger(checkpoint_every=2, segment_max_age=timedelta(hours=1))
    fill(ledger, 5)
    before = {s: ledger.entry(s).leaf_hash for s in (1, 2, 5)}
    clock.advance(timedelta(days=2))  # type: ignore[attr-defined]
    fill(ledger, 5)
    assert ledger.prune(timedelta(days=1)).entries_deleted == 5
    ledger.seal()
    proofs = {p.seq: p for p in ledger.global_inclusion_proofs([1, 2, 5, 7])}
    assert [s for s, p in proofs.items() if p.pruned] == [1, 2, 5]
    for seq, p in proofs.items():
        proven = verify_global_inclusion_proof(p.to_json(), [signer.verifier()], origin=origin)
        assert (proven.entry is None) == (seq != 7)
        if seq in before:
            assert proven.leaf_hash == before[seq]  # the hash of the entry as it was
        assert json.loads(p.to_json())["leaf"] is None or seq == 7
    forged = proofs[1]
    wrong = GlobalInclusionProof(1, forged.tree_size, None, before[2], forged.proof,
                                 forged.checkpoint)
    with pytest.raises(IntegrityError):
        verify_global_inclusion_proof(wrong, [signer.verifier()], origin=origin)


def test_damaged_stored_hashes_are_refused_before_a_proof_is_made(
        make_ledger: MakeLedger, fill: Fill, db: Path) -> None:
    ledger = make_ledger()
    fill(ledger, 6)
    ledger.seal()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE entries SET leaf_hash = ? WHERE seq = 2", (leaf_hash(b"x"),))
    conn.close()
    with pytest.raises(LedgerError, match="do not reproduce the global checkpoint"):
        ledger.global_inclusion_proofs([5])


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 70), st.data())
def test_any_tree_size_any_entries(n: int, data: st.DataObject) -> None:
    signer = NoteSigner(Ed25519PrivateKey.generate(), "sealtune.test/ledger-key")
    origin = "sealtune.test/ws-h/audit"
    seqs = data.draw(st.lists(st.integers(1, n), min_size=1, max_size=12))
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.open(Path(tmp) / "l.db", signer=signer, origin=origin,
                             segment_max_entries=data.draw(st.integers(1, 9)))
        try:
            ledger.append_many([Event("a", "key.use", f"k/{i}", "success", {})
                                for i in range(n)])
            ledger.seal()
            hashes = [ledger.entry(s).leaf_hash for s in range(1, n + 1)]
            for p in ledger.global_inclusion_proofs(seqs):
                assert list(p.proof) == inclusion_proof(hashes, p.seq - 1)
                assert verify_global_inclusion_proof(p.to_json(), [signer.verifier()],
                                                     origin=origin).seq == p.seq
        finally:
            ledger.close()
