"""The sealed-file format v1: envelope encryption over a streaming AEAD.

A sealed file is ``prefix | slot A | slot B | payload`` (the byte-exact
specification is ``docs/formats/sealed-v1.md``):

* the **prefix** (68 bytes, immutable) names the suite, the segment and slot
  sizes, a random file id and a commitment to the file's data key;
* two **slots** (a double-buffered mutable header) each hold a generation
  number and the data key wrapped under one or more KEKs, authenticated by an
  HMAC keyed from the data key; rewrapping writes the inactive slot, so it is
  crash-safe and costs the same for 1 KB and 1 TB;
* the **payload** is Google Tink's AES-GCM-HKDF streaming ciphertext (or the
  same layout with SM4-GCM and HKDF-SM3), with the prefix as associated data.

What this protects against: any modification of the file (every byte of the
prefix, the active slot and the payload is authenticated; truncation,
extension, reordering and splicing of segments are detected), a wrapped key
copied in from another file (the wrap is bound to this file's prefix), and
multi-key attacks where one ciphertext opens to different plaintexts under
different keys (the data key is committed). What it does not: rollback of the
whole file to an older copy, hiding the file's length, or revoking access from
copies made before a rewrap (rewrap does not change the data key).

This module is pure: it works on binary streams and bytes, never on paths,
and wrapping/unwrapping is done by the caller's callbacks.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from cryptography.exceptions import InvalidTag

from sealtune.core.hazmat.aead import (
    NONCE_PREFIX_BYTES,
    TAG_BYTES,
    CipherName,
    GcmHkdfStreaming,
    write_all,
)
from sealtune.core.hazmat.kdf import (
    HMAC_SHA256_BYTES,
    HashName,
    constant_time_equal,
    hkdf,
    hmac_sha256,
    hmac_sha256_verify,
)
from sealtune.errors import IntegrityError, KeyNotFoundError, KeyringError, UsageError
from sealtune.keys.base import WrappedKey

MAGIC = b"SEALTUNE"
FORMAT_VERSION = 1
PREFIX_BYTES = 68
FILE_ID_BYTES = 16
COMMITMENT_BYTES = 32
#: Default (and recommended) ciphertext segment size, tag included.
SEGMENT_BYTES = 1 << 20
#: Default slot size.
SLOT_BYTES = 2048
#: Bounds a reader accepts before anything is authenticated, so a forged
#: prefix cannot make it allocate without limit.
MIN_SLOT_BYTES = 64
MAX_SLOT_BYTES = 1 << 16
MAX_SEGMENT_BYTES = 1 << 24

_PREFIX = struct.Struct(">8sBBHII16s32s")
_COMMITTED_PART = 36  # prefix bytes before the commitment
_SLOT_HEAD = struct.Struct(">QH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_COMMIT_INFO = b"sealtune/v1/commit"
_SLOT_MAC_INFO = b"sealtune/v1/slot-mac"
_WRAP_AAD = b"sealtune/v1/wrap"
_OPAQUE = "sealed data failed authentication"
_OPAQUE_HINT = (
    "the file was modified or damaged, was sealed under a different key, or is not "
    "a sealtune v1 file; restore it from a trusted copy"
)


def _opaque() -> IntegrityError:
    return IntegrityError(_OPAQUE, hint=_OPAQUE_HINT)


#: ``unwrap(wrapped, aad)`` returns the data key, or None when the caller has
#: no such KEK. It may raise IntegrityError or a KeyringError; the reader
#: then tries the next entry.
Unwrap = Callable[[WrappedKey, bytes], "bytes | None"]


@dataclass(frozen=True)
class Suite:
    """A payload algorithm suite.

    Attributes:
        id: the suite byte in the prefix.
        algorithm: the key algorithm name (``aes-256-gcm`` or ``sm4-gcm``).
        title: the full name of the construction.
        cipher: block cipher of the segments.
        key_bytes: data key, derived key and salt length.
        hkdf_hash: hash of the payload key derivation.
    """

    id: int
    algorithm: str
    title: str
    cipher: CipherName
    key_bytes: int
    hkdf_hash: HashName

    @property
    def min_segment_size(self) -> int:
        """Smallest segment size whose first segment carries a plaintext byte."""
        return 1 + self.key_bytes + NONCE_PREFIX_BYTES + TAG_BYTES + 1

    def stream(self, segment_size: int = SEGMENT_BYTES) -> GcmHkdfStreaming:
        """Return the payload streaming AEAD for ``segment_size``."""
        return GcmHkdfStreaming(self.cipher, self.key_bytes, self.hkdf_hash, segment_size)


AES_256_GCM = Suite(1, "aes-256-gcm", "AES-256-GCM-HKDF-SHA256", "aes", 32, "sha256")
SM4_GCM = Suite(2, "sm4-gcm", "SM4-GCM-HKDF-SM3", "sm4", 16, "sm3")
SUITES: dict[int, Suite] = {s.id: s for s in (AES_256_GCM, SM4_GCM)}


def suite_for(algorithm: str) -> Suite:
    """Return the suite for a key algorithm name.

    Raises:
        UsageError: the algorithm has no sealed-file suite.
    """
    for suite in SUITES.values():
        if suite.algorithm == algorithm:
            return suite
    names = ", ".join(s.algorithm for s in SUITES.values())
    raise UsageError(f"no sealed-file suite for algorithm {algorithm!r}", hint=f"use {names}")


def new_data_key(suite: Suite) -> bytes:
    """Return a fresh random data key for ``suite``."""
    return os.urandom(suite.key_bytes)


@dataclass(frozen=True)
class Prefix:
    """The immutable 68-byte prefix of a sealed file.

    Attributes:
        suite: the payload suite.
        segment_size: ciphertext segment size of the payload.
        slot_size: size of each of the two header slots.
        file_id: 16 random bytes naming this file.
        commitment: HKDF-SHA256 commitment to the data key.
        flags: reserved, 0 in v1.
    """

    suite: Suite
    segment_size: int
    slot_size: int
    file_id: bytes
    commitment: bytes
    flags: int = 0

    @property
    def payload_offset(self) -> int:
        """Byte offset of the payload in the file."""
        return PREFIX_BYTES + 2 * self.slot_size

    def slot_offset(self, index: int) -> int:
        """Byte offset of slot ``index`` (0 = A, 1 = B) in the file."""
        return PREFIX_BYTES + index * self.slot_size

    def encode(self) -> bytes:
        """Return the 68 prefix bytes."""
        return _PREFIX.pack(
            MAGIC,
            FORMAT_VERSION,
            self.suite.id,
            self.flags,
            self.segment_size,
            self.slot_size,
            self.file_id,
            self.commitment,
        )


def _commitment(data_key: bytes, head: bytes, file_id: bytes) -> bytes:
    return hkdf(hash="sha256", ikm=data_key, salt=file_id, info=_COMMIT_INFO + head, length=32)


def _slot_mac_key(data_key: bytes, file_id: bytes) -> bytes:
    return hkdf(hash="sha256", ikm=data_key, salt=file_id, info=_SLOT_MAC_INFO, length=32)


def make_prefix(
    data_key: bytes,
    *,
    suite: Suite,
    file_id: bytes | None = None,
    segment_size: int = SEGMENT_BYTES,
    slot_size: int = SLOT_BYTES,
) -> Prefix:
    """Build the prefix for a new file, committing to ``data_key``.

    Args:
        data_key: the file's data key (``suite.key_bytes`` long).
        suite: the payload suite.
        file_id: 16 bytes; random when omitted.
        segment_size: ciphertext segment size; keep the default except in tests.
        slot_size: header slot size.

    Raises:
        UsageError: a size or the key length is out of range.
    """
    if len(data_key) != suite.key_bytes:
        raise UsageError(f"a {suite.algorithm} data key is {suite.key_bytes} bytes")
    if not MIN_SLOT_BYTES <= slot_size <= MAX_SLOT_BYTES:
        raise UsageError(f"slot size must be {MIN_SLOT_BYTES}..{MAX_SLOT_BYTES} bytes")
    if not suite.min_segment_size <= segment_size <= MAX_SEGMENT_BYTES:
        raise UsageError(f"segment size {segment_size} is out of range")
    file_id = os.urandom(FILE_ID_BYTES) if file_id is None else file_id
    if len(file_id) != FILE_ID_BYTES:
        raise UsageError(f"a file id is {FILE_ID_BYTES} bytes")
    draft = Prefix(suite, segment_size, slot_size, file_id, bytes(COMMITMENT_BYTES))
    head = draft.encode()[:_COMMITTED_PART]
    return Prefix(suite, segment_size, slot_size, file_id, _commitment(data_key, head, file_id))


def parse_prefix(raw: bytes) -> Prefix:
    """Parse and range-check 68 prefix bytes (nothing is authenticated yet).

    Raises:
        IntegrityError: not a well-formed v1 prefix.
    """
    if len(raw) != PREFIX_BYTES:
        raise _opaque()
    magic, version, suite_id, flags, segment, slot, file_id, commitment = _PREFIX.unpack(raw)
    suite = SUITES.get(suite_id)
    if magic != MAGIC or version != FORMAT_VERSION or suite is None or flags != 0:
        raise _opaque()
    if not (
        MIN_SLOT_BYTES <= slot <= MAX_SLOT_BYTES
        and suite.min_segment_size <= segment <= MAX_SEGMENT_BYTES
    ):
        raise _opaque()
    return Prefix(suite, segment, slot, file_id, commitment)


def wrap_aad(prefix: Prefix) -> bytes:
    """Associated data for wrapping this file's data key: binds it to the file."""
    return _WRAP_AAD + hashlib.sha256(prefix.encode()).digest()


