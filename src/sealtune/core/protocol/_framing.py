"""The framing both sides of e2e-v1 share: labels, sizes, varints and chunk streams.

Holds the wire constants, the suite profile (:data:`_V1`), QUIC varints
(RFC 9000 §16), the chunk stream writer and reader of
draft-ietf-ohai-chunked-ohttp, and the RFC 9458 §4.4 response key
derivation. The client and server modules build on these.

What this protects against: a chunk stream truncated, reordered, extended
past its final chunk, or carrying a malformed or oversized chunk (the reader
fails closed and stays failed); a stream too long for one key (the writer
refuses past ``_MAX_STREAM_CHUNKS`` / ``_MAX_STREAM_BYTES``, read here at
call time, so tests patch them on this module). What it does not: choose
keys or nonces (the subclasses in ``client`` and ``server`` do), or take
back the plaintext of chunks opened before a stream failed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag

from sealtune.core.hazmat import hpke
from sealtune.errors import IntegrityError, UsageError

REQUEST_LABEL = b"sealtune/e2e-v1 request"
RESPONSE_LABEL = b"sealtune/e2e-v1 response"
CHUNKED_REQUEST_LABEL = b"sealtune/e2e-v1 chunked request"
CHUNKED_RESPONSE_LABEL = b"sealtune/e2e-v1 chunked response"
#: The AAD that marks the final chunk of a stream.
FINAL_AAD = b"final"
#: Largest plaintext in one chunk (the chunked-OHTTP draft's 2^14).
MAX_CHUNK_SIZE = 16384
#: Request header: key id (1), KEM id (2), KDF id (2), AEAD id (2).
HEADER_SIZE = 7
#: How long a rotated-out key is still accepted by default, in seconds.
DEFAULT_GRACE_SECONDS = 600.0
#: Requests one server key opens (and remembers, against replay) before it must rotate.
DEFAULT_REPLAY_CAPACITY = 250_000
# Per-stream ceilings well inside AES-GCM's margins (2^36 bytes, 2^32 chunks).
_MAX_STREAM_BYTES = 1 << 36
_MAX_STREAM_CHUNKS = 1 << 32

_REATTEST = (
    "fetch GET /v1/attestation again, verify it, and seal the request to the "
    "key configuration it returns"
)
_RESPONSE_HINT = "discard any partial output and retry the request"


@dataclass(frozen=True)
class _Profile:
    """A suite and its four labels; ``_V1`` is the only one on the wire."""

    suite: hpke.Suite
    request: bytes
    response: bytes
    chunked_request: bytes
    chunked_response: bytes

    @property
    def nonce_size(self) -> int:
        """Length of the response nonce: max(Nn, Nk)."""
        return max(hpke.N_N, self.suite.n_k)


_V1 = _Profile(hpke.SUITE, REQUEST_LABEL, RESPONSE_LABEL, CHUNKED_REQUEST_LABEL,
              CHUNKED_RESPONSE_LABEL)


def _varint(value: int) -> bytes:
    """QUIC variable-length integer (RFC 9000 §16), shortest form."""
    if value < 1 << 6:
        return bytes((value,))
    if value < 1 << 14:
        return struct.pack(">H", value | 0x4000)
    if value < 1 << 30:
        return struct.pack(">I", value | 0x8000_0000)
    return struct.pack(">Q", value | 0xC000_0000_0000_0000)


def _read_varint(buf: bytearray) -> tuple[int, int] | None:
    """Return ``(value, bytes used)`` from the front of ``buf``, or None if incomplete."""
    if not buf:
        return None
    size = 1 << (buf[0] >> 6)
    if len(buf) < size:
        return None
    value = int.from_bytes(buf[:size], "big") & ((1 << (8 * size - 2)) - 1)
    return value, size


# -- chunk streams (draft-ietf-ohai-chunked-ohttp) ----------------------------------------------


def _check_chunk_size(size: int) -> int:
    if not 0 < size <= MAX_CHUNK_SIZE:
        raise UsageError(f"max_chunk_size must be 1..{MAX_CHUNK_SIZE}")
    return size


class _ChunkWriter:
    """Seals ``prefix | (varint len, chunk)* | 0x00 | final chunk``, split at ``max_chunk_size``."""

    def __init__(self, prefix: bytes, max_chunk_size: int) -> None:
        _check_chunk_size(max_chunk_size)
        self._prefix = prefix
        self._max = max_chunk_size
        self._chunks = 0
        self._bytes = 0
        self._closed = False

    def _seal_one(self, aad: bytes, chunk: bytes) -> bytes:
        raise NotImplementedError

    def _next(self, aad: bytes, chunk: bytes) -> bytes:
        self._chunks += 1
        self._bytes += len(chunk)
        if self._chunks > _MAX_STREAM_CHUNKS or self._bytes > _MAX_STREAM_BYTES:
            self._closed = True
            raise UsageError("the stream is too long for one key",
                             hint="split the content over several requests")
        return self._seal_one(aad, chunk)

    def seal(self, data: bytes) -> bytes:
        """Seal ``data`` as one or more non-final chunks; return the bytes to send.

        The first output of a stream also carries its prefix (the request
        header or the response nonce). Empty ``data`` seals no chunk.

        Raises:
            UsageError: the stream is already finished, or too long.
        """
        if self._closed:
            raise UsageError("the encrypted stream is already finished")
        frames, self._prefix = [self._prefix], b""
        for start in range(0, len(data), self._max):
            sealed = self._next(b"", data[start : start + self._max])
            frames += (_varint(len(sealed)), sealed)
        return b"".join(frames)

    def seal_final(self, data: bytes = b"") -> bytes:
        """Seal ``data`` and end the stream with the final chunk; return the bytes to send.

        Raises:
            UsageError: the stream is already finished, or too long.
        """
        last = (len(data) - 1) // self._max * self._max if data else 0
        head = self.seal(data[:last])
        sealed = self._next(FINAL_AAD, data[last:])
        self._closed = True
        return head + b"\x00" + sealed


_PREFIX, _CHUNKS, _FINAL, _DONE, _FAILED = range(5)


class _ChunkReader:
    """Incremental parser and opener of a chunk stream; fails closed and stays failed."""

    _what = "stream"
    _hint = _RESPONSE_HINT

    def __init__(self, prefix_size: int, max_chunk_size: int) -> None:
        self._buf = bytearray()
        self._prefix_size = prefix_size
        self._max_sealed = _check_chunk_size(max_chunk_size) + hpke.N_T
        self._state = _PREFIX

    def _on_prefix(self, prefix: bytes) -> None:
        raise NotImplementedError

    def _open_one(self, aad: bytes, sealed: bytes) -> bytes:
        raise NotImplementedError

    def _error(self, message: str = "did not authenticate") -> IntegrityError:
        return IntegrityError(f"the encrypted {self._what} {message}", hint=self._hint)

    def _open(self, aad: bytes, sealed: bytes) -> bytes:
        try:
            return self._open_one(aad, sealed)
        except InvalidTag:
            raise self._error() from None

    def feed(self, data: bytes) -> bytes:
        """Take the next bytes of the stream; return the plaintext of every chunk completed.

        Raises:
            IntegrityError: a chunk does not authenticate, is out of order or
                too large, or the stream already failed.
        """
        if self._state in (_DONE, _FAILED):
            raise self._error("was already finished or failed")
        self._buf += data
        out: list[bytes] = []
        try:
            self._drain(out)
        except BaseException:
            self._state = _FAILED
            raise
        return b"".join(out)

    def _drain(self, out: list[bytes]) -> None:
        buf = self._buf
        while True:
            if self._state == _PREFIX:
                if len(buf) < self._prefix_size:
                    return
                prefix = bytes(buf[: self._prefix_size])
                del buf[: self._prefix_size]
                self._on_prefix(prefix)
                self._state = _CHUNKS
                continue
            if self._state == _FINAL:
                if len(buf) > self._max_sealed:
                    raise self._error("has an oversized final chunk")
                return
            parsed = _read_varint(buf)
            if parsed is None:
                return
            length, used = parsed
            if length == 0:
                del buf[:used]
                self._state = _FINAL
                continue
            if not hpke.N_T <= length <= self._max_sealed:
                raise self._error("has a malformed chunk")
            if len(buf) < used + length:
                return
            sealed = bytes(buf[used : used + length])
            del buf[: used + length]
            out.append(self._open(b"", sealed))

    def _finish(self) -> bytes:
        state, self._state = self._state, _FAILED
        if state in (_DONE, _FAILED):
            raise self._error("was already finished or failed")
        if state != _FINAL:
            raise self._error("ended before its final chunk (truncated)")
        sealed = bytes(self._buf)
        self._buf.clear()
        plaintext = self._open(FINAL_AAD, sealed)
        self._state = _DONE
        return plaintext


def _response_key(ctx: hpke.SenderContext | hpke.RecipientContext, profile: _Profile,
                  label: bytes, enc: bytes, nonce: bytes) -> tuple[hpke.Aead, int]:
    """RFC 9458 §4.4: the response AEAD and its nonce (as an int, for counters)."""
    secret = ctx.export(label, profile.nonce_size)
    prk = hpke.extract(enc + nonce, secret)
    key = hpke.expand(prk, b"key", profile.suite.n_k)
    return hpke.Aead(key), int.from_bytes(hpke.expand(prk, b"nonce", hpke.N_N), "big")

