"""SQLite adapter of the LedgerStore port (the embedded default).

WAL journal, ``synchronous=FULL`` (a committed append survives power loss),
a busy timeout, and ``BEGIN IMMEDIATE`` for every write transaction, so any
number of processes and threads can append to one file and still produce a
single gap-free sequence: each writer reads the open segment's frontier and
sequence number inside its own exclusive transaction.

What this protects against: lost or interleaved appends between concurrent
writers; torn writes on crash; other local users reading the file (it is
created 0600, so its ``-wal`` and ``-shm`` files are too). It refuses to open
a database that carries triggers or views (an attacker could plant a trigger
that rewrites rows as they are inserted) and runs with ``trusted_schema=OFF``.

What it does not: the file is not tamper-proof. Anyone who can write it can
change rows; :mod:`sealtune.ledger.verify` detects that against the signed
checkpoints. Use one connection per thread or the store's internal lock
(done here); do not put the file on a network file system (SQLite locking is
unreliable there).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sealtune.errors import IntegrityError
from sealtune.ledger.base import (
    CheckpointRow,
    EntryFilter,
    EntryRow,
    GlobalCheckpointRow,
    LedgerError,
    SegmentRow,
    register_store,
)

BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS segments (
    segment INTEGER PRIMARY KEY,
    first_seq INTEGER NOT NULL,
    size INTEGER NOT NULL,
    frontier BLOB,
    first_time TEXT,
    last_time TEXT,
    prev_note_hash BLOB,
    chain_head BLOB,
    pruned INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    segment INTEGER NOT NULL,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL,
    prev TEXT NOT NULL,
    leaf BLOB NOT NULL,
    leaf_hash BLOB NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS entries_time ON entries (time);
CREATE TABLE IF NOT EXISTS checkpoints (
    segment INTEGER NOT NULL,
    size INTEGER NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (segment, size)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS global_checkpoints (
    size INTEGER PRIMARY KEY,
    note TEXT NOT NULL,
    frontier BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS pruned_hashes (seq INTEGER PRIMARY KEY, leaf_hash BLOB NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS cosignatures (
    size INTEGER NOT NULL,
    name TEXT NOT NULL,
    key_id INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (size, name, key_id)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS witness_sizes (url TEXT PRIMARY KEY, size INTEGER NOT NULL) STRICT;
"""
_ENTRY_COLS = "seq, segment, time, actor, action, resource, outcome, details, prev, leaf, leaf_hash"
_SEG_COLS = (
    "segment, first_seq, size, frontier, first_time, last_time, prev_note_hash, chain_head, pruned"
)
_SCAN_PAGE = 10_000


def _seg(row: tuple[Any, ...]) -> SegmentRow:
    (segment, first_seq, size, frontier, first_time, last_time, prev, head, pruned) = row
    return SegmentRow(segment, first_seq, size, frontier, first_time, last_time, prev, head,
                      bool(pruned))


def _entry(row: tuple[Any, ...]) -> EntryRow:
    return EntryRow(*row)