def key_is_committed(prefix: Prefix, data_key: bytes) -> bool:
    """Check in constant time that ``data_key`` is the one ``prefix`` commits to."""
    if len(data_key) != prefix.suite.key_bytes:
        return False
    head = prefix.encode()[:_COMMITTED_PART]
    return constant_time_equal(_commitment(data_key, head, prefix.file_id), prefix.commitment)


@dataclass(frozen=True)
class Slot:
    """The decoded content of a header slot.

    Attributes:
        generation: increases by one at every rewrap; the newest valid slot wins.
        entries: the data key wrapped under each KEK.
    """

    generation: int
    entries: tuple[WrappedKey, ...]


def encode_slot(slot: Slot, *, prefix: Prefix, data_key: bytes) -> bytes:
    """Encode and authenticate a slot (exactly ``prefix.slot_size`` bytes).

    Raises:
        UsageError: no entries, a field out of range, or the entries do not fit.
    """
    if not slot.entries:
        raise UsageError("a sealed file needs at least one wrapped key")
    if not 1 <= slot.generation < 2**64:
        raise UsageError("slot generation out of range")
    body = bytearray(_SLOT_HEAD.pack(slot.generation, len(slot.entries)))
    for entry in slot.entries:
        uri = entry.kek_uri.encode()
        if len(uri) > 0xFFFF or len(entry.blob) > 0xFFFF or not 0 <= entry.version < 2**32:
            raise UsageError(f"wrapped key for {entry.kek_uri!r} has a field out of range")
        body += _U16.pack(len(uri)) + uri + _U32.pack(entry.version)
        body += _U16.pack(len(entry.blob)) + entry.blob
    room = prefix.slot_size - HMAC_SHA256_BYTES
    if len(body) > room:
        raise UsageError(
            f"{len(slot.entries)} wrapped keys need {len(body) + HMAC_SHA256_BYTES} bytes "
            f"but a header slot holds {prefix.slot_size}",
            hint="seal under fewer keys",
        )
    body += bytes(room - len(body))
    mac_key = _slot_mac_key(data_key, prefix.file_id)
    return bytes(body) + hmac_sha256(mac_key, (prefix.encode(), bytes(body)))


