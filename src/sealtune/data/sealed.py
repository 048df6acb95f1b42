"""Sealed JSON lines, written and read without plaintext ever reaching a file.

:class:`SealedWriter` seals a stream of bytes as it is produced: the bytes
go through a bounded in-memory pipe to a thread that runs the envelope
sealer (:func:`sealtune.core.envelope.seal_stream`) into the destination
file, so the plaintext exists only in this process's memory, a few MiB at a
time. :func:`iter_sealed_chunks` is the reverse: the header is unlocked in
the caller's thread (the keyring and the audit ledger are used there only),
the payload is decrypted in a thread into a bounded pipe and handed out
segment by segment; :func:`iter_sealed_lines` splits it into lines.
:class:`SealedSource` unlocks a file once and reads it from the start as
often as a multi-pass reader needs (a sealed raw input to scan or ingest).

A writer wraps its data key when it starts; when it closes it checks, under
the key-version lock (:mod:`sealtune.keys.versions`), that every version it
wrapped under is still live, and deletes the file otherwise, so a rotation
that retired the version meanwhile cannot leave a file nobody can open. The
facts it returns carry the file's content digest
(:mod:`sealtune.keys.content`), hashed as it is written, which rotation does
not change.

What this protects against: plaintext records on disk (temp files, crash
leftovers) while a dataset is written or read. What it does not: the
plaintext is in process memory while it is processed (and reaches swap if
the host swaps); a chunk handed out comes from an authenticated segment,
but a file truncated at a segment boundary is detected only at its end, so
consumers must finish the iteration before trusting the whole file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from sealtune.core.envelope import (
    MAGIC,
    PREFIX_BYTES,
    OpenedHeader,
    Unwrap,
    decrypt_payload,
    make_prefix,
    new_data_key,
    read_header,
    seal_stream,
    suite_for,
    unlock_header,
    wrap_aad,
)
from sealtune.errors import IntegrityError, SealtuneError, UsageError
from sealtune.keys.base import WrappedKey
from sealtune.keys.versions import check_live
from sealtune.outputs import disk_full, writing

if TYPE_CHECKING:
    from sealtune.keys.service import KeyService

__all__ = ["CHUNK", "SealedFile", "SealedSource", "SealedWriter", "is_sealed",
           "iter_sealed_chunks", "iter_sealed_lines", "seal_bytes"]

#: Plaintext handed to the sealer thread at a time; at most ``_DEPTH`` chunks wait.
CHUNK = 256 << 10
_DEPTH = 4
_END = object()


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
            if chunk is _END:
                self._eof = True
                return 0
            if isinstance(chunk, BaseException):
                raise chunk
            self._view = memoryview(chunk)
        n = min(len(buffer), len(self._view))
        buffer[:n] = self._view[:n]
        self._view = self._view[n:]
        return n


class _Aborted(Exception):
    """Stops a pipe thread whose other end went away."""


def _put(chunks: queue.Queue[Any], item: object, worker: threading.Thread) -> None:
    """Put with back-pressure, without hanging if the worker thread has ended."""
    while True:
        try:
            chunks.put(item, timeout=0.2)
            return
        except queue.Full:
            if not worker.is_alive():
                return


class SealedWriter:
    """Seal lines into ``path`` as they are written, under a fresh data key.

    Args:
        path: the sealed file to create (must not exist; created 0600).
        keys: the workspace's key service (wraps the data key; audited).
        key_names: KEK names, at least one; the first one's algorithm picks the suite.
        digest_plaintext: also hash the plaintext (:attr:`SealedFile.plaintext_sha256`);
            for records only, never for key material.

    The file is complete only after :meth:`close`; after an error call
    :meth:`abort` and delete the file.
    """

    def __init__(self, path: Path, *, keys: KeyService, key_names: Sequence[str],
                 digest_plaintext: bool = False) -> None:
        names = list(key_names)
        if not names or len(set(names)) != len(names):
            raise UsageError("name one or more distinct keys to seal under")
        suite = suite_for(keys.info(names[0]).algorithm)
        data_key = new_data_key(suite)
        prefix = make_prefix(data_key, suite=suite)
        wrapped = [keys.wrap(n, data_key, aad=wrap_aad(prefix)) for n in names]
        self.path = path
        self.lines = 0
        self._keys = keys
        self._file_id = prefix.file_id.hex()
        self._entries = tuple(f"{w.kek_uri}@{w.version}" for w in wrapped)
        with writing(path):
            self._fh = open(path, "xb")  # noqa: SIM115 - closed in close() or abort()
        os.chmod(path, 0o600)
        self._out = _HashingFile(self._fh, skip=(PREFIX_BYTES, prefix.payload_offset))
        self._chunks: queue.Queue[Any] = queue.Queue(maxsize=_DEPTH)
        self._buf = bytearray()
        self._error: BaseException | None = None
        self._plaintext = 0
        self._plain_sha = hashlib.sha256() if digest_plaintext else None

        def run() -> None:
            try:
                info = seal_stream(cast(BinaryIO, _PipeReader(self._chunks)),
                                   cast(BinaryIO, self._out), prefix=prefix,
                                   data_key=data_key, wrapped=wrapped)
                self._plaintext = info.plaintext_size
            except BaseException as exc:  # re-raised in the writer's thread by _check()
                self._error = exc

        self._thread = threading.Thread(target=run, name="sealtune-sealer", daemon=True)
        self._thread.start()

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
            _put(self._chunks, bytes(self._buf), self._thread)
            self._buf.clear()

    def close(self) -> SealedFile:
        """Finish the stream, fsync the file and return its facts (audited as ``file.seal``).

        Raises:
            KeyDestroyedError: a KEK version it was wrapped under was retired or
                destroyed since the writer started (the file is deleted).
        """
        self._flush()
        _put(self._chunks, _END, self._thread)
        self._thread.join()
        self._check()
        with writing(self.path):
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        try:  # the versions wrapped at the start must still be live now (keys.versions)
            with self._keys.version_lock.shared():
                check_live(self._keys, self._entries, what=str(self.path))
        except SealtuneError:
            self.path.unlink(missing_ok=True)
            raise
        info = SealedFile(self.path.name, self._out.sha256.hexdigest(), self._out.size,
                          self._plaintext, self.lines, self._file_id, self._entries,
                          None if self._plain_sha is None else self._plain_sha.hexdigest())
        self._keys.audit("file.seal", str(self.path), details={
            "file_id": info.file_id, "plaintext_size": info.plaintext_size,
            "sealed_size": info.size, "keys": list(info.keys)})
        return info

    def abort(self) -> None:
        """Stop the sealer thread and close the file (the caller deletes it)."""
        self._buf.clear()
        if self._thread.is_alive():
            _put(self._chunks, _Aborted(), self._thread)
            self._thread.join(timeout=10)
        self._fh.close()


def seal_bytes(path: Path, data: bytes, *, keys: KeyService,
               key_names: Sequence[str]) -> SealedFile:
    """Seal a small in-memory value (e.g. a dataset secret) into ``path``."""
    writer = SealedWriter(path, keys=keys, key_names=key_names)
    try:
        writer.write(data)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def _unwrapper(keys: KeyService) -> Unwrap:
    def unwrap(entry: WrappedKey, aad: bytes) -> bytes | None:
        return keys.unwrap_if_held(entry, aad)
    return unwrap


class _Sink(io.RawIOBase):
    """The writing end of the decryption pipe."""

    def __init__(self, chunks: queue.Queue[Any], stop: threading.Event) -> None:
        self._chunks, self._stop = chunks, stop

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._stop.is_set():
            raise _Aborted
        self._chunks.put(bytes(data))
        return len(data)


def iter_sealed_chunks(path: Path, *, keys: KeyService) -> Iterator[bytes]:
    """The authenticated plaintext of a sealed file, segment by segment, never on disk.

    Raises:
        IntegrityError: the file was modified, truncated or extended (also midway).
        KeyringError: none of the file's KEKs is available.
    """
    with path.open("rb") as fh:
        try:
            opened = unlock_header(read_header(fh), unwrap=_unwrapper(keys))
        except IntegrityError:
            raise IntegrityError(f"{path} failed its integrity check") from None
        yield from _decrypted(fh, opened, path)


def _decrypted(fh: BinaryIO, opened: OpenedHeader, path: Path) -> Iterator[bytes]:
    """The payload of ``fh`` (positioned at it), decrypted in a thread into a bounded pipe."""
    chunks: queue.Queue[Any] = queue.Queue(maxsize=_DEPTH)
    stop = threading.Event()

    def run() -> None:
        try:
            decrypt_payload(fh, cast(BinaryIO, _Sink(chunks, stop)), opened=opened)
            chunks.put(_END)
        except BaseException as exc:  # re-raised in the consumer's thread
            chunks.put(exc)

    thread = threading.Thread(target=run, name="sealtune-opener", daemon=True)
    thread.start()
    try:
        while (item := chunks.get()) is not _END:
            if isinstance(item, IntegrityError):
                raise IntegrityError(f"{path} failed its integrity check") from None
            if isinstance(item, BaseException):
                raise SealtuneError(f"{path}: cannot read ({type(item).__name__})") from None
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full pipe
            with contextlib.suppress(queue.Empty):
                chunks.get(timeout=0.1)
        thread.join()


def is_sealed(path: Path) -> bool:
    """True if ``path`` starts with the sealed-file magic (``SEALTUNE``)."""
    try:
        with path.open("rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


class SealedSource:
    """A sealed file unlocked once, whose plaintext can be read from the start many times.

    The data key is unwrapped once (one audited ``key.unwrap``) and kept in
    memory; every :meth:`open` re-reads the file, checks that its header is
    the one unlocked and decrypts the payload again into a bounded pipe, so
    a multi-pass reader (scan, ingest) never holds or writes the plaintext.

    Raises:
        IntegrityError: the header does not authenticate.
        KeyringError: none of the file's KEKs is available.
    """

    def __init__(self, path: Path, *, keys: KeyService) -> None:
        self.path = path
        with path.open("rb") as fh:
            try:
                self._opened = unlock_header(read_header(fh), unwrap=_unwrapper(keys))
            except IntegrityError:
                raise IntegrityError(f"{path} failed its integrity check") from None
            size = fh.tell()
            fh.seek(0)
            self._header = fh.read(size)

    def open(self) -> BinaryIO:
        """A new reader of the plaintext, from its start (close it when done)."""
        fh = self.path.open("rb")
        if fh.read(len(self._header)) != self._header:
            fh.close()
            raise IntegrityError(f"{self.path} changed while it was being read")
        raw = _ChunkReader(_decrypted(fh, self._opened, self.path), fh)
        return cast(BinaryIO, io.BufferedReader(raw, buffer_size=CHUNK))


class _ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks; closing it stops the iterator."""

    def __init__(self, chunks: Iterator[bytes], fh: BinaryIO) -> None:
        self._chunks, self._fh = chunks, fh
        self._view = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._view:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._view = memoryview(chunk)
        n = min(len(buffer), len(self._view))
        buffer[:n] = self._view[:n]
        self._view = self._view[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
            self._fh.close()
        super().close()


def iter_sealed_lines(path: Path, *, keys: KeyService) -> Iterator[bytes]:
    """The lines of a sealed JSON-lines file, without their newlines."""
    rest = b""
    for chunk in iter_sealed_chunks(path, keys=keys):
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest
