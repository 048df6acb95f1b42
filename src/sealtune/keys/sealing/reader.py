"""Opening sealed files into memory: authenticated chunks, lines, buffers, multi-pass sources.

Every opener takes the key one of two ways: ``keys=`` (the workspace's
:class:`~sealtune.keys.service.KeyService` unwraps the data key from the
header, audited there) or ``data_key=`` (the data key itself, handed to a
sandbox over its key pipe: no keyring inside). Either way the header is
authenticated under the key the prefix commits to before any plaintext is
produced.

* :func:`open_sealed` yields the plaintext segment by segment: the header is
  unlocked in the caller's thread (the keyring and the audit ledger are
  used there only), the payload is decrypted in a thread into a bounded
  pipe; :func:`open_sealed_lines` splits it into lines.
* :func:`unseal_into` decrypts into a binary sink in the caller's thread
  (a model file or a checkpoint read into memory).
* :class:`SealedSource` unlocks a file once and reads it from the start as
  often as a multi-pass reader needs (a sealed raw input to scan or ingest).

What this protects against: plaintext on disk while a sealed file is read
(none is written), a modified file (``IntegrityError`` naming only the
file). What it does not: a chunk handed out comes from an authenticated
segment, but a file truncated at a segment boundary is detected only at its
end, so consumers must finish the iteration before trusting the whole file
(and :func:`unseal_into`'s sink may hold earlier segments when it raises:
discard it); the plaintext is in process memory (and swap, if the host
swaps).
"""

from __future__ import annotations

import contextlib
import io
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from sealtune.core.envelope import (
    MAGIC,
    OpenedHeader,
    Unwrap,
    decrypt_payload,
    read_header,
    unlock_header,
)
from sealtune.core.wrapped_key import WrappedKey
from sealtune.errors import IntegrityError, SealtuneError, UsageError
from sealtune.keys.sealing._pipes import CHUNK, DEPTH, END, Aborted

if TYPE_CHECKING:
    from sealtune.keys.service import KeyService

__all__ = ["SealedSource", "is_sealed", "open_sealed", "open_sealed_lines", "unseal_into"]


def _unwrapper(keys: KeyService | None, data_key: bytes | bytearray | None) -> Unwrap:
    """The header's unwrap callback: through the key service, or the given data key."""
    if (keys is None) == (data_key is None):
        raise UsageError("open with either keys= or data_key=, not both")
    if keys is not None:
        held = keys

        def unwrap(entry: WrappedKey, aad: bytes) -> bytes | None:
            return held.unwrap_if_held(entry, aad)
        return unwrap
    key = bytes(data_key or b"")
    return lambda _entry, _aad: key  # the commitment check rejects a wrong key


def _unlock(fh: BinaryIO, path: Path, unwrap: Unwrap) -> OpenedHeader:
    try:
        return unlock_header(read_header(fh), unwrap=unwrap)
    except IntegrityError:
        raise IntegrityError(f"{path} failed its integrity check") from None


def unseal_into(path: Path, dst: BinaryIO, *, keys: KeyService | None = None,
                data_key: bytes | bytearray | None = None) -> int:
    """Authenticate and decrypt the sealed file ``path`` into ``dst``; return its size.

    Every segment is authenticated before its plaintext is written; if this
    raises, ``dst`` may hold earlier segments' plaintext: discard it.

    Raises:
        IntegrityError: the file was modified, truncated or extended, or the
            data key is not the file's.
        KeyringError: none of the file's KEKs is available (with ``keys``).
    """
    unwrap = _unwrapper(keys, data_key)
    with path.open("rb") as fh:
        opened = _unlock(fh, path, unwrap)
        try:
            return decrypt_payload(fh, dst, opened=opened)
        except IntegrityError:
            raise IntegrityError(f"{path} failed its integrity check") from None


class _Sink(io.RawIOBase):
    """The writing end of the decryption pipe."""

    def __init__(self, chunks: queue.Queue[Any], stop: threading.Event) -> None:
        self._chunks, self._stop = chunks, stop

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._stop.is_set():
            raise Aborted
        self._chunks.put(bytes(data))
        return len(data)


def open_sealed(path: Path, *, keys: KeyService | None = None,
                data_key: bytes | bytearray | None = None) -> Iterator[bytes]:
    """The authenticated plaintext of a sealed file, segment by segment, never on disk.

    Raises:
        IntegrityError: the file was modified, truncated or extended (also midway).
        KeyringError: none of the file's KEKs is available (with ``keys``).
    """
    unwrap = _unwrapper(keys, data_key)
    with path.open("rb") as fh:
        opened = _unlock(fh, path, unwrap)
        yield from _decrypted(fh, opened, path)


def _decrypted(fh: BinaryIO, opened: OpenedHeader, path: Path) -> Iterator[bytes]:
    """The payload of ``fh`` (positioned at it), decrypted in a thread into a bounded pipe."""
    chunks: queue.Queue[Any] = queue.Queue(maxsize=DEPTH)
    stop = threading.Event()

    def run() -> None:
        try:
            decrypt_payload(fh, cast(BinaryIO, _Sink(chunks, stop)), opened=opened)
            chunks.put(END)
        except BaseException as exc:  # re-raised in the consumer's thread
            chunks.put(exc)

    thread = threading.Thread(target=run, name="sealtune-opener", daemon=True)
    thread.start()
    try:
        while (item := chunks.get()) is not END:
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


def open_sealed_lines(path: Path, *, keys: KeyService | None = None,
                      data_key: bytes | bytearray | None = None) -> Iterator[bytes]:
    """The lines of a sealed JSON-lines file, without their newlines (see :func:`open_sealed`)."""
    rest = b""
    for chunk in open_sealed(path, keys=keys, data_key=data_key):
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def is_sealed(path: Path) -> bool:
    """True if ``path`` starts with the sealed-file magic (``SEALTUNE``)."""
    try:
        with path.open("rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


class SealedSource:
    """A sealed file unlocked once, whose plaintext can be read from the start many times.

    The data key is unwrapped once (with ``keys``: one audited ``key.unwrap``)
    and kept in memory; every :meth:`open` re-reads the file, checks that its
    header is the one unlocked and decrypts the payload again into a bounded
    pipe, so a multi-pass reader (scan, ingest) never holds or writes the
    plaintext.

    Raises:
        IntegrityError: the header does not authenticate.
        KeyringError: none of the file's KEKs is available (with ``keys``).
    """

    def __init__(self, path: Path, *, keys: KeyService | None = None,
                 data_key: bytes | bytearray | None = None) -> None:
        self.path = path
        unwrap = _unwrapper(keys, data_key)
        with path.open("rb") as fh:
            self._opened = _unlock(fh, path, unwrap)
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