def slot_is_empty(raw: bytes) -> bool:
    """An all-zero slot is empty."""
    return raw == bytes(len(raw))


def parse_slot(raw: bytes) -> Slot | None:
    """Decode a slot without authenticating it.

    Returns:
        The slot, or None if it is empty or malformed.
    """
    end = len(raw) - HMAC_SHA256_BYTES
    if end < _SLOT_HEAD.size or slot_is_empty(raw):
        return None
    generation, count = _SLOT_HEAD.unpack_from(raw)
    pos, entries = _SLOT_HEAD.size, []
    try:
        for _ in range(count):
            (uri_len,) = _U16.unpack_from(raw, pos)
            uri = raw[pos + 2 : pos + 2 + uri_len].decode("utf-8", "strict")
            pos += 2 + uri_len
            version, blob_len = _U32.unpack_from(raw, pos)[0], _U16.unpack_from(raw, pos + 4)[0]
            blob = raw[pos + 6 : pos + 6 + blob_len]
            pos += 6 + blob_len
            if pos > end or ":" not in uri:
                return None
            entries.append(WrappedKey(uri, version, blob))
    except (struct.error, UnicodeDecodeError):
        return None
    if generation == 0 or count == 0 or not slot_is_empty(raw[pos:end]):
        return None
    return Slot(generation, tuple(entries))


def verify_slot(raw: bytes, *, prefix: Prefix, data_key: bytes) -> bool:
    """Check a slot's HMAC tag under the data key, in constant time."""
    mac_key = _slot_mac_key(data_key, prefix.file_id)
    body, tag = raw[:-HMAC_SHA256_BYTES], raw[-HMAC_SHA256_BYTES:]
    return hmac_sha256_verify(mac_key, (prefix.encode(), body), tag)


