"""Sealing a stream as it is produced, without the plaintext ever reaching a file.

:class:`SealedWriter` takes bytes (or lines) as they are made and hands
them through a bounded in-memory pipe to a thread that runs the envelope
sealer into the destination file, so the plaintext exists only in this
process's memory, a few MiB at a time. The bytes written are hashed on the
way: the facts returned (:class:`SealedFile`) carry the file's content
digest (:mod:`sealtune.keys.content`, which rotation does not change) and,
on request, the plaintext's digest.

A writer seals either under a fresh target made through the workspace's key
service (``keys=``: the wraps are audited, and :meth:`SealedWriter.close`
checks under the key-version lock, :mod:`sealtune.keys.versions`, that
every version it wrapped under is still live, deleting the file otherwise,
so a rotation that retired the version meanwhile cannot leave a file nobody
can open; the seal is audited as ``file.seal``) or under a given
:class:`~sealtune.keys.sealing.target.SealingTarget` (``target=``: inside a
sandbox, with no keyring; whoever installs the file checks the versions).

What this protects against: plaintext records on disk (temp files, crash
leftovers) while a file is written; a file published under a retired key
version. What it does not: the plaintext is in process memory while it is
processed (and reaches swap if the host swaps); a writer that is neither
closed nor aborted leaves a partial sealed file for its caller to delete.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from sealtune.core.envelope import PREFIX_BYTES
from sealtune.errors import SealtuneError, UsageError
from sealtune.keys.sealing._pipes import CHUNK, DEPTH, END, Aborted, put
from sealtune.keys.sealing.target import SealingTarget, new_target
from sealtune.keys.versions import check_live
from sealtune.outputs import disk_full, writing

if TYPE_CHECKING:
    from sealtune.keys.service import KeyService

__all__ = ["SealedFile", "SealedWriter", "seal_bytes"]


@dataclass(frozen=True)
class SealedFile:
    """Facts about one file written by :class:`SealedWriter` (no key material).

    Attributes:
        name: the file name.
        content_sha256: the sealed file's content digest (hex SHA-256 of its prefix and
            payload, see :mod:`sealtune.keys.content`): unchanged by key rotation.
        size: bytes on disk.
        plaintext_size: bytes sealed.
        lines: lines (records) written.
        file_id: the sealed file's id.
        keys: ``<kek uri>@<version>`` of each KEK the data key is wrapped under.
        plaintext_sha256: hex SHA-256 of the bytes sealed, when the writer was asked
            for it (records, not secrets): a digest that does not depend on the random
            data key, so two runs that seal the same records can be compared.
    """

    name: str
    content_sha256: str
    size: int
    plaintext_size: int
    lines: int
    file_id: str
    keys: tuple[str, ...]
    plaintext_sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The manifest's entry for this file."""
        entry = {"name": self.name, "content_sha256": self.content_sha256, "size": self.size,
                 "plaintext_size": self.plaintext_size, "records": self.lines,
                 "file_id": self.file_id, "keys": list(self.keys)}
        if self.plaintext_sha256 is not None:
            entry["plaintext_sha256"] = self.plaintext_sha256
        return entry


class _HashingFile(io.RawIOBase):
    """A write-only file that hashes what it writes, except the header slots.

    What it hashes is the sealed file's content digest (prefix and payload:
    :mod:`sealtune.keys.content`), computed in the one pass that writes it.
    """

    def __init__(self, fh: BinaryIO, *, skip: tuple[int, int]) -> None:
        self._fh = fh
        self._skip = skip
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        start, end = self.size, self.size + len(view)
        lo, hi = self._skip
        if end <= lo or start >= hi:
            self.sha256.update(view)
        else:  # the slots [lo, hi) are left out: rotation rewrites them
            self.sha256.update(view[: max(0, lo - start)])
            self.sha256.update(view[max(0, hi - start):])
        self._fh.write(view)
        self.size = end
        return len(view)


class _PipeReader(io.RawIOBase):
    """The reading end of an in-memory pipe of byte chunks (what the sealer reads)."""

    def __init__(self, chunks: queue.Queue[Any]) -> None:
        self._chunks = chunks
        self._view = memoryview(b"")
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._view:
            if self._eof:
                return 0
            chunk = self._chunks.get()
            if chunk is END:
                self._eof = True
                return 0
            if isinstance(chunk, BaseException):
                raise chunk
            self._view = memoryview(chunk)
        n = min(len(buffer), len(self._view))
        buffer[:n] = self._view[:n]
        self._view = self._view[n:]
        return n


def _writer_target(keys: KeyService | None, key_names: Sequence[str],
                   target: SealingTarget | None) -> SealingTarget:
    if (keys is None) == (target is None):
        raise UsageError("seal with either keys= (and key_names=) or target=, not both")
    if target is not None:
        if target.data_key is None:
            raise UsageError("the sealing target has no data key")
        return target
    assert keys is not None
    return new_target(keys, key_names)


