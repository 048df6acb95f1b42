"""Verify reports on honest ledgers: counts, unsigned tail, trusted checkpoints."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealtune.core.hashchain import CompactRange
from sealtune.core.note import NoteSigner
from sealtune.errors import IntegrityError
from sealtune.ledger import Ledger

MakeLedger = Callable[..., Ledger]
Fill = Callable[[Ledger, int], None]


def resync_frontiers(db: Path) -> None:
    """Recompute every kept segment's stored state from its rows, as an attacker would."""
    with sqlite3.connect(db) as conn:
        for (segment,) in conn.execute("SELECT segment FROM segments WHERE pruned = 0").fetchall():
            rows = conn.execute(
                "SELECT leaf_hash FROM entries WHERE segment = ? ORDER BY seq", (segment,)
            ).fetchall()
            cr = CompactRange()
            cr.extend(bytes(h) for (h,) in rows)
            conn.execute(
                "UPDATE segments SET size = ?, frontier = ?, chain_head = ? WHERE segment = ?",
                (cr.size, cr.to_bytes(), rows[-1][0] if rows else None, segment),
            )
    conn.close()


def test_clean_report(make_ledger: MakeLedger, fill: Fill, signer: NoteSigner) -> None:
    ledger = make_ledger(segment_max_entries=10, checkpoint_every=4)
    fill(ledger, 25)
    report = ledger.verify(signer.verifier())
    assert report.ok and report.first_bad_seq is None and report.problems == ()
    assert (report.entries_checked, report.segments, report.pruned_segments) == (25, 3, 0)
    assert report.signed_through_seq == 24 and report.unsigned_tail == 1
    assert report.checkpoints == 10  # sizes 0,4,8,10 | 0,4,8,10 | 0,4
    assert "not covered by a signed checkpoint" in report.warnings[0]
    report.raise_if_failed()
    assert report.summary().startswith("25 entries in 3 segments, 10 signed checkpoints")
    assert json.loads(json.dumps(report.to_json()))["unsigned_tail"] == 1
    ledger.checkpoint()
    assert ledger.verify(signer.verifier()).unsigned_tail == 0


def test_empty_ledger_verifies(make_ledger: MakeLedger, signer: NoteSigner) -> None:
    report = make_ledger().verify(signer.verifier())
    assert report.ok and report.entries_checked == 0 and report.signed_through_seq == 0


def test_wrong_key_fails_and_raises(
    make_ledger: MakeLedger, fill: Fill, signer: NoteSigner
) -> None:
    ledger = make_ledger()
    fill(ledger, 3)
    stranger = NoteSigner(Ed25519PrivateKey.generate(), signer.name).verifier()
    report = ledger.verify(stranger)
    assert not report.ok and "does not verify" in report.reason
    assert report.summary().startswith("BROKEN")
    assert report.to_json()["problems"][0]["reason"] == report.reason
    with pytest.raises(IntegrityError):
        report.raise_if_failed()
    assert ledger.verify([stranger, signer.verifier()]).ok  # key rotation: pass both


def test_trusted_checkpoint_detects_tail_truncation(
    make_ledger: MakeLedger, fill: Fill, signer: NoteSigner, db: Path
) -> None:
    ledger = make_ledger(checkpoint_every=5)
    fill(ledger, 10)
    witness = ledger.checkpoint()
    fill(ledger, 2)
    global_witness = ledger.anchors.latest_global_checkpoint()
    assert global_witness is not None and global_witness.startswith(ledger.origin + "\n10\n")
    with sqlite3.connect(db) as conn:  # drop the newest checkpoints and the entries after 7
        conn.execute("DELETE FROM checkpoints WHERE size = 10")
        conn.execute("DELETE FROM global_checkpoints WHERE size > 7")
        conn.execute("DELETE FROM entries WHERE seq > 7")
    resync_frontiers(db)  # a careful attacker also fixes the stored frontier
    blind = ledger.verify(signer.verifier())
    assert blind.ok  # honest limitation: undetectable without an outside copy
    report = ledger.verify(signer.verifier(), trusted_checkpoints=[witness])
    assert not report.ok and report.first_bad_seq == 8
    report = ledger.verify(signer.verifier(), trusted_checkpoints=[global_witness])
    assert not report.ok and report.first_bad_seq == 8 and "rolled back" in report.reason
    other = NoteSigner(Ed25519PrivateKey.generate(), "other").sign("o\n1\n" + "A" * 43 + "=\n")
    assert not ledger.verify(signer.verifier(), trusted_checkpoints=[other]).ok