@dataclass(frozen=True)
class SealedHeader:
    """The header of a sealed file as read, before any key is used.

    Attributes:
        prefix: the parsed prefix (range-checked, not yet authenticated).
        raw_slots: the bytes of slot A and slot B.
        slots: each slot decoded, or None if empty or malformed (unverified).
    """

    prefix: Prefix
    raw_slots: tuple[bytes, bytes]
    slots: tuple[Slot | None, Slot | None]

    def by_generation(self) -> list[tuple[int, Slot]]:
        """The decodable slots as ``(index, slot)``, highest generation first (A on a tie)."""
        found = [(i, s) for i, s in enumerate(self.slots) if s is not None]
        return sorted(found, key=lambda item: -item[1].generation)


@dataclass(frozen=True)
class OpenedHeader:
    """A header whose data key was unwrapped, committed and its slot verified.

    Attributes:
        header: the header as read.
        slot_index: the verified slot in use (0 = A, 1 = B).
        unwrapped_by: the entry that yielded the data key.
        data_key: the file's data key (secret; never printed).
        warning: set when a non-empty slot did not verify (an interrupted
            rewrap or damage); rewrapping the file repairs it.
    """

    header: SealedHeader
    slot_index: int
    unwrapped_by: WrappedKey
    data_key: bytes = field(repr=False)
    warning: str | None = None

    @property
    def prefix(self) -> Prefix:
        """The (now authenticated) prefix."""
        return self.header.prefix

    @property
    def slot(self) -> Slot:
        """The verified slot."""
        slot = self.header.slots[self.slot_index]
        assert slot is not None
        return slot


def _read_exact(src: BinaryIO, size: int) -> bytes:
    data = src.read(size)
    while len(data) < size:
        more = src.read(size - len(data))
        if not more:
            raise _opaque()
        data += more
    return data


def read_header(src: BinaryIO) -> SealedHeader:
    """Read the prefix and both slots; leaves ``src`` at the payload.

    Raises:
        IntegrityError: the prefix is malformed or the file is too short.
    """
    prefix = parse_prefix(_read_exact(src, PREFIX_BYTES))
    raw = (_read_exact(src, prefix.slot_size), _read_exact(src, prefix.slot_size))
    return SealedHeader(prefix, raw, (parse_slot(raw[0]), parse_slot(raw[1])))


def _unwrap_committed(header: SealedHeader, unwrap: Unwrap) -> tuple[bytes, WrappedKey]:
    """Return the first data key, newest slot first, that the prefix commits to."""
    aad = wrap_aad(header.prefix)
    tampered = not header.by_generation()
    backend_error: KeyringError | None = None
    for _, slot in header.by_generation():
        for entry in slot.entries:
            try:
                key = unwrap(entry, aad)
            except IntegrityError:
                tampered = True
                continue
            except KeyringError as exc:
                backend_error = backend_error or exc
                continue
            if key is not None and key_is_committed(header.prefix, key):
                return key, entry
            tampered = tampered or key is not None
    if tampered:
        raise _opaque()
    if backend_error is not None:
        raise backend_error
    uris = sorted({e.kek_uri for _, s in header.by_generation() for e in s.entries})
    raise KeyNotFoundError(
        "none of the keys this file is wrapped for is available: " + ", ".join(uris),
        hint="open it where one of these keys is held (a modified header can also "
        "name keys that do not exist)",
    )


def unlock_header(header: SealedHeader, *, unwrap: Unwrap) -> OpenedHeader:
    """Unwrap the data key, check its commitment and pick the newest valid slot.

    Args:
        header: the header from :func:`read_header`.
        unwrap: the caller's unwrap callback.

    Raises:
        IntegrityError: no slot authenticates under a committed key.
        KeyringError: the usable KEKs failed in their backend (for example
            ``KeyDestroyedError``), or ``KeyNotFoundError`` when none of the
            file's KEKs is available.
    """
    key, entry = _unwrap_committed(header, unwrap)
    order = [i for i, _ in header.by_generation()]
    prefix, raw = header.prefix, header.raw_slots
    valid = [i for i in order if verify_slot(raw[i], prefix=prefix, data_key=key)]
    if not valid:
        raise _opaque()
    chosen = valid[0]
    other = 1 - chosen
    warning = None
    if order[0] != chosen:
        warning = "the newest header slot did not verify; opened from the previous one"
    elif other not in valid and not slot_is_empty(raw[other]):
        warning = "an inactive header slot is damaged and was ignored"
    return OpenedHeader(header, chosen, entry, key, warning)


