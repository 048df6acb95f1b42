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

Layout: this module is the public API (unlock a header, seal, open, plan a
rewrap) and re-exports the rest, so import every name from here. The header
encoding and key commitment live in :mod:`sealtune.core.envelope_header`,
the payload suites in :mod:`sealtune.core.envelope_payload`, and the
segment cipher itself in :mod:`sealtune.core.hazmat.aead`.

This module is pure: it works on binary streams and bytes, never on paths,
and wrapping/unwrapping is done by the caller's callbacks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from cryptography.exceptions import InvalidTag

from sealtune.core.envelope_header import (
    COMMITMENT_BYTES,
    FILE_ID_BYTES,
    FORMAT_VERSION,
    MAGIC,
    MAX_SLOT_BYTES,
    MIN_SLOT_BYTES,
    PREFIX_BYTES,
    SLOT_BYTES,
    Prefix,
    SealedHeader,
    Slot,
    encode_slot,
    key_is_committed,
    make_prefix,
    opaque_error,
    parse_prefix,
    parse_slot,
    read_header,
    slot_is_empty,
    verify_slot,
    wrap_aad,
)
from sealtune.core.envelope_payload import (
    AES_256_GCM,
    MAX_SEGMENT_BYTES,
    SEGMENT_BYTES,
    SM4_GCM,
    SUITES,
    Suite,
    new_data_key,
    suite_for,
)
from sealtune.core.hazmat.aead import write_all
from sealtune.core.wrapped_key import WrappedKey
from sealtune.errors import IntegrityError, KeyNotFoundError, KeyringError, UsageError

__all__ = [
    "AES_256_GCM",
    "COMMITMENT_BYTES",
    "FILE_ID_BYTES",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_SEGMENT_BYTES",
    "MAX_SLOT_BYTES",
    "MIN_SLOT_BYTES",
    "PREFIX_BYTES",
    "SEGMENT_BYTES",
    "SLOT_BYTES",
    "SM4_GCM",
    "SUITES",
    "OpenInfo",
    "OpenedHeader",
    "Prefix",
    "SealInfo",
    "SealedHeader",
    "Slot",
    "Suite",
    "Unwrap",
    "decrypt_payload",
    "encode_slot",
    "key_is_committed",
    "make_prefix",
    "new_data_key",
    "open_stream",
    "parse_prefix",
    "parse_slot",
    "plan_rewrap",
    "read_header",
    "seal_stream",
    "slot_is_empty",
    "suite_for",
    "unlock_header",
    "verify_slot",
    "wrap_aad",
]


#: ``unwrap(wrapped, aad)`` returns the data key, or None when the caller has
#: no such KEK. It may raise IntegrityError or a KeyringError; the reader
#: then tries the next entry.
Unwrap = Callable[[WrappedKey, bytes], "bytes | None"]


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
        raise opaque_error()
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
        raise opaque_error()
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
        raise opaque_error() from None


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
