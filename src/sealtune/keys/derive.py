"""Keyed primitives for the stages: derive a key, a keyed digest, a small authenticated cipher.

The stages never touch :mod:`sealtune.core.hazmat`; what they need of HKDF,
HMAC and AES-GCM beyond sealed files comes from here, with the choices made
once: HKDF-SHA-256 with an empty salt and a caller's label
(:func:`derive_key`), HMAC-SHA-256 over the concatenated parts
(:func:`keyed_digest`), and AES-256-GCM with a 12-byte nonce and 16-byte tag
(:class:`TokenCipher`), the nonce random or, for deterministic sealing, the
HMAC of the associated data and the value under a nonce key derived from the
cipher key (a synthetic IV). The data stage's redaction keys
(:mod:`sealtune.data.redact.keys`) are built on these.

What this protects against: labels that collide across uses (each caller
passes its own versioned label, e.g. ``sealtune/v1/dataset/token``), a
sealed value moved to another context (the associated data is
authenticated), and any change to a sealed value (an opaque
:class:`~sealtune.errors.IntegrityError`, nothing about where). What it
does not: keep the keys themselves (the caller holds and seals its secret),
hide the length of a sealed value, or make deterministic sealing unlinkable
(equal values under equal associated data seal to equal bytes, by design).

Outputs are fixed by these choices: changing any of them would make values
sealed before unreadable, so known-answer tests pin them
(``tests/unit/keys/test_derive.py``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from functools import cached_property

from cryptography.exceptions import InvalidTag

from sealtune.core.hazmat.aead import NONCE_BYTES, TAG_BYTES, gcm_decrypt, gcm_encrypt
from sealtune.core.hazmat.kdf import hkdf, hmac_sha256
from sealtune.errors import IntegrityError, UsageError

__all__ = ["KEY_BYTES", "OVERHEAD_BYTES", "TokenCipher", "derive_key", "keyed_digest"]

#: The length of every key here (and of a derived key by default).
KEY_BYTES = 32
#: What :meth:`TokenCipher.seal` adds to a value: nonce and tag.
OVERHEAD_BYTES = NONCE_BYTES + TAG_BYTES
_OPAQUE = "a sealed value failed authentication"


def derive_key(secret: bytes, *, label: bytes, length: int = KEY_BYTES) -> bytes:
    """HKDF-SHA-256 of ``secret`` (empty salt) under ``label``.

    Args:
        secret: the input keying material (a random secret of at least 32 bytes).
        label: the HKDF info: one per use, versioned (``sealtune/v1/...``).
        length: the output length in bytes.

    Raises:
        UsageError: an empty label.
    """
    if not label:
        raise UsageError("a key derivation needs a label")
    return hkdf(hash="sha256", ikm=secret, salt=b"", info=label, length=length)


def keyed_digest(key: bytes, parts: Iterable[bytes]) -> bytes:
    """HMAC-SHA-256 under ``key`` of the concatenation of ``parts`` (32 bytes).

    The caller separates variable-length parts itself (e.g. with a ``\\x00``
    between them), as the concatenation is what is authenticated.
    """
    return hmac_sha256(key, parts)


class TokenCipher:
    """AES-256-GCM under one key: seal small values to ``nonce | ciphertext | tag``.

    Args:
        key: the 32-byte cipher key.
        nonce_label: the label that derives the nonce key for deterministic
            sealing from ``key`` (so the cipher key alone opens and seals).

    Raises:
        UsageError: the key is not 32 bytes.
    """

    def __init__(self, key: bytes, *, nonce_label: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise UsageError(f"a token cipher key is {KEY_BYTES} bytes")
        self._key = key
        self._nonce_label = nonce_label

    def __repr__(self) -> str:
        return "TokenCipher(<hidden>)"

    @cached_property
    def _nonce_key(self) -> bytes:
        return derive_key(self._key, label=self._nonce_label)

    def seal(self, data: bytes, *, aad: bytes, deterministic: bool) -> bytes:
        """``nonce | ciphertext | tag`` of ``data``, bound to ``aad``.

        Deterministic sealing takes the nonce from HMAC(nonce key, aad, 0x00,
        data): the same value gives the same bytes, and distinct values get
        distinct nonces except with negligible probability.
        """
        if deterministic:
            nonce = keyed_digest(self._nonce_key, (aad, b"\x00", data))[:NONCE_BYTES]
        else:
            nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + gcm_encrypt("aes", self._key, nonce, data, aad)

    def open(self, blob: bytes, *, aad: bytes) -> bytes:
        """The data sealed in ``blob`` under the same ``aad``.

        Raises:
            IntegrityError: wrong key, wrong associated data, a short or altered
                blob (opaque: says nothing more).
        """
        if len(blob) < OVERHEAD_BYTES:
            raise IntegrityError(_OPAQUE)
        try:
            return gcm_decrypt("aes", self._key, blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            raise IntegrityError(_OPAQUE) from None
