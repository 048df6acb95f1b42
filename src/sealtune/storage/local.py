"""The ``file`` adapter of :class:`~sealtune.storage.base.BlobStore`: a directory (the default).

``file:blobs`` (relative to the workspace) or ``file:///abs/dir``. A write goes
to a private temporary file that is flushed to disk and then hard-linked to
its key: ``link`` fails if the name exists, so two writers of one key cannot
both succeed and no reader ever sees a half-written blob. Files are ``0600``,
directories ``0700``.

What this protects against: overwriting an artifact by a second write, torn
writes on crash (a temporary file is left at worst, never a short blob),
other local users reading blobs, keys escaping the directory.

What it does not: anyone with write access to the directory can edit or
delete files; readers detect that against the catalogue's digests
(:func:`~sealtune.storage.base.get_verified`) and the sealing AEAD.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from sealtune.errors import BlobExistsError, StorageError
from sealtune.storage.base import BLOB_STORES, BlobStat, check_key

_TMP = ".tmp-"


class LocalBlobStore:
    """Blobs as files under one directory.

    Args:
        directory: where blobs live (created ``0700`` if missing).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).absolute()
        self.url = self.directory.as_uri()
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create blob directory {self.directory}") from exc

    @classmethod
    def from_url(cls, url: str, root: Path) -> LocalBlobStore:
        """Open ``file:REL`` (under ``root``) or ``file:///ABS``."""
        path = Path(urlsplit(url).path)
        return cls(path if path.is_absolute() else root / path)

    def path(self, key: str) -> Path:
        """The file that holds ``key`` (whether or not it exists)."""
        return self.directory.joinpath(*check_key(key).split("/"))

    def put_if_absent(self, key: str, data: bytes) -> None:
        """Store ``data`` under a new ``key`` (see the module docstring)."""
        final = self.path(key)
        if final.exists():
            raise BlobExistsError(f"{key} already exists in {self.url}",
                                  hint="stored artifacts are immutable: write a new key")
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = final.with_name(f"{_TMP}{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise BlobExistsError(f"{key} already exists in {self.url}",
                                      hint="stored artifacts are immutable: write a new key"
                                      ) from None
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new name survives a crash
        finally:
            os.close(dir_fd)

    def get(self, key: str) -> bytes:
        """Return the blob under ``key``."""
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise StorageError(f"{key} not found in {self.url}") from None

    def stat(self, key: str) -> BlobStat | None:
        """Size of the blob under ``key``, or None."""
        try:
            return BlobStat(key, self.path(key).stat().st_size)
        except FileNotFoundError:
            return None

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield keys under ``prefix``, sorted."""
        keys = []
        for dirpath, _dirs, files in os.walk(self.directory):
            rel = Path(dirpath).relative_to(self.directory)
            for name in files:
                if not name.startswith(_TMP):
                    keys.append("/".join((*rel.parts, name)))
        yield from sorted(k for k in keys if k.startswith(prefix))

    def delete(self, key: str) -> None:
        """Delete the blob under ``key``."""
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            raise StorageError(f"{key} not found in {self.url}") from None


BLOB_STORES.register("file", LocalBlobStore.from_url)
