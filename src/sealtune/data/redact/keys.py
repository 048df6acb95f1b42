"""Per-dataset redaction keys: one random secret, HKDF-derived keys for pseudonyms and tokens.

Each dataset gets a fresh 32-byte secret (:meth:`DatasetKeys.generate`).
From it HKDF-SHA-256 derives, under distinct labels, the pseudonym key
(HMAC-SHA-256 over the entity type and value) and the token key (AES-256-GCM
with the entity type as associated data); the token nonce key is derived
from the token key, so the token key alone is enough to restore tokens. The
caller (ingest) seals the secret with the KeyService; it never leaves this
object otherwise and ``repr`` hides it.

The primitives (HKDF, HMAC, AES-GCM with a synthetic IV) come from the
keyed API of :mod:`sealtune.keys.derive`, never from ``core.hazmat``; this
module fixes the labels and the associated data, and operators ask it for a
keyed digest or a sealed token and never touch a key or a primitive
themselves.

What this protects against: surrogates and tokens that can be computed or
reversed without the dataset secret (a dictionary attack on a pseudonymised
phone number needs the key), pseudonyms linkable across datasets (each
dataset has its own secret), a token moved to another entity type (the type
is authenticated). What it does not: anyone holding the secret can compute
pseudonyms for guessed values and restore every token; destroying the
sealed secret is what makes tokens permanently irreversible. A secret made
by :meth:`DatasetKeys.derive` is only as secret as its master (a pipeline's
sealed secret): destroying a dataset's secret alone does not shred it while
the master can still be opened.
"""

from __future__ import annotations

import base64
import secrets as _secrets
from functools import cached_property

from sealtune.errors import IntegrityError, UsageError
from sealtune.keys.derive import TokenCipher, derive_key, keyed_digest

SECRET_BYTES = 32
_PSEUDONYM_INFO = b"sealtune/v1/dataset/pseudonym"
_TOKEN_INFO = b"sealtune/v1/dataset/token"
_NONCE_INFO = b"sealtune/v1/dataset/token-nonce"
_DERIVE_INFO = b"sealtune/v1/dataset/derived\x00"
_TOKEN_AAD = b"sealtune/v1/token\x00"
_OPAQUE = "a token failed authentication (wrong dataset key, or the token was altered)"


def _derive(ikm: bytes, info: bytes) -> bytes:
    return derive_key(ikm, label=info)


def b64url(raw: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Inverse of :func:`b64url`; a malformed string is an :class:`IntegrityError`."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise IntegrityError(_OPAQUE) from None


class TokenKey:
    """The AES-256-GCM key that seals and opens reversible tokens."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise UsageError("a token key is 32 bytes")
        self._cipher = TokenCipher(key, nonce_label=_NONCE_INFO)

    def __repr__(self) -> str:
        return "TokenKey(<hidden>)"

    def seal(self, entity_type: str, value: str, *, deterministic: bool) -> bytes:
        """``nonce | ciphertext | tag`` of ``value``, bound to ``entity_type``.

        Deterministic tokens take the nonce from HMAC(nonce key, type, value)
        (a synthetic IV): the same value gives the same token, and distinct
        values get distinct nonces except with negligible probability.
        """
        return self._cipher.seal(value.encode("utf-8"), aad=_TOKEN_AAD + entity_type.encode(),
                                 deterministic=deterministic)

    def open(self, entity_type: str, blob: bytes) -> str:
        """The value sealed in ``blob``.

        Raises:
            IntegrityError: wrong key, wrong type, or an altered token (opaque).
        """
        try:
            data = self._cipher.open(blob, aad=_TOKEN_AAD + entity_type.encode())
            return data.decode("utf-8")
        except (IntegrityError, UnicodeDecodeError):
            raise IntegrityError(_OPAQUE) from None


class DatasetKeys:
    """The keys of one dataset's redaction, derived from a 32-byte secret.

    Args:
        secret: the dataset secret (from :meth:`generate`, or unwrapped from its seal).

    Raises:
        UsageError: the secret is not 32 bytes.
    """

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes) or len(secret) != SECRET_BYTES:
            raise UsageError(f"a dataset secret is {SECRET_BYTES} bytes")
        self._secret = secret

    @classmethod
    def generate(cls) -> DatasetKeys:
        """Fresh keys from a random secret (the caller seals :attr:`secret`)."""
        return cls(_secrets.token_bytes(SECRET_BYTES))

    @classmethod
    def derive(cls, master: bytes, context: str) -> DatasetKeys:
        """Keys derived (HKDF-SHA-256) from a longer-lived 32-byte secret for one ``context``.

        The same master and context give the same keys, so a pipeline step that is
        rerun (after a kill, say) redacts to the same text; another context (another
        step key) gives unrelated keys. Whoever holds the master can derive every
        dataset's keys: a pipeline seals it under the same KEKs as its datasets, so
        destroying those KEKs still shreds them all.

        Raises:
            UsageError: the master is not 32 bytes or the context is empty.
        """
        if not isinstance(master, bytes) or len(master) != SECRET_BYTES or not context:
            raise UsageError(f"a derivation needs a {SECRET_BYTES}-byte master and a context")
        return cls(_derive(master, _DERIVE_INFO + context.encode("utf-8")))

    @property
    def secret(self) -> bytes:
        """The dataset secret, for the caller to seal with the KeyService; never log it."""
        return self._secret

    def __repr__(self) -> str:
        return "DatasetKeys(<hidden>)"

    @cached_property
    def _pseudonym_key(self) -> bytes:
        return _derive(self._secret, _PSEUDONYM_INFO)

    @cached_property
    def token_key(self) -> TokenKey:
        """The token key (enough to restore tokens; it cannot compute pseudonyms)."""
        return TokenKey(_derive(self._secret, _TOKEN_INFO))

    def pseudonym_seed(self, entity_type: str, canonical: str) -> bytes:
        """HMAC-SHA-256 of the type and the canonical value under the pseudonym key."""
        return keyed_digest(self._pseudonym_key,
                            (entity_type.encode(), b"\x00", canonical.encode("utf-8")))
