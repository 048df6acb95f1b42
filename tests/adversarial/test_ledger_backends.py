"""The ledger's conformance suite over every store adapter: SQLite and PostgreSQL.

An attacker with write access to the database (not the signing key) edits,
deletes or truncates rows directly; verify must fail at the right entry on
every backend. On PostgreSQL that includes ``TRUNCATE``, which bypasses row
triggers: append-only tables are no guarantee, the signed checkpoints are.
Eight processes appending at once must leave one gap-free sequence.

Fixture log: segment_max_entries=10, checkpoint_every=4, 25 entries, then an
on-demand checkpoint (segments 1 = seq 1-10, 2 = 11-20, 3 = 21-25).
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from sealtune.core.note import NoteSigner
from sealtune.errors import IntegrityError
from sealtune.ledger import Ledger, LedgerError, VerifyReport

ORIGIN = "sealtune.test/backends"
KEY_NAME = "sealtune.test/ledger-key"
PRIVATE = Ed25519PrivateKey.generate()
SIGNER = NoteSigner(PRIVATE, KEY_NAME)

SQL = Callable[[str], None]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _pg_sql(url: str) -> SQL:
    import psycopg

    from sealtune.storage.postgresql import split_url

    conninfo, schema = split_url(url)

    def run(statement: str) -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            conn.execute(statement)

    return run


def _sqlite_sql(path: Path) -> SQL:
    def run(statement: str) -> None:
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(statement)
        conn.close()

    return run


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, SQL]:
    """``(location, sql)``: where the ledger is and a raw SQL backdoor into it."""
    if request.param == "sqlite":
        path = tmp_path / "ledger.db"
        return str(path), _sqlite_sql(path)
    url = str(request.getfixturevalue("postgres_url"))
    return url, _pg_sql(url)


@pytest.fixture
def built(backend: tuple[str, SQL]) -> tuple[str, SQL]:
    location, _ = backend
    with Ledger.open(location, signer=SIGNER, origin=ORIGIN, checkpoint_every=4,
                     segment_max_entries=10, clock=Clock()) as ledger:
        for i in range(25):
            ledger.append(actor=f"user{i % 3}", action="file.seal", resource=f"ds/{i + 1}",
                          details={"n": i + 1})
        ledger.checkpoint()
    return backend


def verify(location: str) -> VerifyReport:
    with Ledger.open(location, signer=None, origin=ORIGIN, checkpoint_every=4,
                     create=False) as ledger:
        return ledger.verify(SIGNER.verifier())


def assert_fails_at(report: VerifyReport, seq: int) -> None:
    assert not report.ok
    assert report.first_bad_seq == seq, report.problems


def test_untouched_log_verifies(built: tuple[str, SQL]) -> None:
    report = verify(built[0])
    assert report.ok, report.problems
    assert report.entries_checked == 25 and report.segments == 3


@pytest.mark.parametrize(("column", "value"), [("actor", "'mallory'"),
                                               ("details", "'{\"n\":99}'"),
                                               ("time", "'2024-03-01T00:00:00Z'")])
def test_edited_row(built: tuple[str, SQL], column: str, value: str) -> None:
    built[1](f"UPDATE entries SET {column} = {value} WHERE seq = 7")
    assert_fails_at(verify(built[0]), 7)


def test_deleted_row(built: tuple[str, SQL]) -> None:
    built[1]("DELETE FROM entries WHERE seq = 6")
    assert_fails_at(verify(built[0]), 6)


def test_deleted_tail_is_caught_by_the_checkpoints(built: tuple[str, SQL]) -> None:
    built[1]("DELETE FROM entries WHERE seq >= 21")
    assert_fails_at(verify(built[0]), 21)


def test_truncated_entries_table_is_caught_by_the_checkpoints(built: tuple[str, SQL]) -> None:
    # TRUNCATE on PostgreSQL (bypasses row triggers); the same effect on SQLite.
    location, sql = built
    sql("DELETE FROM entries" if "://" not in location else "TRUNCATE entries")
    assert_fails_at(verify(location), 1)


def test_edited_checkpoint_is_caught(built: tuple[str, SQL]) -> None:
    built[1]("UPDATE checkpoints SET note = replace(note, '\n4\n', '\n5\n') "
             "WHERE segment = 1 AND size = 4")
    assert not verify(built[0]).ok


def test_a_missing_ledger_is_never_silently_recreated(backend: tuple[str, SQL]) -> None:
    with pytest.raises(IntegrityError, match="missing"):
        Ledger.open(backend[0], signer=None, origin=ORIGIN, create=False)


def test_planted_trigger_is_refused(built: tuple[str, SQL]) -> None:
    location, sql = built
    if "://" in location:
        sql("CREATE FUNCTION rewrite() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN NEW.actor := 'x'; RETURN NEW; END $$")
        sql("CREATE TRIGGER t BEFORE INSERT ON entries FOR EACH ROW EXECUTE FUNCTION rewrite()")
    else:
        sql("CREATE TRIGGER t AFTER INSERT ON entries BEGIN "
            "UPDATE entries SET actor = 'x' WHERE seq = new.seq; END")
    with pytest.raises(LedgerError, match="trigger"):
        Ledger.open(location, signer=None, origin=ORIGIN)


# The suite imports tests with --import-mode=importlib: a spawned child runs this text.
WORKER = """
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sealtune.core.note import NoteSigner
from sealtune.ledger import Ledger

signer = None if KEY is None else NoteSigner(Ed25519PrivateKey.from_private_bytes(KEY), KEY_NAME)
with Ledger.open(LOCATION, signer=signer, origin=ORIGIN, checkpoint_every=10,
                 segment_max_entries=60) as ledger:
    for i in range(PER_WORKER):
        ledger.append(actor=f"worker-{WORKER_ID}", action="test.append", resource=f"r/{i}",
                      details={"i": i})
"""


def test_eight_processes_append_one_gap_free_sequence(backend: tuple[str, SQL]) -> None:
    location, _ = backend
    workers, per_worker = 8, 40
    raw = PRIVATE.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    Ledger.open(location, signer=SIGNER, origin=ORIGIN).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=exec, args=(WORKER, {
        "LOCATION": location, "WORKER_ID": w, "KEY": raw if w % 2 == 0 else None,
        "KEY_NAME": KEY_NAME, "ORIGIN": ORIGIN, "PER_WORKER": per_worker}))
        for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * workers
    with Ledger.open(location, signer=SIGNER, origin=ORIGIN, checkpoint_every=10) as ledger:
        entries = list(ledger.entries())
        assert [e.seq for e in entries] == list(range(1, workers * per_worker + 1))
        assert Counter(e.actor for e in entries) == {f"worker-{w}": per_worker
                                                     for w in range(workers)}
        for w in range(workers):
            assert [e.details["i"] for e in entries
                    if e.actor == f"worker-{w}"] == list(range(per_worker))
        report = ledger.verify(SIGNER.verifier())
        assert report.ok, report.problems
        assert report.entries_checked == workers * per_worker and report.segments >= 2