@dataclass(frozen=True)
class SealInfo:
    """What :func:`seal_stream` wrote.

    Attributes:
        prefix: the file's prefix.
        entries: the wrapped keys in slot A.
        plaintext_size: bytes read from the source.
        sealed_size: bytes written, header included.
    """

    prefix: Prefix
    entries: tuple[WrappedKey, ...]
    plaintext_size: int
    sealed_size: int


@dataclass(frozen=True)
class OpenInfo:
    """What :func:`open_stream` found.

    Attributes:
        prefix: the authenticated prefix.
        slot: the verified slot in use.
        unwrapped_by: the entry that yielded the data key.
        warning: see :attr:`OpenedHeader.warning`.
        plaintext_size: bytes written to the destination.
    """

    prefix: Prefix
    slot: Slot
    unwrapped_by: WrappedKey
    warning: str | None
    plaintext_size: int


def seal_stream(
    src: BinaryIO,
    dst: BinaryIO,
    *,
    prefix: Prefix,
    data_key: bytes,
    wrapped: Sequence[WrappedKey],
) -> SealInfo:
    """Write a sealed file: prefix, slot A (generation 1), empty slot B, payload.

    Args:
        src: plaintext, read to its end.
        dst: where the sealed bytes go, written sequentially.
        prefix: from :func:`make_prefix` with this ``data_key``.
        data_key: the file's data key.
        wrapped: the data key wrapped with associated data :func:`wrap_aad`.

    Raises:
        UsageError: the key does not match the prefix, or the entries do not fit.
    """
    if not key_is_committed(prefix, data_key):
        raise UsageError("the data key does not match the prefix's commitment")
    slot = encode_slot(Slot(1, tuple(wrapped)), prefix=prefix, data_key=data_key)
    head = prefix.encode() + slot + bytes(prefix.slot_size)
    write_all(dst, memoryview(head))
    stream = prefix.suite.stream(prefix.segment_size)
    size, written = stream.encrypt(src, dst, key=data_key, aad=prefix.encode())
    return SealInfo(prefix, tuple(wrapped), size, len(head) + written)


def decrypt_payload(src: BinaryIO, dst: BinaryIO, *, opened: OpenedHeader) -> int:
    """Decrypt the payload (``src`` positioned at it) to ``dst``.

    Every segment is authenticated before its plaintext is written. On error
    ``dst`` may hold the plaintext of earlier segments: discard it.

    Returns:
        Plaintext bytes written.

    Raises:
        IntegrityError: the payload is modified, truncated or extended.
    """
    prefix = opened.prefix
    stream = prefix.suite.stream(prefix.segment_size)
    try:
        return stream.decrypt(src, dst, key=opened.data_key, aad=prefix.encode())
    except InvalidTag:
        raise _opaque() from None


def open_stream(src: BinaryIO, dst: BinaryIO, *, unwrap: Unwrap) -> OpenInfo:
    """Authenticate and decrypt a sealed stream.

    Args:
        src: the sealed bytes, read sequentially from the start.
        dst: receives the plaintext; discard it if this raises.
        unwrap: the caller's unwrap callback.

    Raises:
        IntegrityError: any authentication failure.
        KeyringError: see :func:`unlock_header`.
    """
    opened = unlock_header(read_header(src), unwrap=unwrap)
    size = decrypt_payload(src, dst, opened=opened)
    return OpenInfo(opened.prefix, opened.slot, opened.unwrapped_by, opened.warning, size)


def plan_rewrap(opened: OpenedHeader, entries: Sequence[WrappedKey]) -> list[tuple[int, bytes]]:
    """Return the writes that replace the header's entries, in order.

    The first write puts the new slot (generation + 1) in the inactive slot;
    the second zeroes the old slot. The caller must make each write durable
    (fsync) before the next, so a crash at any point leaves a file that opens.

    Returns:
        ``[(offset, bytes), (offset, bytes)]`` in file coordinates.

    Raises:
        UsageError: no entries, or they do not fit in a slot.
    """
    prefix = opened.prefix
    slot = Slot(opened.slot.generation + 1, tuple(entries))
    new = encode_slot(slot, prefix=prefix, data_key=opened.data_key)
    target = 1 - opened.slot_index
    return [
        (prefix.slot_offset(target), new),
        (prefix.slot_offset(opened.slot_index), bytes(prefix.slot_size)),
    ]
