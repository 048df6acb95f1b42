"""The registry's persistence: immutable content-addressed blobs and a SQLite catalogue.

:class:`RegistryStore` is the one place the registry touches the disk, so
that it can later sit on the storage port (a ``BlobStore`` with
put-if-absent and a ``MetaStore``) without the rest of the registry
changing. Under ``<workspace>/registry/``:

* ``blobs/sha256/<hex>``: signatures and snapshots, named by the SHA-256 of
  their bytes (read-only, ``0400``). :meth:`RegistryStore.put_blob` writes a
  temp file, fsyncs it and *links* it into place: ``link(2)`` fails when the
  name exists, so a blob is never overwritten (put-if-absent);
* ``blobs/content-sha256/<hex>``: sealed model files, named by their
  content digest (:mod:`sealtune.keys.content`: the SHA-256 of the sealed
  prefix and payload, without the key slots), linked into place the same
  way. Key rotation re-wraps them in place (``sealtune keys rotate``: the
  workspace inventory walks this directory) and a re-wrap rewrites only the
  slots, so the name stays true; they are ``0600`` so that it can;
* ``catalogue.db``: ``versions`` (one row per ``NAME@vN``, primary key
  ``(name, version)``: a second write of a version is refused by SQLite, and
  triggers refuse UPDATE and DELETE) and ``snapshots`` (the signed registry
  state, one row per snapshot version, append-only the same way). A
  register, promote, rollback or revoke is one SQLite transaction, so a
  process killed midway leaves either the old state or the new one (blobs
  written before a kill are unreferenced and harmless).

What this protects against: a version overwritten in place, a torn write
after a crash. What it does not: someone with write access to the directory
can edit the database or the blobs directly (triggers are not a tamper
guarantee); that is caught by the signatures and the snapshot checks above
this layer (:mod:`sealtune.registry.snapshot`), not here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from sealtune.errors import IntegrityError, SealtuneError

_HEX = re.compile(r"^[0-9a-f]{64}$")
#: The name prefix of a sealed blob: its content digest, which a re-wrap keeps.
SEALED = "content-sha256"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL, version INTEGER NOT NULL, record TEXT NOT NULL,
    created TEXT NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS snapshots (
    version INTEGER PRIMARY KEY, blob TEXT NOT NULL, created TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS versions_no_update BEFORE UPDATE ON versions
    BEGIN SELECT RAISE(ABORT, 'registry versions are immutable'); END;
CREATE TRIGGER IF NOT EXISTS versions_no_delete BEFORE DELETE ON versions
    BEGIN SELECT RAISE(ABORT, 'registry versions are immutable'); END;
CREATE TRIGGER IF NOT EXISTS snapshots_no_update BEFORE UPDATE ON snapshots
    BEGIN SELECT RAISE(ABORT, 'registry snapshots are append-only'); END;
CREATE TRIGGER IF NOT EXISTS snapshots_no_delete BEFORE DELETE ON snapshots
    BEGIN SELECT RAISE(ABORT, 'registry snapshots are append-only'); END;
"""


class VersionExists(SealtuneError):
    """A version of that name and number is already stored (versions are immutable)."""

    exit_code = 3
    prefix = "integrity"


