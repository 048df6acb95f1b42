"""The registry's persistence on the storage port, for a workspace with remote ``[storage]``.

:class:`RemoteRegistryStore` has the methods of
:class:`~sealtune.registry.store.RegistryStore` the registry calls, over
the workspace's ``BlobStore`` and ``MetaStore``:

* signatures and snapshots: blobs ``registry/sha256/<hex>``, write-once,
  checked against their name on every read;
* sealed model files: :class:`~sealtune.storage.content.ContentBlobs` under
  ``registry/``: named by content digest, one write-once object per wrap
  generation (a key rotation adds one, ``keys/remote.py``); a reader takes
  the newest generation whose content digest matches its name and copies it
  into a hidden cache in ``<workspace>/registry/`` to open it;
* version records: ``registry-versions/NAME@vN`` written once (``expect=0``):
  a second write of a version is refused by the store;
* the signed snapshot: ``registry-snapshots/<version>`` written once, and
  the head ``registry/head`` (``{version, blob}``) moved by compare-and-set
  on the record version read when the change began.

A change (register, promote, rollback, revoke) writes its version record,
the snapshot blob and its history entry first and moves the head last: a
process killed midway leaves the old head (the records and blobs written
are unreferenced; a version number an orphan record took is never reused),
and two writers racing lose one with ``IntegrityError`` (retry).

What this protects against: a version overwritten in place (refused by the
stores), a torn change after a crash, two racing changes both winning. What
it does not: whoever can write the bucket and the database can edit them;
that is caught by the signatures, the snapshot checks and ``trust.json``
(which stays in the workspace) above this layer, not here.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import BlobExistsError, ConflictError, IntegrityError, StorageError
from sealtune.registry.store import SEALED, VersionExists, digest_bytes
from sealtune.storage import redact_url
from sealtune.storage.content import ContentBlobs

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

AREA = "registry"
VERSIONS = "registry-versions"
SNAPSHOTS = "registry-snapshots"
_HINT = "restore the registry from a trusted copy"


@dataclass
class _Change:
    """What one change writes; flushed in order when its ``transaction`` ends."""

    head_version: int | None = None
    versions: list[tuple[str, bytes]] = field(default_factory=list)
    snapshot: tuple[int, str, str] | None = None


class RemoteRegistryStore:
    """Blobs and catalogue of a registry on the workspace's remote stores."""

    def __init__(self, ws: Workspace, root: Path) -> None:
        self.blobs = ws.blobs
        self.meta = ws.meta
        self.content = ContentBlobs(self.blobs, area=AREA)
        self.sealed_dir = root / ".staging"
        self.cache_dir = root / ".cache"
        for directory in (self.sealed_dir, self.cache_dir):
            directory.mkdir(mode=0o700, exist_ok=True)
        self.where = f"{redact_url(self.meta.url)} ({redact_url(self.blobs.url)})"

    def close(self) -> None:
        """Nothing to close: the workspace owns the stores."""

    # -- blobs ---------------------------------------------------------------------

    def adopt_sealed(self, tmp: Path) -> str:
        """Store the sealed file ``tmp`` under its content digest; remove tmp."""
        from sealtune.keys.content import content_digest

        try:
            hexd = content_digest(tmp)
            self.content.put(hexd, tmp.read_bytes())
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return f"{SEALED}:{hexd}"

    def put_blob(self, data: bytes) -> str:
        """Store ``data`` under its digest if absent; return ``sha256:<hex>``."""
        digest = digest_bytes(data)
        key = f"{AREA}/sha256/{digest[7:]}"
        try:
            self.blobs.put_if_absent(key, data)
        except BlobExistsError:
            if digest_bytes(self.blobs.get(key)) != digest:
                raise IntegrityError(f"registry blob {key} does not match its name",
                                     hint=_HINT) from None
        return digest

    def get_blob(self, digest: str) -> bytes:
        """The bytes of blob ``sha256:<hex>``, checked against their name."""
        key = str(self.blob_path(digest))
        try:
            data = self.blobs.get(key)
        except StorageError:
            raise IntegrityError(f"registry blob {key} is missing", hint=_HINT) from None
        if digest_bytes(data) != digest:
            raise IntegrityError(f"registry blob {key} was modified", hint=_HINT)
        return data

    def blob_path(self, digest: str) -> Path:
        """A local path to open: sealed files are fetched (newest matching generation)."""
        kind, _, hexd = digest.partition(":")
        if kind == "sha256":
            return Path(f"{AREA}/sha256/{hexd}")
        if kind != SEALED:
            raise IntegrityError(f"registry: {digest!r} is not a registry blob name")
        number, data = self.content.read(hexd, check=lambda b: self._matches(hexd, b))
        path = self.cache_dir / f"{hexd}.g{number}"
        tmp = self.cache_dir / f".tmp-{secrets.token_hex(6)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return path

    @staticmethod
    def _matches(hexd: str, data: bytes) -> bool:
        from sealtune.keys.content import content_digest_of

        return content_digest_of(data) == hexd

    # -- catalogue -------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Change]:
        """One change: records and blobs first, the head moved last by compare-and-set."""
        change = _Change()
        yield change
        for key, text in change.versions:
            try:
                self.meta.put(VERSIONS, key, text, expect=0)
            except ConflictError:
                raise VersionExists(f"registry: {key} already exists",
                                    hint="versions are immutable; register a new one") from None
        if change.snapshot is not None:
            version, blob, created = change.snapshot
            doc = json.dumps({"version": version, "blob": blob, "created": created},
                             sort_keys=True).encode()
            try:
                self.meta.put(SNAPSHOTS, f"{version:012d}", doc, expect=0)
                self.meta.put(AREA, "head", doc, expect=change.head_version or 0)
            except ConflictError:
                raise IntegrityError(f"registry: snapshot {version} already exists",
                                     hint="another process changed the registry; retry") from None

    def insert_version(self, db: _Change, name: str, version: int, record: str,
                       created: str) -> None:
        """Add ``name@v<version>`` to the change (written once when it ends)."""
        db.versions.append((f"{name}@v{version}", record.encode()))

    def next_version(self, db: _Change, name: str) -> int:
        """One above every stored version of ``name``, orphans of killed changes included."""
        numbers = [int(r.key.rpartition("@v")[2]) for r in self.meta.list(VERSIONS, f"{name}@v")
                   if r.key.rpartition("@v")[0] == name and r.key.rpartition("@v")[2].isdigit()]
        return max(numbers, default=0) + 1

    def versions(self) -> list[tuple[str, int, str]]:
        """Every ``(name, version, record JSON)``, by name then version."""
        rows = []
        for record in self.meta.list(VERSIONS):
            name, _, number = record.key.rpartition("@v")
            if number.isdigit():
                rows.append((name, int(number), record.value.decode()))
        return sorted(rows)

    def insert_snapshot(self, db: _Change, version: int, blob: str, created: str) -> None:
        """Make snapshot ``version`` (a stored blob) the head when the change ends."""
        db.snapshot = (version, blob, created)

    def latest_snapshot(self, db: _Change | None = None) -> tuple[int, str] | None:
        """``(version, blob digest)`` of the head snapshot, or None before the first."""
        record = self.meta.get(AREA, "head")
        if db is not None:
            db.head_version = 0 if record is None else record.version
        if record is None:
            return None
        try:
            doc: dict[str, Any] = json.loads(record.value)
            return int(doc["version"]), str(doc["blob"])
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(f"{self.where}: the registry head is malformed",
                                 hint=_HINT) from None