class _Txn:
    """Both ReadTxn and WriteTxn over one sqlite3 connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def get_meta(self, key: str) -> str | None:
        row = self._c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def segments(self) -> list[SegmentRow]:
        cur = self._c.execute(f"SELECT {_SEG_COLS} FROM segments ORDER BY segment")  # noqa: S608
        return [_seg(r) for r in cur]

    def last_segment(self) -> SegmentRow | None:
        row = self._c.execute(
            f"SELECT {_SEG_COLS} FROM segments ORDER BY segment DESC LIMIT 1"  # noqa: S608
        ).fetchone()
        return None if row is None else _seg(row)

    def checkpoints(self, segment: int | None = None) -> list[CheckpointRow]:
        if segment is None:
            cur = self._c.execute("SELECT segment, size, note FROM checkpoints ORDER BY 1, 2")
        else:
            cur = self._c.execute(
                "SELECT segment, size, note FROM checkpoints WHERE segment = ? ORDER BY 2",
                (segment,),
            )
        return [CheckpointRow(*r) for r in cur]

    def latest_checkpoint(self, segment: int) -> CheckpointRow | None:
        row = self._c.execute(
            "SELECT segment, size, note FROM checkpoints WHERE segment = ? "
            "ORDER BY size DESC LIMIT 1",
            (segment,),
        ).fetchone()
        return None if row is None else CheckpointRow(*row)

    def entry(self, seq: int) -> EntryRow | None:
        row = self._c.execute(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE seq = ?", (seq,)  # noqa: S608
        ).fetchone()
        return None if row is None else _entry(row)

    def query(self, flt: EntryFilter, *, after_seq: int, limit: int) -> list[EntryRow]:
        where: list[str] = ["seq > ?"]
        args: list[object] = [after_seq]
        if flt.since is not None:
            where.append("time >= ?")
            args.append(flt.since)
        if flt.until is not None:
            where.append("time < ?")
            args.append(flt.until)
        for col in ("actor", "action", "resource", "outcome"):
            value = getattr(flt, col)
            if value is not None:
                where.append(f"{col} = ?")  # column names come from the tuple above
                args.append(value)
        sql = (
            f"SELECT {_ENTRY_COLS} FROM entries WHERE {' AND '.join(where)} "  # noqa: S608
            "ORDER BY seq LIMIT ?"
        )
        return [_entry(r) for r in self._c.execute(sql, (*args, limit))]

    def scan(self) -> Iterator[EntryRow]:
        cur = self._c.execute(f"SELECT {_ENTRY_COLS} FROM entries ORDER BY seq")  # noqa: S608
        while rows := cur.fetchmany(_SCAN_PAGE):
            for r in rows:
                yield _entry(r)

    def leaf_hashes(self, first_seq: int, count: int) -> list[bytes]:
        cur = self._c.execute(
            "SELECT leaf_hash FROM entries WHERE seq >= ? AND seq < ? ORDER BY seq",
            (first_seq, first_seq + count),
        )
        return [bytes(r[0]) for r in cur]

    def tree_leaf_hashes(self, first_seq: int, count: int) -> list[bytes]:
        end = first_seq + count
        kept = self._c.execute(
            "SELECT leaf_hash FROM pruned_hashes WHERE seq >= ? AND seq < ? ORDER BY seq",
            (first_seq, end),
        )
        out = [bytes(r[0]) for r in kept]
        return out + self.leaf_hashes(first_seq + len(out), count - len(out))

    def scan_pruned_hashes(self) -> Iterator[tuple[int, bytes]]:
        cur = self._c.execute("SELECT seq, leaf_hash FROM pruned_hashes ORDER BY seq")
        while rows := cur.fetchmany(_SCAN_PAGE):
            for seq, h in rows:
                yield int(seq), bytes(h)

    def global_checkpoints(self) -> list[GlobalCheckpointRow]:
        cur = self._c.execute("SELECT size, note, frontier FROM global_checkpoints ORDER BY size")
        return [GlobalCheckpointRow(r[0], r[1], bytes(r[2])) for r in cur]

    def global_checkpoint_at_most(self, size: int) -> GlobalCheckpointRow | None:
        row = self._c.execute(
            "SELECT size, note, frontier FROM global_checkpoints WHERE size <= ? "
            "ORDER BY size DESC LIMIT 1",
            (size,),
        ).fetchone()
        return None if row is None else GlobalCheckpointRow(row[0], row[1], bytes(row[2]))

    def cosignatures(self, size: int) -> list[str]:
        cur = self._c.execute(
            "SELECT line FROM cosignatures WHERE size = ? ORDER BY name, key_id", (size,)
        )
        return [str(r[0]) for r in cur]

    def cosigned_sizes(self) -> list[int]:
        cur = self._c.execute("SELECT DISTINCT size FROM cosignatures ORDER BY size DESC")
        return [int(r[0]) for r in cur]

    def witness_size(self, url: str) -> int | None:
        row = self._c.execute("SELECT size FROM witness_sizes WHERE url = ?", (url,)).fetchone()
        return None if row is None else int(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def put_segment(self, row: SegmentRow) -> None:
        self._c.execute(
            f"INSERT OR REPLACE INTO segments ({_SEG_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            (row.segment, row.first_seq, row.size, row.frontier, row.first_time, row.last_time,
             row.prev_note_hash, row.chain_head, int(row.pruned)),
        )

    def insert_entries(self, rows: Sequence[EntryRow]) -> None:
        self._c.executemany(
            f"INSERT INTO entries ({_ENTRY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            [(r.seq, r.segment, r.time, r.actor, r.action, r.resource, r.outcome, r.details,
              r.prev, r.leaf, r.leaf_hash) for r in rows],
        )

    def insert_checkpoint(self, row: CheckpointRow) -> None:
        self._c.execute(
            "INSERT OR IGNORE INTO checkpoints (segment, size, note) VALUES (?, ?, ?)",
            (row.segment, row.size, row.note),
        )

    def delete_entries_before(self, seq: int) -> int:
        return self._c.execute("DELETE FROM entries WHERE seq < ?", (seq,)).rowcount

    def keep_hashes_before(self, seq: int) -> None:
        self._c.execute(
            "INSERT OR IGNORE INTO pruned_hashes (seq, leaf_hash) "
            "SELECT seq, leaf_hash FROM entries WHERE seq < ?",
            (seq,),
        )

    def insert_global_checkpoint(self, row: GlobalCheckpointRow) -> None:
        self._c.execute(
            "INSERT OR IGNORE INTO global_checkpoints (size, note, frontier) VALUES (?, ?, ?)",
            (row.size, row.note, row.frontier),
        )

    def put_cosignature(self, size: int, name: str, key_id: int, line: str) -> None:
        self._c.execute(
            "INSERT OR REPLACE INTO cosignatures (size, name, key_id, line) VALUES (?, ?, ?, ?)",
            (size, name, key_id, line),
        )

    def set_witness_size(self, url: str, size: int) -> None:
        self._c.execute(
            "INSERT OR REPLACE INTO witness_sizes (url, size) VALUES (?, ?)", (url, size)
        )


def _create_private(path: Path) -> None:
    """Create an empty database file readable by its owner only (0600).

    SQLite creates a missing file with the umask's permissions, and its ``-wal``
    and ``-shm`` files copy the database file's mode; creating the file first
    keeps all three private whatever the umask.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise LedgerError(f"cannot create ledger database {path}") from exc
    os.close(fd)


