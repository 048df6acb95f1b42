"""Key derivation and MAC wrappers: HKDF (SHA-256 or SM3) and HMAC-SHA-256.

What this protects against: nothing by itself; it only names the hash
choices sealtune uses so they cannot drift between callers. Comparisons of
secrets go through :func:`constant_time_equal` to avoid timing leaks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import constant_time, hashes
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HashName = Literal["sha256", "sm3"]

#: Output length of HMAC-SHA-256 in bytes.
HMAC_SHA256_BYTES = 32


def hash_algorithm(name: HashName) -> hashes.HashAlgorithm:
    """Return the ``cryptography`` hash object for ``name``.

    Raises:
        ValueError: the name is not one sealtune uses.
    """
    if name == "sha256":
        return hashes.SHA256()
    if name == "sm3":
        return hashes.SM3()
    raise ValueError(f"unsupported hash {name!r}")


def hkdf(*, hash: HashName, ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """Derive ``length`` bytes with HKDF (RFC 5869), extract and expand.

    Args:
        hash: ``sha256`` or ``sm3``.
        ikm: input keying material (a secret).
        salt: the HKDF salt (may be public).
        info: context and application specific information.
        length: number of output bytes.
    """
    return HKDF(algorithm=hash_algorithm(hash), length=length, salt=salt, info=info).derive(ikm)


def hmac_sha256(key: bytes, parts: Iterable[bytes]) -> bytes:
    """Return HMAC-SHA-256 of the concatenation of ``parts`` under ``key``."""
    mac = _hmac.HMAC(key, hashes.SHA256())
    for part in parts:
        mac.update(part)
    return mac.finalize()


def hmac_sha256_verify(key: bytes, parts: Iterable[bytes], tag: bytes) -> bool:
    """Check an HMAC-SHA-256 tag in constant time; ``True`` if it matches."""
    mac = _hmac.HMAC(key, hashes.SHA256())
    for part in parts:
        mac.update(part)
    try:
        mac.verify(tag)
    except InvalidSignature:
        return False
    return True


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare two byte strings without an early exit on the first difference."""
    return constant_time.bytes_eq(a, b)
