"""The ``postgresql`` adapter of :class:`~sealtune.storage.base.MetaStore`, and its connections.

``postgresql://USER@HOST:PORT/DB?schema=NAME`` (or ``?host=/socket/dir`` for a
Unix socket). The password never appears in the URL, since URLs end up in
``config.toml``: libpq takes it from ``PGPASSWORD``, ``~/.pgpass`` or a
client certificate, and a URL that carries one is refused. The ``schema``
parameter (default ``sealtune``) keeps several workspaces apart in one
database. Records live in ``<schema>.records``; every write holds the row
lock of ``SELECT ... FOR UPDATE`` (or the unique key for an insert) and checks
the expected version, so concurrent writers never lose an update.

What this protects against: lost updates, passwords leaking into config files
and error messages (only :func:`~sealtune.storage.base.redact_url` forms are
printed), SQL injection through schema names (checked against a strict
pattern and quoted).

What it does not: the database is untrusted, like every store. A superuser
can rewrite or ``TRUNCATE`` any table; signed documents and the ledger's
checkpoints are what detect that.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from sealtune.errors import ConfigError, ConflictError, StorageError
from sealtune.storage.base import META_STORES, Record, check_key

DEFAULT_SCHEMA = "sealtune"
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
INSTALL_HINT = "install the PostgreSQL extra: pip install 'sealtune[postgresql]'"


def split_url(url: str) -> tuple[str, str]:
    """Return ``(conninfo URL for libpq, schema)`` from a sealtune PostgreSQL URL.

    Raises:
        ConfigError: the URL carries a password or names an invalid schema.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"{parts.scheme}:// is not a PostgreSQL URL",
                          hint="use postgresql://USER@HOST/DB")
    if parts.password is not None:
        raise ConfigError(
            "the PostgreSQL URL carries a password, and URLs are written to config.toml",
            hint="remove it from the URL; set PGPASSWORD or use ~/.pgpass instead",
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = DEFAULT_SCHEMA
    rest = []
    for name, value in query:
        if name == "schema":
            schema = value
        elif name == "password":
            raise ConfigError("the PostgreSQL URL carries a password parameter",
                              hint="remove it; set PGPASSWORD or use ~/.pgpass instead")
        else:
            rest.append((name, value))
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(f"schema {schema[:70]!r} in the PostgreSQL URL is not a valid name",
                          hint="use lowercase letters, digits and _ (up to 63)")
    return parts._replace(scheme="postgresql", query=urlencode(rest)).geturl(), schema


def connect(url: str) -> tuple[Any, str]:
    """Connect (autocommit; transactions are explicit) and return ``(connection, schema)``.

    Raises:
        StorageError: psycopg is not installed or the server cannot be reached.
        ConfigError: see :func:`split_url`.
    """
    conninfo, schema = split_url(url)
    try:
        import psycopg
    except ImportError:
        raise StorageError("PostgreSQL support is not installed", hint=INSTALL_HINT) from None
    try:
        return psycopg.connect(conninfo, autocommit=True), schema
    except psycopg.Error as exc:
        # Only the class name: libpq messages can echo connection parameters.
        raise StorageError(
            f"cannot connect to PostgreSQL at {safe_url(url)} ({type(exc).__name__})",
            hint="check the host, port, database and that PGPASSWORD or ~/.pgpass is set",
        ) from None


def safe_url(url: str) -> str:
    """``url`` without its query string or any password (for messages)."""
    parts = urlsplit(url)
    host = parts.hostname or dict(parse_qsl(parts.query)).get("host", "")
    return f"postgresql://{parts.username or ''}@{host}{parts.path}"


class PostgresMetaStore:
    """A MetaStore in one PostgreSQL schema.

    Args:
        url: see the module docstring.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn, self._schema = connect(url)
        self._lock = threading.RLock()
        self._t = f'"{self._schema}".records'
        with self._lock, self._conn.transaction():
            self._conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._t} (collection text NOT NULL, "
                "key text NOT NULL, version bigint NOT NULL, value bytea NOT NULL, "
                "PRIMARY KEY (collection, key))")

    @classmethod
    def from_url(cls, url: str, root: Path) -> PostgresMetaStore:
        """Open ``url`` (``root`` is unused: the store is remote)."""
        del root
        return cls(url)

    def get(self, collection: str, key: str) -> Record | None:
        """Return the record, or None."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT version, value FROM {self._t} WHERE collection = %s AND key = %s",  # noqa: S608
                (check_key(collection, what="collection"), check_key(key))).fetchone()
        return None if row is None else Record(collection, key, bytes(row[1]), int(row[0]))

    def put(self, collection: str, key: str, value: bytes, *, expect: int) -> Record:
        """Write the record if its version is ``expect`` (0: absent)."""
        check_key(collection, what="collection")
        check_key(key)
        with self._lock, self._conn.transaction():
            current = self._current(collection, key)
            if current != expect:
                raise _conflict(collection, key, current, expect)
            self._conn.execute(
                f"INSERT INTO {self._t} (collection, key, version, value) "  # noqa: S608
                "VALUES (%s, %s, %s, %s) ON CONFLICT (collection, key) DO UPDATE "
                "SET version = excluded.version, value = excluded.value",
                (collection, key, expect + 1, bytes(value)))
        return Record(collection, key, bytes(value), expect + 1)

    def _current(self, collection: str, key: str) -> int:
        # FOR UPDATE cannot lock a row that does not exist yet: two first writes
        # (expect=0) of one key would both pass. A per-key advisory lock orders them.
        self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                           (f"{self._schema}/{collection}/{key}",))
        row = self._conn.execute(
            f"SELECT version FROM {self._t} WHERE collection = %s AND key = %s FOR UPDATE",  # noqa: S608
            (collection, key)).fetchone()
        return 0 if row is None else int(row[0])

    def list(self, collection: str, prefix: str = "") -> list[Record]:
        """Records of ``collection`` whose key starts with ``prefix``, by key."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT key, version, value FROM {self._t} WHERE collection = %s "  # noqa: S608
                "AND left(key, %s) = %s ORDER BY key COLLATE \"C\"",
                (check_key(collection, what="collection"), len(prefix), prefix)).fetchall()
        return [Record(collection, k, bytes(v), int(n)) for k, n, v in rows]

    def delete(self, collection: str, key: str, *, expect: int) -> None:
        """Delete the record if its version is ``expect``."""
        with self._lock, self._conn.transaction():
            current = self._current(check_key(collection, what="collection"), check_key(key))
            if current == 0 or current != expect:
                raise _conflict(collection, key, current, expect)
            self._conn.execute(
                f"DELETE FROM {self._t} WHERE collection = %s AND key = %s",  # noqa: S608
                (collection, key))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


def _conflict(collection: str, key: str, current: int, expect: int) -> ConflictError:
    state = "absent" if current == 0 else f"at version {current}"
    return ConflictError(f"{collection}/{key} is {state}, not at version {expect}",
                         hint="another writer changed it: read it again and retry")


META_STORES.register("postgresql", PostgresMetaStore.from_url)