class SqliteLedgerStore:
    """A LedgerStore in one SQLite file.

    Args:
        path: the database file (created with its schema if missing).

    Raises:
        LedgerError: the file is not a ledger database or carries triggers/views.
    """

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.RLock()
        _create_private(self._path)
        try:
            self._conn = sqlite3.connect(
                self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open ledger database {self._path}") from exc
        try:
            self._setup()
        except sqlite3.Error as exc:
            self._conn.close()
            raise LedgerError(
                f"{self._path} is not a usable ledger database",
                hint="check the path and permissions; never point it at another database",
            ) from exc
        except LedgerError:
            self._conn.close()
            raise

    def _setup(self) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        c.execute("PRAGMA trusted_schema = OFF")
        if c.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            raise LedgerError(f"{self._path}: the WAL journal mode could not be enabled")
        c.execute("PRAGMA synchronous = FULL")
        bad = c.execute(
            "SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view')"
        ).fetchall()
        if bad:
            raise LedgerError(
                f"{self._path} contains {bad[0][0]} {bad[0][1]!r}; ledger databases never do",
                hint="the file may have been tampered with: keep it as evidence and run verify",
            )
        # executescript() would commit the open transaction: run statements one by one.
        with self.write():
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                c.execute(statement)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @contextmanager
    def read(self) -> Iterator[_Txn]:
        """Open a snapshot read transaction."""
        with self._lock:
            self._conn.execute("BEGIN DEFERRED")
            try:
                yield _Txn(self._conn)
            finally:
                self._conn.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator[_Txn]:
        """Open an exclusive write transaction; roll back on error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _Txn(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


def _open(location: str, create: bool) -> SqliteLedgerStore:
    if not create and not Path(location).is_file():
        raise IntegrityError(
            f"the audit ledger database {location} is missing (deleted or moved)",
            hint="restore it from a backup; keep the workspace as evidence",
        )
    return SqliteLedgerStore(Path(location))


register_store("sqlite", _open)
