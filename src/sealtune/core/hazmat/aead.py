"""GCM wrappers and Tink's segmented streaming AEAD (AES-GCM-HKDF streaming).

:class:`GcmHkdfStreaming` implements byte for byte the ciphertext format of
Google Tink's ``AesGcmHkdfStreaming`` (also with SM4 in place of AES and SM3
in place of SHA-256, same layout)::

    header_length (1 byte) | salt (key_size bytes) | nonce_prefix (7 bytes)
    | segment 0 | segment 1 | ... | final segment

Each segment is GCM ciphertext followed by its 16-byte tag, under the key
``HKDF(hash, ikm=key, salt=salt, info=associated_data)`` and the nonce
``nonce_prefix | segment_index (u32 BE) | last_segment_flag (1 byte)``. Every
segment is ``segment_size`` bytes on the wire (the first one including the
header), except the final one, which may be shorter.

What this protects against: any change to the ciphertext (bit flips,
truncation, extension, reordering or splicing of segments, from this or
another stream) fails authentication before the affected plaintext is
released. What it does not: the key itself is not committed (a different key
could open a crafted ciphertext; ``core.envelope`` adds a key commitment), and
plaintext already written out for earlier segments stays written when a later
segment fails; callers must discard the output on error.

The hot loop uses preallocated buffers, ``readinto`` and ``update_into``;
memory is a few segment buffers whatever the stream length.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Literal, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sealtune.core.hazmat.kdf import HashName, hkdf

CipherName = Literal["aes", "sm4"]

#: GCM tag length in bytes (Tink uses the full 16).
TAG_BYTES = 16
#: GCM nonce length in bytes.
NONCE_BYTES = 12
#: Random nonce prefix length in Tink's streaming format.
NONCE_PREFIX_BYTES = 7
#: ``update_into`` needs this much slack past the input length.
_SLACK = 16
_SEGMENT_NONCE_SUFFIX = struct.Struct(">IB")
_MAX_SEGMENTS = 2**32

_Reader = Callable[[memoryview], "int | None"]


def _algorithm(cipher: CipherName, key: bytes) -> algorithms.AES | algorithms.SM4:
    if cipher == "aes":
        return algorithms.AES(key)
    if cipher == "sm4":
        return algorithms.SM4(key)
    raise ValueError(f"unsupported cipher {cipher!r}")


def gcm_encrypt(cipher: CipherName, key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes:
    """One-shot GCM encryption; returns ``ciphertext || tag`` (16-byte tag)."""
    enc = Cipher(_algorithm(cipher, key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    return enc.update(data) + enc.finalize() + enc.tag


def gcm_decrypt(cipher: CipherName, key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes:
    """One-shot GCM decryption of ``ciphertext || tag``.

    Raises:
        cryptography.exceptions.InvalidTag: the data does not authenticate.
    """
    if len(data) < TAG_BYTES:
        raise InvalidTag()
    dec = Cipher(_algorithm(cipher, key), modes.GCM(nonce, data[-TAG_BYTES:])).decryptor()
    dec.authenticate_additional_data(aad)
    return dec.update(data[:-TAG_BYTES]) + dec.finalize()


def _reader(src: BinaryIO) -> _Reader:
    readinto = getattr(src, "readinto", None)
    if callable(readinto):
        return cast(_Reader, readinto)

    def read_copy(view: memoryview) -> int:
        data = src.read(len(view))
        view[: len(data)] = data
        return len(data)

    return read_copy


def _fill(readinto: _Reader, view: memoryview) -> int:
    """Read until ``view`` is full or the stream ends; return bytes read."""
    total = 0
    size = len(view)
    while total < size:
        got = readinto(view[total:] if total else view)
        if got is None:
            raise BlockingIOError("sealtune streams must be blocking")
        if got == 0:
            break
        total += got
    return total


def write_all(dst: BinaryIO, view: memoryview) -> None:
    """Write all of ``view`` to ``dst``, looping over short (raw) writes."""
    done = dst.write(view)
    while done is not None and done < len(view):
        more = dst.write(view[done:])
        if not more:
            raise OSError("short write to the output stream")
        done += more


@dataclass(frozen=True)
class GcmHkdfStreaming:
    """Parameters of one Tink-compatible GCM-HKDF streaming AEAD.

    Attributes:
        cipher: ``aes`` (AES-256-GCM with ``key_size`` 32) or ``sm4``
            (SM4-GCM with ``key_size`` 16).
        key_size: derived key and salt length in bytes; the input key must
            be at least this long.
        hkdf_hash: HKDF hash, ``sha256`` or ``sm3``.
        segment_size: ciphertext segment size in bytes, tag included.
    """

    cipher: CipherName
    key_size: int
    hkdf_hash: HashName
    segment_size: int

    def __post_init__(self) -> None:
        if self.segment_size <= self.header_size + TAG_BYTES:
            raise ValueError("segment size too small for the stream header")

    @property
    def header_size(self) -> int:
        """Length of the stream header: length byte, salt, nonce prefix."""
        return 1 + self.key_size + NONCE_PREFIX_BYTES

    @property
    def first_plaintext_size(self) -> int:
        """Plaintext bytes carried by the first segment."""
        return self.segment_size - self.header_size - TAG_BYTES

    @property
    def plaintext_segment_size(self) -> int:
        """Plaintext bytes carried by every later (non-final) segment."""
        return self.segment_size - TAG_BYTES

    def ciphertext_size(self, plaintext_size: int) -> int:
        """Return the ciphertext length for ``plaintext_size`` bytes."""
        rest = max(0, plaintext_size - self.first_plaintext_size)
        later = -(-rest // self.plaintext_segment_size)
        return self.header_size + plaintext_size + TAG_BYTES * (1 + later)

    def plaintext_size(self, ciphertext_size: int) -> int | None:
        """Return the plaintext length of a well-formed ciphertext, else None."""
        if ciphertext_size < self.header_size + TAG_BYTES:
            return None
        segments = -(-ciphertext_size // self.segment_size)
        last = ciphertext_size - (segments - 1) * self.segment_size
        if segments > 1 and last < TAG_BYTES:
            return None
        return ciphertext_size - self.header_size - TAG_BYTES * segments

    def _segment_key(self, key: bytes, salt: bytes, aad: bytes) -> algorithms.AES | algorithms.SM4:
        if len(key) < self.key_size:
            raise ValueError("key shorter than the derived key size")
        derived = hkdf(hash=self.hkdf_hash, ikm=key, salt=salt, info=aad, length=self.key_size)
        return _algorithm(self.cipher, derived)

    def encrypt(self, src: BinaryIO, dst: BinaryIO, *, key: bytes, aad: bytes) -> tuple[int, int]:
        """Encrypt ``src`` to ``dst`` until ``src`` ends.

        Args:
            src: readable binary stream of plaintext.
            dst: writable binary stream for the ciphertext.
            key: the input key (Tink's ``key_value``).
            aad: associated data bound to every segment through the HKDF info.

        Returns:
            ``(plaintext bytes read, ciphertext bytes written)``.
        """
        salt = os.urandom(self.key_size)
        nonce_prefix = os.urandom(NONCE_PREFIX_BYTES)
        algorithm = self._segment_key(key, salt, aad)
        header = bytes([self.header_size]) + salt + nonce_prefix
        write_all(dst, memoryview(header))
        readinto = _reader(src)
        # One spare byte past the segment tells a full non-final segment from
        # a full final one without an extra read (Tink never ends a stream
        # with an empty segment unless the whole plaintext is empty).
        pbuf = memoryview(bytearray(self.plaintext_segment_size + 1))
        cbuf = memoryview(bytearray(self.segment_size + _SLACK))
        capacity = self.first_plaintext_size
        have = _fill(readinto, pbuf[: capacity + 1])
        index, total_in, total_out = 0, 0, len(header)
        while True:
            last = have <= capacity
            size = have if last else capacity
            nonce = nonce_prefix + _SEGMENT_NONCE_SUFFIX.pack(index, last)
            enc = Cipher(algorithm, modes.GCM(nonce)).encryptor()
            out = enc.update_into(pbuf[:size], cbuf)
            enc.finalize()
            cbuf[out : out + TAG_BYTES] = enc.tag
            write_all(dst, cbuf[: out + TAG_BYTES])
            total_in += size
            total_out += out + TAG_BYTES
            if last:
                return total_in, total_out
            index += 1
            if index >= _MAX_SEGMENTS:
                raise ValueError("plaintext too long for the 32-bit segment counter")
            pbuf[0] = pbuf[capacity]
            capacity = self.plaintext_segment_size
            have = 1 + _fill(readinto, pbuf[1 : capacity + 1])

    def decrypt(self, src: BinaryIO, dst: BinaryIO, *, key: bytes, aad: bytes) -> int:
        """Decrypt ``src`` to ``dst``, authenticating each segment before writing it.

        Args:
            src: readable binary stream positioned at the stream header.
            dst: writable binary stream for the plaintext; on error it holds
                the plaintext of the segments before the failing one and must
                be discarded.
            key: the input key.
            aad: the associated data given at encryption.

        Returns:
            Plaintext bytes written.

        Raises:
            cryptography.exceptions.InvalidTag: any segment fails to
                authenticate, or the stream is truncated or extended.
        """
        readinto = _reader(src)
        header = memoryview(bytearray(self.header_size))
        if _fill(readinto, header) != self.header_size or header[0] != self.header_size:
            raise InvalidTag()
        salt = bytes(header[1 : 1 + self.key_size])
        nonce_prefix = bytes(header[1 + self.key_size :])
        algorithm = self._segment_key(key, salt, aad)
        cbuf = memoryview(bytearray(self.segment_size + 1))
        pbuf = memoryview(bytearray(self.segment_size + _SLACK))
        capacity = self.segment_size - self.header_size
        have = _fill(readinto, cbuf[: capacity + 1])
        index, total = 0, 0
        while True:
            last = have <= capacity
            size = have if last else capacity
            if size < TAG_BYTES:
                raise InvalidTag()
            body = size - TAG_BYTES
            nonce = nonce_prefix + _SEGMENT_NONCE_SUFFIX.pack(index, last)
            tag = bytes(cbuf[body:size])
            dec = Cipher(algorithm, modes.GCM(nonce, tag)).decryptor()
            out = dec.update_into(cbuf[:body], pbuf)
            try:
                dec.finalize()
            except InvalidTag:
                pbuf[:out] = bytes(out)  # drop the unauthenticated plaintext
                raise
            write_all(dst, pbuf[:out])
            total += out
            if last:
                return total
            index += 1
            if index >= _MAX_SEGMENTS:
                raise InvalidTag()
            cbuf[0] = cbuf[capacity]
            capacity = self.segment_size
            have = 1 + _fill(readinto, cbuf[1 : capacity + 1])
