"""PostgreSQL adapter of the LedgerStore port (``postgresql://USER@HOST/DB?schema=NAME``).

Every write transaction first takes a transaction-scoped advisory lock of the
ledger's schema, so any number of processes and hosts append one gap-free
sequence (the same guarantee as SQLite's ``BEGIN IMMEDIATE``); reads run in a
``REPEATABLE READ READ ONLY`` transaction, one consistent snapshot. The URL
never carries a password (see :mod:`sealtune.storage.postgresql`).

What this protects against: lost or interleaved appends between concurrent
writers on many hosts; torn writes (a transaction commits whole or not at
all); a trigger or rule planted on the ledger's tables (refused at open).

What it does not: the database is not tamper-proof. ``TRUNCATE`` bypasses row
triggers and a superuser can disable any trigger or rewrite any row, so an
append-only table is not a guarantee: :mod:`sealtune.ledger.verify` detects
edits, deletions and truncation against the signed checkpoints, and the trust
state (kept outside the database) detects a rollback of everything.
"""

# SQL text is built only from this module's constants and the schema name, which
# storage.postgresql.split_url checks against [a-z_][a-z0-9_]* and which is quoted;
# every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
from sealtune.storage.postgresql import connect, safe_url

_TABLES = (
    "meta (key text PRIMARY KEY, value text NOT NULL)",
    "segments (segment bigint PRIMARY KEY, first_seq bigint NOT NULL, size bigint NOT NULL, "
    "frontier bytea, first_time text, last_time text, prev_note_hash bytea, chain_head bytea, "
    "pruned boolean NOT NULL DEFAULT false)",
    "entries (seq bigint PRIMARY KEY, segment bigint NOT NULL, time text NOT NULL, "
    "actor text NOT NULL, action text NOT NULL, resource text NOT NULL, outcome text NOT NULL, "
    "details text NOT NULL, prev text NOT NULL, leaf bytea NOT NULL, leaf_hash bytea NOT NULL)",
    "checkpoints (segment bigint NOT NULL, size bigint NOT NULL, note text NOT NULL, "
    "PRIMARY KEY (segment, size))",
    "global_checkpoints (size bigint PRIMARY KEY, note text NOT NULL, frontier bytea NOT NULL)",
    "pruned_hashes (seq bigint PRIMARY KEY, leaf_hash bytea NOT NULL)",
    "cosignatures (size bigint NOT NULL, name text NOT NULL, key_id bigint NOT NULL, "
    "line text NOT NULL, PRIMARY KEY (size, name, key_id))",
    "witness_sizes (url text PRIMARY KEY, size bigint NOT NULL)",
)
_ENTRY_COLS = "seq, segment, time, actor, action, resource, outcome, details, prev, leaf, leaf_hash"
_SEG_COLS = (
    "segment, first_seq, size, frontier, first_time, last_time, prev_note_hash, chain_head, pruned"
)
_SCAN_PAGE = 10_000