class SealedWriter:
    """Seal lines into ``path`` as they are written.

    Args:
        path: the sealed file to create (created 0600; ``FileExistsError`` if it exists).
        keys: the workspace's key service: seal under a fresh data key wrapped by
            each of ``key_names`` (the first one's algorithm picks the suite).
        key_names: KEK names, at least one (with ``keys``).
        target: instead of ``keys``, seal under this target (inside a sandbox).
        digest_plaintext: also hash the plaintext (:attr:`SealedFile.plaintext_sha256`);
            for records only, never for key material.

    The file is complete only after :meth:`close`; after an error call
    :meth:`abort` and delete the file.
    """

    def __init__(self, path: Path, *, keys: KeyService | None = None,
                 key_names: Sequence[str] = (), target: SealingTarget | None = None,
                 digest_plaintext: bool = False) -> None:
        self.target = _writer_target(keys, key_names, target)
        self._owned = target is None  # a target made here is wiped when the writer ends
        self.path = path
        self.lines = 0
        self._keys = keys
        try:
            with writing(path):
                self._fh = open(path, "xb")  # noqa: SIM115 - closed in close() or abort()
        except BaseException:
            if self._owned:
                self.target.wipe()
            raise
        os.chmod(path, 0o600)
        prefix = self.target.prefix
        self._out = _HashingFile(self._fh, skip=(PREFIX_BYTES, prefix.payload_offset))
        self._chunks: queue.Queue[Any] = queue.Queue(maxsize=DEPTH)
        self._buf = bytearray()
        self._error: BaseException | None = None
        self._plaintext = 0
        self._plain_sha = hashlib.sha256() if digest_plaintext else None
        self._thread = threading.Thread(target=self._run, name="sealtune-sealer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            info = self.target.seal(cast(BinaryIO, _PipeReader(self._chunks)),
                                    cast(BinaryIO, self._out))
            self._plaintext = info.plaintext_size
        except BaseException as exc:  # re-raised in the writer's thread by _check()
            self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, SealtuneError):
                raise error
            full = disk_full(error, self.path)
            if full is not None:
                raise full from None
            raise SealtuneError(f"{self.path}: sealing failed ({type(error).__name__})",
                                hint="check free space and permissions") from None

    def write(self, data: bytes) -> None:
        """Append raw bytes (for small values; records go through :meth:`write_line`)."""
        if self._plain_sha is not None:
            self._plain_sha.update(data)
        self._buf += data
        if len(self._buf) >= CHUNK:
            self._flush()

    def write_line(self, line: bytes) -> None:
        """Append one line (``line`` ends with a newline) and count it."""
        self.lines += 1
        self.write(line)

    def _flush(self) -> None:
        self._check()
        if self._buf:
            put(self._chunks, bytes(self._buf), self._thread)
            self._buf.clear()

    def close(self) -> SealedFile:
        """Finish the stream, fsync the file and return its facts.

        With ``keys``, the versions wrapped under are checked live and the seal
        is audited as ``file.seal``.

        Raises:
            KeyDestroyedError: a KEK version it was wrapped under was retired or
                destroyed since the writer started (the file is deleted).
        """
        self._flush()
        put(self._chunks, END, self._thread)
        self._thread.join()
        self._check()
        with writing(self.path):
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        self._wipe()
        entries = self.target.entries
        if self._keys is not None:
            try:  # the versions wrapped at the start must still be live now (keys.versions)
                with self._keys.version_lock.shared():
                    check_live(self._keys, entries, what=str(self.path))
            except SealtuneError:
                self.path.unlink(missing_ok=True)
                raise
        info = SealedFile(self.path.name, self._out.sha256.hexdigest(), self._out.size,
                          self._plaintext, self.lines, self.target.file_id, entries,
                          None if self._plain_sha is None else self._plain_sha.hexdigest())
        if self._keys is not None:
            self._keys.audit("file.seal", self.path.name, details={
                "file_id": info.file_id, "plaintext_size": info.plaintext_size,
                "sealed_size": info.size, "keys": list(info.keys)})
        return info

    def abort(self) -> None:
        """Stop the sealer thread and close the file (the caller deletes it)."""
        self._buf.clear()
        if self._thread.is_alive():
            put(self._chunks, Aborted(), self._thread)
            self._thread.join(timeout=10)
        self._fh.close()
        self._wipe()

    def _wipe(self) -> None:
        if self._owned and not self._thread.is_alive():
            self.target.wipe()


def seal_bytes(path: Path, data: bytes, *, keys: KeyService,
               key_names: Sequence[str]) -> SealedFile:
    """Seal a small in-memory value (e.g. a dataset secret) into ``path`` (audited)."""
    writer = SealedWriter(path, keys=keys, key_names=key_names)
    try:
        writer.write(data)
        return writer.close()
    except BaseException:
        writer.abort()
        raise