def digest_bytes(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class RegistryStore:
    """Blobs and catalogue of one workspace's registry (see the module docstring).

    Args:
        root: the registry directory (``<workspace>/registry``), created ``0700``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blob_dir = root / "blobs" / "sha256"
        self.blob_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.sealed_dir = root / "blobs" / SEALED
        self.sealed_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(root, 0o700)
        self.db_path = root / "catalogue.db"
        self.where = str(self.db_path)
        self._db = sqlite3.connect(self.db_path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the catalogue."""
        self._db.close()

    # -- blobs ---------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """The path of blob ``sha256:<hex>`` or ``content-sha256:<hex>`` (existing or not)."""
        kind, _, hexd = digest.partition(":")
        if kind not in ("sha256", SEALED) or not _HEX.match(hexd):
            raise IntegrityError(f"registry: {digest!r} is not a registry blob name")
        return (self.blob_dir if kind == "sha256" else self.sealed_dir) / hexd

    def adopt_sealed(self, tmp: Path) -> str:
        """Link the fsynced sealed file ``tmp`` into place under its content digest; remove tmp.

        Returns:
            ``content-sha256:<hex>``.

        Raises:
            IntegrityError: ``tmp`` is not a sealed file, or a stored blob of that name
                does not have that content digest.
        """
        from sealtune.keys.content import content_digest

        digest = f"{SEALED}:{content_digest(tmp)}"
        # Writable by the owner: a key rotation re-wraps it in place.
        self._link(tmp, digest, mode=0o600,
                   matches=lambda final: content_digest(final) == digest.partition(":")[2])
        return digest

    def put_blob(self, data: bytes) -> str:
        """Store ``data`` under its digest if absent; return ``sha256:<hex>``."""
        digest = digest_bytes(data)
        tmp = self.blob_dir / f".tmp-{os.getpid()}-{digest[7:23]}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return self.adopt_blob(tmp, digest)

    def adopt_blob(self, tmp: Path, digest: str) -> str:
        """Link the fsynced file ``tmp`` (whose SHA-256 is ``digest``) into place; remove tmp.

        ``link(2)`` refuses an existing name: a stored blob is never replaced.
        An existing blob of the same name is checked to hold the same bytes.
        """
        self._link(tmp, digest, mode=0o400,
                   matches=lambda final: digest_bytes(final.read_bytes()) == digest)
        return digest

    def _link(self, tmp: Path, digest: str, *, mode: int,
              matches: Callable[[Path], bool]) -> None:
        """Link ``tmp`` in as blob ``digest`` (never replacing one), remove it, sync the dir.

        Raises:
            IntegrityError: a stored blob of that name fails ``matches``.
        """
        final = self.blob_path(digest)
        try:
            os.chmod(tmp, mode)
            os.link(tmp, final)
        except FileExistsError:
            if not matches(final):
                raise IntegrityError(f"registry blob {final} does not match its name",
                                     hint="restore the registry from a trusted copy") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._sync_dir(final.parent)

    def _sync_dir(self, directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def get_blob(self, digest: str) -> bytes:
        """The bytes of blob ``digest``, checked against their name.

        Raises:
            IntegrityError: missing, or its bytes do not match its name (naming the file).
        """
        path = self.blob_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"registry blob {path} is missing",
                                 hint="restore the registry from a trusted copy") from None
        if digest_bytes(data) != "sha256:" + path.name:
            raise IntegrityError(f"registry blob {path} was modified",
                                 hint="restore the registry from a trusted copy")
        return data

    # -- catalogue -------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One immediate (write-locked) transaction: all of it commits, or none."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def insert_version(self, db: sqlite3.Connection, name: str, version: int, record: str,
                       created: str) -> None:
        """Add ``name@v<version>`` inside a transaction; refuse an existing one.

        Raises:
            VersionExists: that version is already stored.
        """
        try:
            db.execute("INSERT INTO versions VALUES (?, ?, ?, ?)",
                       (name, version, record, created))
        except sqlite3.IntegrityError:
            raise VersionExists(f"registry: {name}@v{version} already exists",
                                hint="versions are immutable; register a new one") from None

    def next_version(self, db: sqlite3.Connection, name: str) -> int:
        """The next free version number of ``name`` (1 for a new name)."""
        row = db.execute("SELECT MAX(version) FROM versions WHERE name = ?", (name,)).fetchone()
        return int(row[0] or 0) + 1

    def versions(self) -> list[tuple[str, int, str]]:
        """Every ``(name, version, record JSON)``, by name then version."""
        rows = self._db.execute(
            "SELECT name, version, record FROM versions ORDER BY name, version").fetchall()
        return [(str(n), int(v), str(r)) for n, v, r in rows]

    def insert_snapshot(self, db: sqlite3.Connection, version: int, blob: str,
                        created: str) -> None:
        """Append snapshot ``version`` (a stored blob) inside a transaction."""
        try:
            db.execute("INSERT INTO snapshots VALUES (?, ?, ?)", (version, blob, created))
        except sqlite3.IntegrityError:
            raise IntegrityError(f"registry: snapshot {version} already exists",
                                 hint="another process changed the registry; retry") from None

    def latest_snapshot(self, db: sqlite3.Connection | None = None) -> tuple[int, str] | None:
        """``(version, blob digest)`` of the newest snapshot, or None before the first."""
        row = (db or self._db).execute(
            "SELECT version, blob FROM snapshots ORDER BY version DESC LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), str(row[1]))
