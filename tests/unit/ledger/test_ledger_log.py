"""The Ledger facade: append, segments, checkpoints, queries, proofs."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealtune.core.hashchain import leaf_hash
from sealtune.core.note import NoteSigner, open_checkpoint
from sealtune.errors import IntegrityError
from sealtune.ledger import (
    InvalidEventError,
    Ledger,
    LedgerError,
    SegmentCheckpoint,
    verify_consistency_proof,
    verify_inclusion_proof,
)
from sealtune.ledger.checkpoint import note_hash, open_segment_checkpoint

MakeLedger = Callable[..., Ledger]
Fill = Callable[[Ledger, int], None]
ORIGIN = "sealtune.test/ws-1/audit"


@pytest.fixture
def db(backend_db: Path | str) -> Path | str:
    """Every test here runs over SQLite and PostgreSQL (the LedgerStore conformance)."""
    return backend_db


class Clock(Protocol):
    """The conftest FakeClock, as these tests use it."""

    now: datetime

    def advance(self, delta: timedelta) -> None: ...


def segment_checkpoints(ledger: Ledger, signer: NoteSigner) -> list[SegmentCheckpoint]:
    with ledger._store.read() as txn:
        return [open_segment_checkpoint(c.note, signer.verifier(), ORIGIN)
                for c in txn.checkpoints()]


def test_append_builds_a_gap_free_hash_chain(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    entries = [ledger.append(actor="alice", action="key.use", resource=f"k{i}") for i in range(5)]
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev == "0" * 64
    for a, b in itertools.pairwise(entries):
        assert b.prev == a.leaf_hash.hex()
    for e in entries:
        assert e.leaf_hash == leaf_hash(e.leaf)
        assert e.to_json() == e.to_dict() and e.to_dict()["seq"] == e.seq and e.segment == 1
        assert e.to_json()["time"] == e.time and e.timestamp.tzinfo is not None
    assert ledger.entry(3) == entries[2]
    with pytest.raises(LedgerError):
        ledger.entry(99)


def test_new_ledger_signs_an_empty_checkpoint(make_ledger: MakeLedger, signer: NoteSigner) -> None:
    ledger = make_ledger()
    note = ledger.latest_checkpoint()
    assert note is not None
    cp = open_checkpoint(note, signer.verifier())
    assert (cp.origin, cp.size, cp.extensions) == (f"{ORIGIN}/segment/1", 0,
                                                   ("sealtune-first-seq 1",))


def test_checkpoints_every_n_entries(
    make_ledger: MakeLedger, fill: Fill, signer: NoteSigner
) -> None:
    ledger = make_ledger(checkpoint_every=3)
    fill(ledger, 10)
    assert [c.size for c in segment_checkpoints(ledger, signer)] == [0, 3, 6, 9]
    note = ledger.checkpoint()
    assert open_checkpoint(note, signer.verifier()).size == 10
    assert ledger.checkpoint() == note  # idempotent at the same size


def test_segments_close_at_max_entries(
    make_ledger: MakeLedger, fill: Fill, signer: NoteSigner
) -> None:
    ledger = make_ledger(segment_max_entries=4, checkpoint_every=100)
    fill(ledger, 10)
    segs = [e.segment for e in ledger.entries()]
    assert segs == [1, 1, 1, 1, 2, 2, 2, 2, 3, 3]
    cps = segment_checkpoints(ledger, signer)
    assert [(c.segment, c.size) for c in cps] == [(1, 0), (1, 4), (2, 0), (2, 4), (3, 0)]
    with ledger._store.read() as txn:
        notes = {(c.segment, c.size): c.note for c in txn.checkpoints()}
    assert cps[2].prev_note_hash == note_hash(notes[(1, 4)])
    assert cps[4].prev_note_hash == note_hash(notes[(2, 4)])
    assert (cps[2].first_seq, cps[4].first_seq) == (5, 9)
    assert ledger.verify(signer.verifier()).ok


def test_segments_close_by_age(make_ledger: MakeLedger, fill: Fill, clock: Clock) -> None:
    ledger = make_ledger(segment_max_age=timedelta(hours=1))
    fill(ledger, 3)
    clock.advance(timedelta(minutes=59, seconds=50))
    assert ledger.append(actor="a", action="key.use", resource="r").segment == 1
    clock.advance(timedelta(seconds=30))
    assert ledger.append(actor="a", action="key.use", resource="r").segment == 2


def test_append_many_is_atomic_and_crosses_segments(
    make_ledger: MakeLedger, signer: NoteSigner
) -> None:
    ledger = make_ledger(segment_max_entries=4, checkpoint_every=2)
    batch = [{"actor": "bob", "action": "file.seal", "resource": f"f{i}"} for i in range(9)]
    with pytest.raises(InvalidEventError):
        ledger.append_many([*batch, {"actor": "bob", "action": "bad", "resource": ""}])
    assert list(ledger.entries()) == []
    entries = ledger.append_many(batch)
    assert [e.seq for e in entries] == list(range(1, 10))
    assert [e.segment for e in entries] == [1] * 4 + [2] * 4 + [3]
    assert ledger.append_many([]) == []
    report = ledger.verify(signer.verifier())
    assert report.ok and report.segments == 3 and report.unsigned_tail == 1


def test_without_signer_appends_then_catches_up(
    make_ledger: MakeLedger, fill: Fill, signer: NoteSigner
) -> None:
    reader = make_ledger(signer=None, segment_max_entries=3, checkpoint_every=2)
    fill(reader, 5)
    assert reader.latest_checkpoint() is None
    assert {e.segment for e in reader.entries()} == {1}  # no signer: no segment close
    with pytest.raises(LedgerError, match="no signer"):
        reader.checkpoint()
    report = reader.verify(signer.verifier())
    assert report.ok and report.unsigned_tail == 5 and report.signed_through_seq == 0
    writer = make_ledger(segment_max_entries=3, checkpoint_every=2)
    assert writer.append(actor="a", action="key.use", resource="r").segment == 2
    report = writer.verify(signer.verifier())
    assert report.ok and report.signed_through_seq == 5 and report.unsigned_tail == 1


def test_reopen_with_other_origin_fails(make_ledger: MakeLedger) -> None:
    make_ledger().append(actor="a", action="key.use", resource="r")
    with pytest.raises(LedgerError, match="another origin"):
        make_ledger(origin="sealtune.test/other")
    with pytest.raises(Exception, match="origin"):
        make_ledger(origin="has space")


def test_clock_going_backwards_is_clamped(make_ledger: MakeLedger, clock: Clock) -> None:
    ledger = make_ledger()
    first = ledger.append(actor="a", action="key.use", resource="r")
    clock.advance(timedelta(hours=-5))
    second = ledger.append(actor="a", action="key.use", resource="r")
    assert second.time == first.time


def test_entries_filters_and_paging(make_ledger: MakeLedger, clock: Clock) -> None:
    ledger = make_ledger(checkpoint_every=10_000)
    start = clock.now
    ledger.append_many(
        {"actor": "alice" if i % 2 else "bob", "action": "key.use", "resource": f"k{i % 3}",
         "outcome": "denied" if i % 5 == 0 else "success"} for i in range(2500)
    )
    assert len(list(ledger.entries())) == 2500
    assert len(list(ledger.entries(actor="alice"))) == 1250
    assert len(list(ledger.entries(outcome="denied", resource="k0"))) == 167
    assert [e.seq for e in ledger.entries(limit=3)] == [1, 2, 3]
    assert len(list(ledger.entries(limit=1500))) == 1500
    mid = start + timedelta(seconds=1001)
    assert [e.seq for e in ledger.entries(since=mid, limit=1)] == [1001]
    assert [e.seq for e in ledger.entries(until=mid)][-1] == 1000
    assert list(ledger.entries(action="file.seal")) == []


def test_inclusion_proofs_verify_offline(
    make_ledger: MakeLedger, fill: Fill, signer: NoteSigner
) -> None:
    ledger = make_ledger(segment_max_entries=7, checkpoint_every=3)
    fill(ledger, 17)
    ledger.checkpoint()
    for seq in range(1, 18):
        proof = ledger.inclusion_proof(seq)
        entry = verify_inclusion_proof(proof.to_json(), signer.verifier(), prefix=ORIGIN)
        assert entry.seq == seq and entry.resource == f"key/{seq - 1}"
    fill(ledger, 1)
    with pytest.raises(LedgerError, match="not covered"):
        ledger.inclusion_proof(18)


def test_tampered_inclusion_proofs_fail(
    make_ledger: MakeLedger, fill: Fill, signer: NoteSigner
) -> None:
    ledger = make_ledger(segment_max_entries=5, checkpoint_every=5)
    fill(ledger, 10)
    good = json.loads(ledger.inclusion_proof(3).to_json())
    other = json.loads(ledger.inclusion_proof(8).to_json())
    mutations = [
        {"leaf": good["leaf"].replace("key/2", "key/X")},
        {"leaf_index": 3},
        {"seq": 4},
        {"checkpoint": other["checkpoint"]},
        {"proof": good["proof"][:-1]},
        {"proof": [*good["proof"], good["proof"][0]]},
        {"tree_size": 4},
        {"format": "sealtune-inclusion-v0"},
        {"extra": 1},
        {"checkpoint": good["checkpoint"].replace("segment/1", "segment/9")},
    ]
    for change in mutations:
        doc = {**good, **change}
        with pytest.raises(IntegrityError):
            verify_inclusion_proof(json.dumps(doc), signer.verifier())
    with pytest.raises(IntegrityError):
        verify_inclusion_proof(json.dumps(good), signer.verifier(), prefix="sealtune.test/other")
    stranger = NoteSigner(Ed25519PrivateKey.generate(), signer.name)
    with pytest.raises(IntegrityError):
        verify_inclusion_proof(json.dumps(good), stranger.verifier())
    with pytest.raises(IntegrityError):
        verify_inclusion_proof("not json", signer.verifier())


def test_consistency_proofs(make_ledger: MakeLedger, fill: Fill, signer: NoteSigner) -> None:
    ledger = make_ledger(checkpoint_every=4)
    fill(ledger, 13)
    for old in (0, 4, 8, 12):
        proof = ledger.consistency_proof(1, old, 12)
        old_cp, new_cp = verify_consistency_proof(proof.to_json(), signer.verifier())
        assert (old_cp.size, new_cp.size) == (old, 12)
    with pytest.raises(LedgerError):
        ledger.consistency_proof(1, 5, 12)
    doc = json.loads(ledger.consistency_proof(1, 4, 12).to_json())
    doc["old_checkpoint"], doc["new_checkpoint"] = doc["new_checkpoint"], doc["old_checkpoint"]
    with pytest.raises(IntegrityError):
        verify_consistency_proof(json.dumps(doc), signer.verifier())
