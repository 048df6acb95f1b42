"""An attacker with write access to the ledger's SQLite file, without the signing key.

Each test edits the database directly (as such an attacker would) and checks
that verify fails at the right place, or, for the attacks a log without an
external witness cannot detect, that the report says so honestly.

Fixture log: segment_max_entries=10, checkpoint_every=4, 25 entries, then an
on-demand checkpoint. Segments: 1 = seq 1-10, 2 = 11-20, 3 = 21-25.
Checkpoint sizes: segment 1 and 2: 0, 4, 8, 10; segment 3: 0, 4, 5.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealtune.core.hashchain import CompactRange, leaf_hash
from sealtune.core.note import NoteSigner
from sealtune.ledger import Ledger, LedgerError, VerifyReport
from sealtune.ledger.entry import canonical_json

ORIGIN = "sealtune.test/adversarial"
SIGNER = NoteSigner(Ed25519PrivateKey.generate(), "sealtune.test/ledger-key")
VERIFIER = SIGNER.verifier()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def build(path: Path, *, signer: NoteSigner | None = SIGNER) -> Ledger:
    ledger = Ledger.open(path, signer=signer, origin=ORIGIN, checkpoint_every=4,
                         segment_max_entries=10, clock=Clock())
    ledger.append_many([])
    for i in range(25):
        ledger.append(actor=f"user{i % 3}", action="file.seal", resource=f"ds/{i + 1}",
                      details={"n": i + 1})
    ledger.checkpoint()
    return ledger


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tmpl") / "ledger.db"
    build(path).close()
    return path


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    shutil.copy(template, path)
    return path


def verify(db: Path, **kwargs: Any) -> VerifyReport:
    with Ledger.open(db, signer=None, origin=ORIGIN, checkpoint_every=4) as ledger:
        return ledger.verify(VERIFIER, **kwargs)


def sql(db: Path, *statements: str | tuple[str, tuple[Any, ...]]) -> None:
    with sqlite3.connect(db) as conn:
        for st_ in statements:
            if isinstance(st_, tuple):
                conn.execute(*st_)
            else:
                conn.execute(st_)
    conn.close()


def resync(db: Path) -> None:
    """Recompute the stored frontiers from the rows, hiding the easy tell."""
    with sqlite3.connect(db) as conn:
        for (seg,) in conn.execute("SELECT segment FROM segments WHERE pruned = 0").fetchall():
            hashes = conn.execute("SELECT leaf_hash FROM entries WHERE segment = ? ORDER BY seq",
                                  (seg,)).fetchall()
            cr = CompactRange()
            cr.extend(bytes(h) for (h,) in hashes)
            conn.execute("UPDATE segments SET size = ?, frontier = ?, chain_head = ? "
                         "WHERE segment = ?",
                         (cr.size, cr.to_bytes(), hashes[-1][0] if hashes else None, seg))
    conn.close()


Edit = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def rewrite(db: Path, start: int, edit: Edit) -> None:
    """Rewrite every entry from ``start`` on consistently: leaves, hashes, prev links."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT leaf FROM entries WHERE seq >= ? ORDER BY seq",
                            (start,)).fetchall()
        prev_row = conn.execute("SELECT leaf_hash FROM entries WHERE seq = ?",
                                (start - 1,)).fetchone()
        objs = edit([json.loads(bytes(r[0])) for r in rows])
        conn.execute("DELETE FROM entries WHERE seq >= ?", (start,))
        prev = bytes(prev_row[0]).hex() if prev_row else "0" * 64
        for obj in objs:
            obj["prev"] = prev
            leaf = canonical_json(obj)
            h = leaf_hash(leaf)
            conn.execute(
                "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (obj["seq"], obj["segment"], obj["time"], obj["actor"], obj["action"],
                 obj["resource"], obj["outcome"], canonical_json(obj["details"]).decode(),
                 obj["prev"], leaf, h),
            )
            prev = h.hex()
    conn.close()
    resync(db)


def assert_fails_at(report: VerifyReport, seq: int | None) -> None:
    assert not report.ok
    assert report.first_bad_seq == seq, report.problems


