"""Payload suites of the sealed-file format v1: which streaming AEAD seals a file.

A sealed file's payload is Google Tink's AES-GCM-HKDF streaming ciphertext
(:class:`~sealtune.core.hazmat.aead.GcmHkdfStreaming`), or the same layout
with SM4-GCM and HKDF-SM3. A :class:`Suite` names one such construction by
the suite byte of the prefix and builds the segment cipher for a segment
size; this module also draws the per-file data keys. The byte-exact layout is
``docs/formats/sealed-v1.md``; import these names from
:mod:`sealtune.core.envelope`, which re-exports them.

What this protects against: any change to the payload (the segment cipher
authenticates every segment, its position and the last-segment flag, so
truncation, extension, reordering and splicing fail), and, through the
bounds defined here and checked when a prefix is parsed, a forged suite
byte or segment size that would make a reader allocate without limit. What
it does not: commit to the data key or authenticate the header (see
:mod:`sealtune.core.envelope_header`), or hide the plaintext length.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sealtune.core.hazmat.aead import (
    NONCE_PREFIX_BYTES,
    TAG_BYTES,
    CipherName,
    GcmHkdfStreaming,
)
from sealtune.core.hazmat.kdf import HashName
from sealtune.errors import UsageError

#: Default (and recommended) ciphertext segment size, tag included.
SEGMENT_BYTES = 1 << 20
#: Largest segment size a reader accepts before anything is authenticated,
#: so a forged prefix cannot make it allocate without limit.
MAX_SEGMENT_BYTES = 1 << 24


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
