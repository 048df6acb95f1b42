"""Retention: prune closed segments, keep their checkpoints, verify afterwards."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import pytest

from sealtune.core.note import NoteSigner
from sealtune.errors import UsageError
from sealtune.ledger import DEFAULT_RETENTION, Ledger

MakeLedger = Callable[..., Ledger]
Fill = Callable[[Ledger, int], None]


class Clock(Protocol):
    """The conftest FakeClock, as these tests use it."""

    now: datetime

    def advance(self, delta: timedelta) -> None: ...
DAY = timedelta(days=1)


def daily_log(make_ledger: MakeLedger, clock: Clock, fill: Fill, days: int) -> Ledger:
    """One segment per day, 5 entries each."""
    ledger = make_ledger(checkpoint_every=2)
    for _ in range(days):
        fill(ledger, 5)
        clock.advance(DAY)
    return ledger


def test_prune_old_segments_and_verify(
    make_ledger: MakeLedger, fill: Fill, clock: Clock, signer: NoteSigner
) -> None:
    ledger = daily_log(make_ledger, clock, fill, 10)
    assert timedelta(days=180) == DEFAULT_RETENTION
    result = ledger.prune(timedelta(days=5, hours=12))
    assert result.segments == (1, 2, 3, 4, 5) and result.segments_pruned == 5
    assert result.entries_deleted == 25
    assert result.event is not None and result.event.action == "ledger.prune"
    assert result.event.details["through_segment"] == 5
    remaining = [e.seq for e in ledger.entries()]
    assert remaining[0] == 26 and remaining[-1] == result.event.seq
    report = ledger.verify(signer.verifier())
    assert report.ok, report.reason
    assert report.pruned_segments == 5 and report.unsigned_tail == 0
    assert any("shorter than the default 180" in w for w in report.warnings)
    # Pruning again with the same cutoff removes nothing more.
    again = ledger.prune(timedelta(days=5, hours=12))
    assert again.segments == () and again.event is None
    # And a later prune moves on, still verifiable.
    assert ledger.prune(timedelta(days=2, hours=12)).segments == (6, 7, 8)
    assert ledger.verify(signer.verifier()).ok


def test_prune_closes_an_old_open_segment_but_never_prunes_the_open_one(
    make_ledger: MakeLedger, fill: Fill, clock: Clock, signer: NoteSigner, tmp_path: Path
) -> None:
    ledger = make_ledger(segment_max_age=timedelta(days=30))
    fill(ledger, 4)
    clock.advance(timedelta(days=200))
    result = ledger.prune(DEFAULT_RETENTION)
    assert result.segments == (1,)
    assert result.event is not None and result.event.segment == 2
    report = ledger.verify(signer.verifier())
    assert report.ok and report.warnings == ()
    fresh = make_ledger(path=tmp_path / "fresh.db", segment_max_age=timedelta(days=30))
    fill(fresh, 3)
    clock.advance(timedelta(days=10))
    assert fresh.prune(timedelta(days=1)).segments == ()  # open segment, not yet 30 days


def test_prune_without_signer_records_unsigned_event(
    make_ledger: MakeLedger, fill: Fill, clock: Clock, signer: NoteSigner
) -> None:
    daily_log(make_ledger, clock, fill, 4)
    reader = make_ledger(signer=None)
    result = reader.prune(timedelta(days=2, hours=12))
    assert result.segments == (1, 2)
    report = reader.verify(signer.verifier())
    assert report.ok and report.unsigned_tail == 2  # entry 20 and the prune event
    assert any("unsigned" in w for w in report.warnings)


def test_prune_then_tamper_with_kept_checkpoints(
    make_ledger: MakeLedger, fill: Fill, clock: Clock, signer: NoteSigner, db: Path
) -> None:
    ledger = daily_log(make_ledger, clock, fill, 6)
    assert ledger.prune(timedelta(days=4, hours=12)).segments == (1, 2)
    assert ledger.verify(signer.verifier()).ok
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM checkpoints WHERE segment = 2 AND size = 5")
    report = ledger.verify(signer.verifier())
    assert not report.ok and "segment 3 links to a final checkpoint" in report.reason
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE checkpoints SET note = replace(note, 'segment/1', 'segment/9')")
    assert not ledger.verify(signer.verifier()).ok


def test_prune_rejects_non_positive_retention(make_ledger: MakeLedger) -> None:
    with pytest.raises(UsageError):
        make_ledger().prune(timedelta(0))


def test_a_key_destruction_outlives_retention_as_a_checked_quote(
    make_ledger: MakeLedger, fill: Fill, clock: Clock, signer: NoteSigner, db: Path
) -> None:
    ledger = make_ledger(checkpoint_every=2)
    fill(ledger, 3)
    destroyed = ledger.append(actor="alice", action="key.destroy", resource="kek/default",
                              details={"versions": [1]})
    revoked = ledger.append(actor="bob", action="registry.revoke", resource="bot@v1",
                            details={"reason_digest": "ab" * 16})
    clock.advance(DAY)
    for _ in range(3):
        fill(ledger, 5)
        clock.advance(DAY)
    result = ledger.prune(timedelta(days=2, hours=12))
    assert result.segments == (1, 2) and result.event is not None
    assert result.event.details["kept"] == 2
    assert destroyed.seq not in {e.seq for e in ledger.entries(action="key.destroy")}
    kept = list(ledger.entries(action="ledger.kept"))
    assert [(e.resource, e.details["seq"]) for e in kept] == [
        ("kek/default", destroyed.seq), ("bot@v1", revoked.seq)]
    assert '"action":"key.destroy"' in kept[0].details["leaf"]
    assert ledger.verify(signer.verifier()).ok
    # A quote that lies (appended by anyone who may append) fails verify, naming it.
    ledger.append(actor="mallory", action="ledger.kept", resource="kek/default",
                  details={"seq": destroyed.seq, "leaf": kept[0].details["leaf"].replace(
                      "kek/default", "kek/other")})
    report = ledger.verify(signer.verifier())
    assert not report.ok and "(ledger.kept) quotes entry" in report.reason, report.reason
