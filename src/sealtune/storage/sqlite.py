"""The ``sqlite`` adapter of :class:`~sealtune.storage.base.MetaStore` (the embedded default).

``sqlite:meta.db`` (relative to the workspace) or ``sqlite:///abs/meta.db``.
One table of ``(collection, key) -> (version, value)``; every write is a
``BEGIN IMMEDIATE`` transaction that checks the expected version first, so
concurrent processes never lose an update. The file is created ``0600``.

What this protects against: lost updates between concurrent writers, torn
writes (WAL, ``synchronous=FULL``), other local users reading the catalogue.

What it does not: anyone who can write the file can change records. What must
not be forged (the registry snapshot) is signed by its writer and checked by
its reader; digests of artifacts are checked against the blobs they name.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from sealtune.errors import ConflictError, StorageError
from sealtune.storage.base import META_STORES, Record, check_key

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records (collection TEXT NOT NULL, key TEXT NOT NULL, "
    "version INTEGER NOT NULL, value BLOB NOT NULL, PRIMARY KEY (collection, key)) STRICT"
)


class SqliteMetaStore:
    """A MetaStore in one SQLite file.

    Args:
        path: the database file (created with its schema if missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path).absolute()
        self.url = f"sqlite://{self.path}"
        self._lock = threading.RLock()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
            self._conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA trusted_schema = OFF")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open metadata database {self.path}",
                               hint="check the path and its permissions") from exc

    @classmethod
    def from_url(cls, url: str, root: Path) -> SqliteMetaStore:
        """Open ``sqlite:REL`` (under ``root``) or ``sqlite:///ABS``."""
        parts = urlsplit(url)
        if parts.netloc or not parts.path:
            raise StorageError(f"{url!r} is not a sqlite file URL",
                               hint="use sqlite:meta.db or sqlite:///absolute/path.db")
        path = Path(parts.path)
        return cls(path if path.is_absolute() else root / path)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _version(self, conn: sqlite3.Connection, collection: str, key: str) -> int:
        row = conn.execute("SELECT version FROM records WHERE collection = ? AND key = ?",
                           (collection, key)).fetchone()
        return 0 if row is None else int(row[0])

    def get(self, collection: str, key: str) -> Record | None:
        """Return the record, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT version, value FROM records WHERE collection = ? AND key = ?",
                (check_key(collection, what="collection"), check_key(key)),
            ).fetchone()
        return None if row is None else Record(collection, key, bytes(row[1]), int(row[0]))

    def put(self, collection: str, key: str, value: bytes, *, expect: int) -> Record:
        """Write the record if its version is ``expect`` (0: absent)."""
        check_key(collection, what="collection")
        check_key(key)
        with self._write() as conn:
            current = self._version(conn, collection, key)
            if current != expect:
                raise _conflict(collection, key, current, expect)
            conn.execute(
                "INSERT INTO records (collection, key, version, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (collection, key) DO UPDATE SET version = excluded.version, "
                "value = excluded.value",
                (collection, key, expect + 1, bytes(value)),
            )
        return Record(collection, key, bytes(value), expect + 1)

    def list(self, collection: str, prefix: str = "") -> list[Record]:
        """Records of ``collection`` whose key starts with ``prefix``, by key."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, version, value FROM records WHERE collection = ? "
                "AND substr(key, 1, ?) = ? ORDER BY key",
                (check_key(collection, what="collection"), len(prefix), prefix),
            ).fetchall()
        return [Record(collection, k, bytes(v), int(n)) for k, n, v in rows]

    def delete(self, collection: str, key: str, *, expect: int) -> None:
        """Delete the record if its version is ``expect``."""
        with self._write() as conn:
            current = self._version(conn, collection, key)
            if current == 0 or current != expect:
                raise _conflict(collection, key, current, expect)
            conn.execute("DELETE FROM records WHERE collection = ? AND key = ?",
                         (collection, key))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


def _conflict(collection: str, key: str, current: int, expect: int) -> ConflictError:
    state = "absent" if current == 0 else f"at version {current}"
    return ConflictError(
        f"{collection}/{key} is {state}, not at version {expect}",
        hint="another writer changed it: read it again and retry",
    )


META_STORES.register("sqlite", SqliteMetaStore.from_url)
