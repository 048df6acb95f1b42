"""The global tree, its checkpoints and proofs, retention, the trust state, file modes."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import stat
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from sealtune.core.hashchain import verify_consistency
from sealtune.core.note import NoteSigner, open_checkpoint
from sealtune.errors import IntegrityError
from sealtune.ledger import Ledger, LedgerError
from sealtune.ledger.trust import TrustState

MakeLedger = Callable[..., Ledger]
Fill = Callable[[Ledger, int], None]


def global_notes(db: Path) -> dict[int, str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT size, note FROM global_checkpoints").fetchall()
    conn.close()
    return dict(rows)


def test_global_checkpoints_are_signed_at_creation_interval_and_seal(
    make_ledger: MakeLedger, fill: Fill, signer: NoteSigner, db: Path, origin: str
) -> None:
    ledger = make_ledger(checkpoint_every=5, segment_max_entries=4)
    assert sorted(global_notes(db)) == [0]
    fill(ledger, 7)
    assert sorted(global_notes(db)) == [0, 5]  # every 5 entries, across segments
    note = ledger.seal()
    cp = open_checkpoint(note, signer.verifier())
    assert (cp.origin, cp.size, cp.extensions) == (origin, 7, ())  # the stable origin
    assert ledger.seal() == note  # nothing new: nothing re-signed
    report = ledger.verify(signer.verifier())
    assert report.ok and report.global_size == 7 and report.global_checkpoints == 3
    assert report.unsigned_tail == 0 and report.global_checkpoint == note


def test_batches_sign_the_global_tree_from_memory_and_disk(
    make_ledger: MakeLedger, fill: Fill, signer: NoteSigner, db: Path
) -> None:
    ledger = make_ledger(checkpoint_every=5, segment_max_entries=4)
    fill(ledger, 3)  # unsigned entries read back from disk ...
    ledger.append_many({"actor": "b", "action": "key.use", "resource": str(i)} for i in range(9))
    fill(ledger, 1)  # ... plus a batch held in memory, then a tail below the interval
    ledger.append_many({"actor": "b", "action": "key.use", "resource": str(i)} for i in range(6))
    assert sorted(global_notes(db)) == [0, 12, 19]
    report = ledger.verify(signer.verifier())  # every stored root is recomputed from the entries
    assert report.ok and report.global_checkpoints == 3 and report.global_size == 19


def test_global_consistency_proofs_verify(make_ledger: MakeLedger, fill: Fill,
                                          signer: NoteSigner) -> None:
    ledger = make_ledger(checkpoint_every=3, segment_max_entries=4)
    roots = {0: open_checkpoint(ledger.seal(), signer.verifier()).root}
    for _ in range(4):
        fill(ledger, 5)
        cp = open_checkpoint(ledger.seal(), signer.verifier())
        roots[cp.size] = cp.root
    for old in roots:
        for new in roots:
            if old <= new:
                proof = ledger.anchors.global_consistency_proof(old, new)
                assert verify_consistency(old, new, proof, roots[old], roots[new])
    assert not verify_consistency(5, 20, ledger.anchors.global_consistency_proof(10, 20),
                                  roots[5], roots[20])
    with pytest.raises(LedgerError):
        ledger.anchors.global_consistency_proof(5, 21)


def test_prune_keeps_the_global_tree(make_ledger: MakeLedger, fill: Fill, signer: NoteSigner,
                                     db: Path, clock: Any) -> None:
    ledger = make_ledger(checkpoint_every=4, segment_max_entries=5)
    fill(ledger, 12)
    old = open_checkpoint(ledger.seal(), signer.verifier())
    clock.advance(timedelta(days=200))
    result = ledger.prune(timedelta(days=180))
    assert result.entries_deleted == 12  # the open segment was due to close by age
    new = open_checkpoint(ledger.seal(), signer.verifier())
    proof = ledger.anchors.global_consistency_proof(old.size, new.size)
    assert verify_consistency(old.size, new.size, proof, old.root, new.root)
    assert ledger.verify(signer.verifier(), trusted_checkpoints=[ledger.seal()]).ok
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE pruned_hashes SET leaf_hash = ? WHERE seq = 3", (bytes(32),))
    conn.close()
    report = ledger.verify(signer.verifier())
    assert not report.ok and "kept leaf hashes of a pruned segment" in report.reason
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM pruned_hashes")
    conn.close()
    report = ledger.verify(signer.verifier())
    assert not report.ok and "kept leaf hashes of entries 1 to 12 are missing" in report.reason


def test_a_ledger_pruned_before_the_global_tree_is_refused(
    make_ledger: MakeLedger, fill: Fill, db: Path, clock: Any
) -> None:
    ledger = make_ledger(checkpoint_every=4, segment_max_entries=5)
    fill(ledger, 12)
    clock.advance(timedelta(days=200))
    ledger.prune(timedelta(days=180))
    ledger.close()
    with sqlite3.connect(db) as conn:  # what an older sealtune would have left
        conn.execute("DELETE FROM pruned_hashes")
        conn.execute("DELETE FROM global_checkpoints")
    conn.close()
    with pytest.raises(LedgerError, match="without the global tree"):
        make_ledger()


def test_a_ledger_from_before_the_global_tree_grows_one(
    make_ledger: MakeLedger, fill: Fill, signer: NoteSigner, db: Path
) -> None:
    ledger = make_ledger()
    fill(ledger, 6)
    ledger.close()
    with sqlite3.connect(db) as conn:  # an unpruned ledger written before this version
        conn.execute("DROP TABLE global_checkpoints")
        conn.execute("DROP TABLE pruned_hashes")
    conn.close()
    ledger = make_ledger()  # the schema is completed on open
    report = ledger.verify(signer.verifier())
    assert report.ok and report.global_checkpoints == 0
    assert any("no global checkpoint" in w for w in report.warnings)
    fill(ledger, 1)
    cp = open_checkpoint(ledger.seal(), signer.verifier())  # signed over all 7 entries
    assert cp.size == 7 and ledger.verify(signer.verifier()).global_size == 7


def test_missing_database_is_not_recreated(tmp_path: Path, signer: NoteSigner,
                                           origin: str) -> None:
    with pytest.raises(IntegrityError, match="missing"):
        Ledger.open(tmp_path / "gone.db", signer=signer, origin=origin, create=False)
    assert not (tmp_path / "gone.db").exists()


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.usefixtures("umask_022")
def test_database_and_wal_files_are_private(tmp_path: Path, signer: NoteSigner,
                                            origin: str) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.open(path, signer=signer, origin=origin) as ledger:
        ledger.append(actor="a", action="key.use", resource="r")
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        assert all(f.exists() for f in files)  # WAL mode keeps them while open
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
    assert modes == dict.fromkeys(modes, 0o600)
    trust = TrustState(tmp_path / "ledger.trust")
    trust.write("x\n")
    assert stat.S_IMODE(trust.path.stat().st_mode) == 0o600


# -- trust state ------------------------------------------------------------------------


def test_trust_state_moves_forward_only(make_ledger: MakeLedger, fill: Fill, signer: NoteSigner,
                                        tmp_path: Path, db: Path) -> None:
    trust = TrustState(tmp_path / "ledger.trust")
    ledger = make_ledger()
    with pytest.raises(IntegrityError, match="missing"):
        ledger.anchors.advance_trust(trust, signer.verifier())
    first = ledger.anchors.advance_trust(trust, signer.verifier(), create=True)
    assert first is not None and trust.read() == first
    fill(ledger, 3)
    ledger.seal()
    second = ledger.anchors.advance_trust(trust, signer.verifier())
    assert second is not None and second.startswith(ledger.origin + "\n3\n")
    ledger.anchors.check_trusted(second, signer.verifier())
    # a stale copy of the ledger cannot move the state back: it does not extend it
    stale = tmp_path / "stale.db"
    ledger.close()
    shutil.copy(db, stale)
    ledger = make_ledger()
    fill(ledger, 2)
    ledger.seal()
    ledger.anchors.advance_trust(trust, signer.verifier())
    old = make_ledger(path=stale)
    with pytest.raises(IntegrityError, match="rolled back"):
        old.anchors.advance_trust(trust, signer.verifier())
    with pytest.raises(IntegrityError, match="rolled back"):
        old.anchors.check_trusted(trust.read() or "", signer.verifier())
    assert trust.read() == ledger.anchors.latest_global_checkpoint()


def test_a_fork_does_not_extend_the_trust_state(make_ledger: MakeLedger, fill: Fill,
                                                signer: NoteSigner, tmp_path: Path,
                                                db: Path) -> None:
    ledger = make_ledger()
    fill(ledger, 4)
    kept = tmp_path / "kept.db"
    ledger.close()
    shutil.copy(db, kept)
    ledger = make_ledger()
    fill(ledger, 3)
    trust = TrustState(tmp_path / "ledger.trust")
    trust.write(ledger.seal())
    fork = make_ledger(path=kept)  # the same key and origin, another history from size 4
    for i in range(5):
        fork.append(actor="mallory", action="key.use", resource=f"x{i}")
    fork.seal()
    with pytest.raises(IntegrityError, match="forked or was rewritten"):
        fork.anchors.advance_trust(trust, signer.verifier())
    report = fork.verify(signer.verifier(), trust_state=trust.read())
    assert not report.ok and "do not match the trust state" in report.reason


def _appender(path: str, trust: str, raw: bytes, origin: str, n: int) -> None:
    signer = NoteSigner(Ed25519PrivateKey.from_private_bytes(raw), "sealtune.test/ledger-key")
    state = TrustState(Path(trust))
    with Ledger.open(Path(path), signer=signer, origin=origin, checkpoint_every=3) as ledger:
        for i in range(n):
            ledger.append(actor="p", action="key.use", resource=str(i))
            ledger.seal()
            ledger.anchors.advance_trust(state, signer.verifier())


def test_concurrent_writers_never_move_the_trust_state_back(tmp_path: Path, origin: str) -> None:
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    signer = NoteSigner(key, "sealtune.test/ledger-key")
    path, trust = tmp_path / "ledger.db", TrustState(tmp_path / "ledger.trust")
    with Ledger.open(path, signer=signer, origin=origin, checkpoint_every=3) as ledger:
        ledger.anchors.advance_trust(trust, signer.verifier(), create=True)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_appender, args=(str(path), str(trust.path), raw, origin, 15))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    cp = open_checkpoint(trust.read() or "", signer.verifier())
    assert cp.size == 45
    with Ledger.open(path, signer=None, origin=origin) as ledger:
        assert ledger.verify(signer.verifier(), trust_state=trust.read()).ok


def test_an_edited_trust_state_is_named(make_ledger: MakeLedger, signer: NoteSigner,
                                        tmp_path: Path) -> None:
    ledger = make_ledger()
    trust = TrustState(tmp_path / "ledger.trust")
    note = ledger.anchors.advance_trust(trust, signer.verifier(), create=True) or ""
    trust.write(note.replace(ledger.origin, ledger.origin + "x", 1))
    with pytest.raises(IntegrityError, match=r"the trust state .* is not a global checkpoint"):
        ledger.anchors.advance_trust(trust, signer.verifier())
    with pytest.raises(IntegrityError, match=r"the trust state .* is not a global checkpoint"):
        ledger.anchors.check_trusted(trust.read() or "", signer.verifier(), label=trust.label)


def test_trust_file_limits(tmp_path: Path) -> None:
    trust = TrustState(tmp_path / "ledger.trust")
    assert trust.read() is None
    trust.path.write_bytes(b"\xff\xfe")
    with pytest.raises(IntegrityError, match="not a checkpoint"):
        trust.read()
    trust.path.write_bytes(b"a" * (70 * 1024))
    with pytest.raises(IntegrityError, match="too large"):
        trust.read()