def _b(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _seg(r: tuple[Any, ...]) -> SegmentRow:
    return SegmentRow(int(r[0]), int(r[1]), int(r[2]), _b(r[3]), r[4], r[5], _b(r[6]), _b(r[7]),
                      bool(r[8]))


def _entry(r: tuple[Any, ...]) -> EntryRow:
    return EntryRow(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                    bytes(r[9]), bytes(r[10]))


class _Txn:
    """Both ReadTxn and WriteTxn over one psycopg connection in a transaction."""

    def __init__(self, conn: Any, schema: str) -> None:
        self._c = conn
        self._s = f'"{schema}".'

    # "@" in a statement stands for the quoted schema prefix ('"schema".').

    def _all(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return list(self._c.execute(sql.replace("@", self._s), args).fetchall())

    def _one(self, sql: str, args: Sequence[object] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._c.execute(sql.replace("@", self._s), args).fetchone()
        return row

    def _run(self, sql: str, args: Sequence[object] = ()) -> int:
        return int(self._c.execute(sql.replace("@", self._s), args).rowcount)

    def get_meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM @meta WHERE key = %s", (key,))
        return None if row is None else str(row[0])

    def segments(self) -> list[SegmentRow]:
        return [_seg(r) for r in self._all(f"SELECT {_SEG_COLS} FROM @segments ORDER BY segment")]

    def last_segment(self) -> SegmentRow | None:
        row = self._one(f"SELECT {_SEG_COLS} FROM @segments ORDER BY segment DESC LIMIT 1")
        return None if row is None else _seg(row)

    def checkpoints(self, segment: int | None = None) -> list[CheckpointRow]:
        if segment is None:
            rows = self._all("SELECT segment, size, note FROM @checkpoints ORDER BY 1, 2")
        else:
            rows = self._all("SELECT segment, size, note FROM @checkpoints WHERE segment = %s "
                             "ORDER BY 2", (segment,))
        return [CheckpointRow(int(r[0]), int(r[1]), r[2]) for r in rows]

    def latest_checkpoint(self, segment: int) -> CheckpointRow | None:
        row = self._one("SELECT segment, size, note FROM @checkpoints WHERE segment = %s "
                        "ORDER BY size DESC LIMIT 1", (segment,))
        return None if row is None else CheckpointRow(int(row[0]), int(row[1]), row[2])

    def entry(self, seq: int) -> EntryRow | None:
        row = self._one(f"SELECT {_ENTRY_COLS} FROM @entries WHERE seq = %s", (seq,))
        return None if row is None else _entry(row)

    def query(self, flt: EntryFilter, *, after_seq: int, limit: int) -> list[EntryRow]:
        where, args = ["seq > %s"], [after_seq]
        if flt.since is not None:
            where.append("time >= %s")
            args.append(flt.since)  # type: ignore[arg-type]
        if flt.until is not None:
            where.append("time < %s")
            args.append(flt.until)  # type: ignore[arg-type]
        for col in ("actor", "action", "resource", "outcome"):
            value = getattr(flt, col)
            if value is not None:
                where.append(f"{col} = %s")  # column names come from the tuple above
                args.append(value)
        sql = (f"SELECT {_ENTRY_COLS} FROM @entries WHERE {' AND '.join(where)} "
               "ORDER BY seq LIMIT %s")
        return [_entry(r) for r in self._all(sql, (*args, limit))]

    def scan(self) -> Iterator[EntryRow]:
        after = 0
        while rows := self._all(f"SELECT {_ENTRY_COLS} FROM @entries WHERE seq > %s "
                                "ORDER BY seq LIMIT %s", (after, _SCAN_PAGE)):
            for r in rows:
                yield _entry(r)
            after = int(rows[-1][0])

    def leaf_hashes(self, first_seq: int, count: int) -> list[bytes]:
        rows = self._all("SELECT leaf_hash FROM @entries WHERE seq >= %s AND seq < %s "
                         "ORDER BY seq", (first_seq, first_seq + count))
        return [bytes(r[0]) for r in rows]

    def tree_leaf_hashes(self, first_seq: int, count: int) -> list[bytes]:
        kept = self._all("SELECT leaf_hash FROM @pruned_hashes WHERE seq >= %s AND seq < %s "
                         "ORDER BY seq", (first_seq, first_seq + count))
        out = [bytes(r[0]) for r in kept]
        return out + self.leaf_hashes(first_seq + len(out), count - len(out))

    def scan_pruned_hashes(self) -> Iterator[tuple[int, bytes]]:
        after = -1
        while rows := self._all("SELECT seq, leaf_hash FROM @pruned_hashes WHERE seq > %s "
                                "ORDER BY seq LIMIT %s", (after, _SCAN_PAGE)):
            for seq, h in rows:
                yield int(seq), bytes(h)
            after = int(rows[-1][0])

    def global_checkpoints(self) -> list[GlobalCheckpointRow]:
        rows = self._all("SELECT size, note, frontier FROM @global_checkpoints ORDER BY size")
        return [GlobalCheckpointRow(int(r[0]), r[1], bytes(r[2])) for r in rows]

    def global_checkpoint_at_most(self, size: int) -> GlobalCheckpointRow | None:
        row = self._one("SELECT size, note, frontier FROM @global_checkpoints WHERE size <= %s "
                        "ORDER BY size DESC LIMIT 1", (size,))
        return None if row is None else GlobalCheckpointRow(int(row[0]), row[1], bytes(row[2]))

    def cosignatures(self, size: int) -> list[str]:
        rows = self._all("SELECT line FROM @cosignatures WHERE size = %s "
                         'ORDER BY name COLLATE "C", key_id', (size,))
        return [str(r[0]) for r in rows]

    def cosigned_sizes(self) -> list[int]:
        rows = self._all("SELECT DISTINCT size FROM @cosignatures ORDER BY size DESC")
        return [int(r[0]) for r in rows]

    def witness_size(self, url: str) -> int | None:
        row = self._one("SELECT size FROM @witness_sizes WHERE url = %s", (url,))
        return None if row is None else int(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._run("INSERT INTO @meta (key, value) VALUES (%s, %s) "
                  "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def put_segment(self, row: SegmentRow) -> None:
        cols = _SEG_COLS.split(", ")
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols[1:])
        self._run(f"INSERT INTO @segments ({_SEG_COLS}) VALUES "
                  f"(%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (segment) DO UPDATE "
                  f"SET {updates}",
                  (row.segment, row.first_seq, row.size, row.frontier, row.first_time,
                   row.last_time, row.prev_note_hash, row.chain_head, row.pruned))

    def insert_entries(self, rows: Sequence[EntryRow]) -> None:
        with self._c.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {self._s}entries ({_ENTRY_COLS}) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(r.seq, r.segment, r.time, r.actor, r.action, r.resource, r.outcome,
                  r.details, r.prev, r.leaf, r.leaf_hash) for r in rows])

    def insert_checkpoint(self, row: CheckpointRow) -> None:
        self._run("INSERT INTO @checkpoints (segment, size, note) VALUES (%s, %s, %s) "
                  "ON CONFLICT DO NOTHING", (row.segment, row.size, row.note))

    def delete_entries_before(self, seq: int) -> int:
        return self._run("DELETE FROM @entries WHERE seq < %s", (seq,))

    def keep_hashes_before(self, seq: int) -> None:
        self._run("INSERT INTO @pruned_hashes (seq, leaf_hash) SELECT seq, leaf_hash "
                  "FROM @entries WHERE seq < %s ON CONFLICT DO NOTHING", (seq,))

    def insert_global_checkpoint(self, row: GlobalCheckpointRow) -> None:
        self._run("INSERT INTO @global_checkpoints (size, note, frontier) VALUES (%s, %s, %s) "
                  "ON CONFLICT DO NOTHING", (row.size, row.note, row.frontier))

    def put_cosignature(self, size: int, name: str, key_id: int, line: str) -> None:
        self._run("INSERT INTO @cosignatures (size, name, key_id, line) VALUES (%s, %s, %s, %s) "
                  "ON CONFLICT (size, name, key_id) DO UPDATE SET line = excluded.line",
                  (size, name, key_id, line))

    def set_witness_size(self, url: str, size: int) -> None:
        self._run("INSERT INTO @witness_sizes (url, size) VALUES (%s, %s) "
                  "ON CONFLICT (url) DO UPDATE SET size = excluded.size", (url, size))


class PostgresLedgerStore:
    """A LedgerStore in one PostgreSQL schema.

    Args:
        url: ``postgresql://USER@HOST/DB?schema=NAME`` (no password).
        create: create the schema and tables if missing; with False a missing
            ledger is an :class:`~sealtune.errors.IntegrityError`.

    Raises:
        LedgerError: the schema carries triggers or rules.
        IntegrityError: ``create`` is False and there is no ledger in the schema.
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        self._url = url
        self._conn, self._schema = connect(url)
        self._lock = threading.RLock()
        try:
            self._setup(create=create)
        except BaseException:
            self._conn.close()
            raise

    @property
    def location(self) -> str:
        """Where the ledger is, for messages (no query string, no password)."""
        return f"{safe_url(self._url)} schema {self._schema}"

    def _setup(self, *, create: bool) -> None:
        exists = self._conn.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'meta'",
            (self._schema,)).fetchone() is not None
        if exists:  # a truncated meta table is a missing ledger too, never a fresh one
            row = self._conn.execute(
                f"SELECT 1 FROM \"{self._schema}\".meta WHERE key = 'format'").fetchone()
            exists = row is not None
        if not exists and not create:
            raise IntegrityError(
                f"the audit ledger in {self.location} is missing (dropped or moved)",
                hint="restore it from a backup; keep the workspace as evidence")
        planted = self._conn.execute(
            "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND NOT t.tgisinternal "
            "UNION ALL SELECT rulename FROM pg_rules WHERE schemaname = %s",
            (self._schema, self._schema)).fetchone()
        if planted is not None:
            raise LedgerError(
                f"{self.location} has trigger or rule {planted[0]!r}; ledger tables never do",
                hint="the database may have been tampered with: keep it as evidence and verify")
        with self.write():
            self._conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
            for table in _TABLES:
                self._conn.execute(f'CREATE TABLE IF NOT EXISTS "{self._schema}".{table}')

    @contextmanager
    def read(self) -> Iterator[_Txn]:
        """Open a snapshot read transaction."""
        with self._lock, self._conn.transaction():
            self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield _Txn(self._conn, self._schema)

    @contextmanager
    def write(self) -> Iterator[_Txn]:
        """Open an exclusive write transaction; roll back on error."""
        with self._lock, self._conn.transaction():
            # One lock per ledger (schema): appends from every process queue here.
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                               (f"sealtune-ledger/{self._schema}",))
            yield _Txn(self._conn, self._schema)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


register_store("postgresql", lambda location, create: PostgresLedgerStore(location,
                                                                          create=create))