def test_untouched_log_verifies(db: Path) -> None:
    report = verify(db)
    assert report.ok and report.entries_checked == 25 and report.checkpoints == 11
    assert report.unsigned_tail == 0 and report.signed_through_seq == 25


# -- single-row edits are localised exactly ---------------------------------------


@pytest.mark.parametrize(("column", "value"), [
    ("actor", "mallory"), ("action", "file.open"), ("resource", "ds/other"),
    ("outcome", "denied"), ("details", '{"n":999}'), ("time", "2024-03-01T00:00:07.000000Z"),
    ("prev", "f" * 64), ("segment", 2),
])
def test_edited_column(db: Path, column: str, value: object) -> None:
    sql(db, (f"UPDATE entries SET {column} = ? WHERE seq = 6", (value,)))
    assert_fails_at(verify(db), 6)


def test_edited_leaf_without_hash(db: Path) -> None:
    sql(db, "UPDATE entries SET leaf = CAST(replace(CAST(leaf AS TEXT), 'ds/6', 'ds/X') AS BLOB)"
            " WHERE seq = 6")
    assert_fails_at(verify(db), 6)


def test_edited_leaf_and_hash_of_one_row(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT leaf FROM entries WHERE seq = 6").fetchone()
        obj = json.loads(bytes(row[0]))
        obj["resource"] = "ds/X"
        leaf = canonical_json(obj)
        conn.execute("UPDATE entries SET leaf = ?, leaf_hash = ?, resource = 'ds/X' WHERE seq = 6",
                     (leaf, leaf_hash(leaf)))
    conn.close()
    resync(db)
    report = verify(db)
    assert_fails_at(report, 5)  # after the last good checkpoint (size 4)
    assert report.bad_range == (5, 8)
    assert any(p.seq == 7 and "link" in p.reason for p in report.problems)


def test_swapped_rows(db: Path) -> None:
    cols = "segment, time, actor, action, resource, outcome, details, prev, leaf, leaf_hash"
    with sqlite3.connect(db) as conn:
        a = conn.execute(f"SELECT {cols} FROM entries WHERE seq = 6").fetchone()
        b = conn.execute(f"SELECT {cols} FROM entries WHERE seq = 7").fetchone()
        sets = ", ".join(f"{c.strip()} = ?" for c in cols.split(","))
        conn.execute(f"UPDATE entries SET {sets} WHERE seq = 6", b)
        conn.execute(f"UPDATE entries SET {sets} WHERE seq = 7", a)
    conn.close()
    assert_fails_at(verify(db), 6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seq=st.integers(1, 25), offset=st.integers(0, 400), bit=st.integers(0, 7))
def test_any_flipped_leaf_bit_is_found_at_its_entry(seq: int, offset: int, bit: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "l.db"
        build(path).close()
        with sqlite3.connect(path) as conn:
            leaf = bytearray(conn.execute("SELECT leaf FROM entries WHERE seq = ?",
                                          (seq,)).fetchone()[0])
            leaf[offset % len(leaf)] ^= 1 << bit
            conn.execute("UPDATE entries SET leaf = ? WHERE seq = ?", (bytes(leaf), seq))
        conn.close()
        assert_fails_at(verify(path), seq)


# -- deletion, insertion, renumbering ---------------------------------------------------


def test_deleted_row(db: Path) -> None:
    sql(db, "DELETE FROM entries WHERE seq = 6")
    assert_fails_at(verify(db), 6)


def test_deleted_row_renumbered_and_rehashed(db: Path) -> None:
    def drop(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for obj in objs[1:]:
            obj["seq"] -= 1
        return objs[1:]

    rewrite(db, 6, drop)
    report = verify(db)
    assert_fails_at(report, 5)
    assert report.bad_range == (5, 8)


def test_inserted_row_renumbered_and_rehashed(db: Path) -> None:
    def insert(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        forged = {**objs[0], "actor": "mallory", "resource": "ds/alibi"}
        for obj in objs:
            obj["seq"] += 1
        return [forged, *objs]

    rewrite(db, 6, insert)
    assert_fails_at(verify(db), 5)


def test_renumbered_row(db: Path) -> None:
    sql(db, "UPDATE entries SET seq = 30 WHERE seq = 25")
    assert_fails_at(verify(db), 25)


def test_truncated_signed_entries(db: Path) -> None:
    sql(db, "DELETE FROM entries WHERE seq >= 24")
    resync(db)
    report = verify(db)
    assert_fails_at(report, 24)
    assert report.bad_range == (24, 25)


def test_consistent_rewrite_of_everything_is_caught_by_checkpoints(db: Path) -> None:
    def rename(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for obj in objs:
            obj["actor"] = "mallory"
        return objs

    rewrite(db, 16, rename)  # every entry from 16 on, across segments 2 and 3
    report = verify(db)
    # Segment 2 (seq 11-20) is signed at sizes 4, 8, 10: good through 14, bad at 18.
    assert_fails_at(report, 15)
    assert report.bad_range == (15, 18)
    assert any(p.range == (21, 24) for p in report.problems)  # segment 3 too


# -- checkpoints --------------------------------------------------------------------


def test_deleted_final_checkpoint(db: Path) -> None:
    sql(db, "DELETE FROM checkpoints WHERE segment = 1 AND size = 10")
    report = verify(db)
    assert not report.ok and "segment 2 links to a final checkpoint" in report.reason


def test_deleted_checkpoints_of_a_segment(db: Path) -> None:
    sql(db, "DELETE FROM checkpoints WHERE segment = 2")
    report = verify(db)
    assert not report.ok and any("segment 2 has no valid checkpoint" in p.reason
                                 for p in report.problems)


def test_deleted_intermediate_checkpoint_is_harmless(db: Path) -> None:
    sql(db, "DELETE FROM checkpoints WHERE segment = 1 AND size = 4")
    report = verify(db)
    assert report.ok and report.checkpoints == 10


def test_replayed_checkpoint_in_another_slot(db: Path) -> None:
    sql(db, "UPDATE checkpoints SET note = (SELECT note FROM checkpoints WHERE segment = 1 AND "
            "size = 4) WHERE segment = 2 AND size = 4")
    report = verify(db)
    assert not report.ok and "moved or replayed" in report.reason


def test_edited_checkpoint_text(db: Path) -> None:
    sql(db, "UPDATE checkpoints SET note = replace(note, char(10) || '5' || char(10), "
            "char(10) || '6' || char(10)) WHERE segment = 3 AND size = 5")
    report = verify(db)
    assert not report.ok and "does not verify" in report.reason


def test_checkpoint_forged_with_another_key(db: Path) -> None:
    mallory = NoteSigner(Ed25519PrivateKey.generate(), SIGNER.name)
    with sqlite3.connect(db) as conn:
        note = conn.execute("SELECT note FROM checkpoints WHERE segment = 3 AND size = 5")
        text = note.fetchone()[0].split("\n\n")[0] + "\n"
        conn.execute("UPDATE checkpoints SET note = ? WHERE segment = 3 AND size = 5",
                     (mallory.sign(text),))
    conn.close()
    assert not verify(db).ok


# -- whole segments -------------------------------------------------------------------


def test_deleted_middle_segment(db: Path) -> None:
    sql(db, "DELETE FROM entries WHERE segment = 2", "DELETE FROM checkpoints WHERE segment = 2",
        "DELETE FROM segments WHERE segment = 2")
    report = verify(db)
    assert not report.ok and report.first_bad_seq == 11


def test_deleted_middle_segment_entries_only(db: Path) -> None:
    sql(db, "DELETE FROM entries WHERE segment = 2",
        "UPDATE segments SET pruned = 1, frontier = NULL WHERE segment = 2")
    report = verify(db)
    assert_fails_at(report, 11)
    assert "only a prefix" in report.reason or "missing" in report.reason


def test_early_deletion_disguised_as_retention(db: Path) -> None:
    sql(db, "DELETE FROM entries WHERE segment <= 2",
        "UPDATE segments SET pruned = 1, frontier = NULL WHERE segment <= 2")
    report = verify(db)
    assert_fails_at(report, 1)
    assert "no ledger.prune event" in report.reason


def test_truncation_to_an_older_segment_leaves_a_warning(db: Path) -> None:
    # The attacker also deletes the global checkpoints, which alone would catch this.
    sql(db, "DELETE FROM entries WHERE seq > 9", "DELETE FROM checkpoints WHERE segment > 1",
        "DELETE FROM checkpoints WHERE segment = 1 AND size > 4",
        "DELETE FROM global_checkpoints WHERE size > 4",
        "DELETE FROM segments WHERE segment > 1")
    resync(db)
    report = verify(db)
    assert report.ok  # undetectable without a witness: say so
    assert report.unsigned_tail == 5 and report.signed_through_seq == 4
    assert any("exceeds checkpoint_every" in w for w in report.warnings)


def test_rollback_to_an_old_copy_needs_a_witness(db: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    shutil.copy(db, old)
    with Ledger.open(db, signer=SIGNER, origin=ORIGIN, checkpoint_every=4,
                     segment_max_entries=10, clock=Clock()) as ledger:
        for _ in range(5):
            ledger.append(actor="a", action="key.use", resource="r")
        witness = ledger.checkpoint()
    shutil.copy(old, db)
    assert verify(db).ok
    report = verify(db, trusted_checkpoints=[witness])
    assert not report.ok and report.first_bad_seq == 26


def test_unsigned_tail_edits_are_reported_not_failed(db: Path) -> None:
    with Ledger.open(db, signer=None, origin=ORIGIN) as ledger:
        ledger.append(actor="a", action="key.use", resource="r")

    def edit(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        objs[0]["actor"] = "mallory"
        return objs

    rewrite(db, 26, edit)
    report = verify(db)
    assert report.ok and report.unsigned_tail == 1
    assert "not covered by a signed checkpoint" in report.warnings[0]


# -- store-level sabotage ---------------------------------------------------------------


def test_damaged_frontier(db: Path) -> None:
    sql(db, ("UPDATE segments SET frontier = ? WHERE segment = 3", (bytes(8),)))
    assert not verify(db).ok
    with Ledger.open(db, signer=SIGNER, origin=ORIGIN) as ledger, \
            pytest.raises(LedgerError, match="damaged"):
        ledger.append(actor="a", action="key.use", resource="r")


@pytest.mark.parametrize(("column", "value"), [
    ("chain_head", bytes(32)), ("prev_note_hash", bytes(32)), ("frontier", None),
])
def test_damaged_segment_state(db: Path, column: str, value: object) -> None:
    sql(db, (f"UPDATE segments SET {column} = ? WHERE segment = 3", (value,)))
    report = verify(db)
    assert not report.ok and "stored" in report.reason


def test_deleted_segment_record(db: Path) -> None:
    sql(db, "DELETE FROM segments WHERE segment = 2")
    assert not verify(db).ok


def test_planted_trigger_is_refused(db: Path) -> None:
    sql(db, "CREATE TRIGGER t AFTER INSERT ON entries BEGIN "
            "UPDATE entries SET actor = 'x' WHERE seq = new.seq; END")
    with pytest.raises(LedgerError, match="trigger"):
        Ledger.open(db, signer=None, origin=ORIGIN)


def test_first_bad_seq_survives_the_problem_cap(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    with Ledger.open(path, signer=SIGNER, origin=ORIGIN, checkpoint_every=4,
                     segment_max_entries=10, clock=Clock()) as ledger:
        ledger.append_many({"actor": "a", "action": "key.use", "resource": str(i)}
                           for i in range(150))
    # 121 edited rows are found first; the early deletion of segment 1 only at the end.
    sql(path, "UPDATE entries SET actor = 'mallory' WHERE seq >= 30",
        "DELETE FROM entries WHERE segment = 1")
    report = verify(path)
    assert len(report.problems) == 100 and report.problem_count > 121
    assert report.first_bad_seq == 1 and "no ledger.prune event" in report.reason
