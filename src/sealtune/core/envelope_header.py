"""The header of a sealed v1 file: prefix, key commitment and the two slots.

The header is ``prefix | slot A | slot B`` (byte-exact layout in
``docs/formats/sealed-v1.md``). This module encodes, parses and
authenticates it: the 68-byte prefix with its HKDF-SHA256 commitment to the
data key, the associated data that binds a wrapped key to the file, and the
slots, each holding a generation and the wrapped keys under an HMAC keyed
from the data key. Import these names from :mod:`sealtune.core.envelope`,
which re-exports them and uses them to unlock a header.

What this protects against: a forged prefix making a reader allocate
without limit (sizes are range-checked before anything is authenticated),
multi-key attacks (a data key opens the file only if the prefix commits to
it, checked in constant time), a wrapped key copied in from another file
(:func:`wrap_aad` binds it to this prefix), and any change to a slot (its
HMAC covers the prefix and the whole slot, zero padding included). What it
does not: authenticate anything before the data key is known (parsing
yields unverified values), detect rollback of the whole file to an older
copy, or protect the payload (see :mod:`sealtune.core.envelope_payload`).

Pure: bytes and binary streams only, no paths.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from sealtune.core.envelope_payload import MAX_SEGMENT_BYTES, SEGMENT_BYTES, SUITES, Suite
from sealtune.core.hazmat.kdf import (
    HMAC_SHA256_BYTES,
    constant_time_equal,
    hkdf,
    hmac_sha256,
    hmac_sha256_verify,
)
from sealtune.core.wrapped_key import WrappedKey
from sealtune.errors import IntegrityError, UsageError

MAGIC = b"SEALTUNE"
FORMAT_VERSION = 1
PREFIX_BYTES = 68
FILE_ID_BYTES = 16
COMMITMENT_BYTES = 32
#: Default slot size.
SLOT_BYTES = 2048
#: Bounds a reader accepts before anything is authenticated, so a forged
#: prefix cannot make it allocate without limit.
MIN_SLOT_BYTES = 64
MAX_SLOT_BYTES = 1 << 16

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


def opaque_error() -> IntegrityError:
    """The one error for every authentication or format failure (says nothing more)."""
    return IntegrityError(_OPAQUE, hint=_OPAQUE_HINT)


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
        raise opaque_error()
    magic, version, suite_id, flags, segment, slot, file_id, commitment = _PREFIX.unpack(raw)
    suite = SUITES.get(suite_id)
    if magic != MAGIC or version != FORMAT_VERSION or suite is None or flags != 0:
        raise opaque_error()
    if not (
        MIN_SLOT_BYTES <= slot <= MAX_SLOT_BYTES
        and suite.min_segment_size <= segment <= MAX_SEGMENT_BYTES
    ):
        raise opaque_error()
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


def _read_exact(src: BinaryIO, size: int) -> bytes:
    data = src.read(size)
    while len(data) < size:
        more = src.read(size - len(data))
        if not more:
            raise opaque_error()
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
