"""HPKE (RFC 9180) base mode for one suite, on ``cryptography`` primitives.

The suite is DHKEM(X25519, HKDF-SHA256) (KEM 0x0020), HKDF-SHA256 (KDF
0x0001) and AES-256-GCM (AEAD 0x0002), in mode ``mode_base`` (0x00): no PSK,
no sender authentication. It is written out here, about a page of the RFC's
own pseudocode, rather than taken from a third-party package, so that the
light client needs nothing beyond ``cryptography``; it is proved against the
official RFC 9180 test vectors for this suite (``tests/vectors``) and
cross-checked against ``pyhpke`` and ``cryptography``'s own HPKE.

A second suite, :data:`_AES_128_GCM_SUITE` (AEAD 0x0001), exists only so
that the Oblivious HTTP worked examples (RFC 9458 Appendix A and the chunked
draft's example, both AES-128-GCM) can be replayed byte for byte as
known-answer tests of ``sealtune.core.protocol``. Nothing offers or accepts
it on the wire.

What this protects against: nothing by itself. A context is a key, a base
nonce and a sequence number; :meth:`SenderContext.seal` uses each
(key, nonce) pair once and refuses to wrap the sequence number, and a
context is never shared between requests (``protocol`` makes a fresh one
for each). What it does not: framing, key management, replay protection or
zeroisation (Python cannot reliably wipe memory).

Failures are opaque, as in ``cryptography.hazmat``: authentication failures
raise ``cryptography.exceptions.InvalidTag``; malformed inputs (a public key
of the wrong length, a low-order point) raise ``ValueError`` without naming
key material.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: DHKEM(X25519, HKDF-SHA256).
KEM_ID = 0x0020
#: HKDF-SHA256.
KDF_ID = 0x0001
#: AES-256-GCM.
AEAD_ID = 0x0002
#: Length of an encapsulated key (an X25519 public key) in bytes.
N_ENC = 32
#: Length of a serialised public key in bytes.
N_PK = 32
#: Length of a serialised private key in bytes.
N_SK = 32
#: AEAD nonce length in bytes.
N_N = 12
#: AEAD tag length in bytes.
N_T = 16
#: HKDF-SHA256 output (and KEM shared secret) length in bytes.
N_H = 32

_VERSION = b"HPKE-v1"
_MODE_BASE = 0x00
_MAX_EXPORT = 255 * N_H


class MessageLimitReachedError(OverflowError):
    """The context's sequence number is exhausted; start a new context."""


@dataclass(frozen=True)
class Suite:
    """An HPKE cipher suite with the DHKEM(X25519) KEM and HKDF-SHA256.

    Attributes:
        kem_id: the KEM identifier (always ``KEM_ID``).
        kdf_id: the KDF identifier (always ``KDF_ID``).
        aead_id: the AEAD identifier.
        n_k: the AEAD key length in bytes.
    """

    kem_id: int
    kdf_id: int
    aead_id: int
    n_k: int

    @property
    def suite_id(self) -> bytes:
        """The ``suite_id`` of the key schedule (RFC 9180 §5.1)."""
        return b"HPKE" + _i2osp(self.kem_id, 2) + _i2osp(self.kdf_id, 2) + _i2osp(self.aead_id, 2)


#: The one suite sealtune speaks: X25519, HKDF-SHA256, AES-256-GCM.
SUITE = Suite(KEM_ID, KDF_ID, AEAD_ID, 32)
#: AES-128-GCM, for replaying the Oblivious HTTP worked examples only.
_AES_128_GCM_SUITE = Suite(KEM_ID, KDF_ID, 0x0001, 16)

_KEM_SUITE_ID = b"KEM" + (KEM_ID).to_bytes(2, "big")


def _i2osp(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


def extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract with SHA-256 (RFC 5869); an empty salt means ``N_H`` zeros."""
    return hmac.digest(salt or bytes(N_H), ikm, "sha256")


def expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand with SHA-256 (RFC 5869).

    Raises:
        ValueError: ``length`` is over 255 hash lengths.
    """
    if not 0 <= length <= _MAX_EXPORT:
        raise ValueError("HKDF-Expand length out of range")
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes((counter,)), "sha256")
        out += block
        counter += 1
    return out[:length]


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return extract(salt, _VERSION + suite_id + label + ikm)


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return expand(prk, _i2osp(length, 2) + _VERSION + suite_id + label + info, length)


def generate_private_key() -> X25519PrivateKey:
    """Return a fresh X25519 private key from the operating system's CSPRNG."""
    return X25519PrivateKey.generate()


def derive_private_key(ikm: bytes) -> X25519PrivateKey:
    """DeriveKeyPair for DHKEM(X25519, HKDF-SHA256) (RFC 9180 §7.1.3).

    Deterministic; used for test vectors. ``ikm`` must hold at least ``N_SK``
    bytes of entropy.
    """
    dkp_prk = _labeled_extract(_KEM_SUITE_ID, b"", b"dkp_prk", ikm)
    sk = _labeled_expand(_KEM_SUITE_ID, dkp_prk, b"sk", b"", N_SK)
    return X25519PrivateKey.from_private_bytes(sk)


def public_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    """SerializePublicKey: the raw 32-byte X25519 public key."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return public.public_bytes_raw()


def _dh(private_key: X25519PrivateKey, public_key: bytes) -> bytes:
    """X25519 with the all-zero output rejected (RFC 9180 §7.1.4).

    Raises:
        ValueError: the public key has the wrong length or is a low-order point.
    """
    if len(public_key) != N_PK:
        raise ValueError("an X25519 public key is 32 bytes")
    # cryptography raises ValueError when the shared secret is all zeros.
    return private_key.exchange(X25519PublicKey.from_public_bytes(public_key))


def _extract_and_expand(dh: bytes, kem_context: bytes) -> bytes:
    eae_prk = _labeled_extract(_KEM_SUITE_ID, b"", b"eae_prk", dh)
    return _labeled_expand(_KEM_SUITE_ID, eae_prk, b"shared_secret", kem_context, N_H)


def _encap(pk_r: bytes, sk_e: X25519PrivateKey) -> tuple[bytes, bytes]:
    """DHKEM Encap with a given ephemeral key; returns ``(shared_secret, enc)``."""
    enc = public_bytes(sk_e)
    dh = _dh(sk_e, pk_r)
    return _extract_and_expand(dh, enc + pk_r), enc


def _decap(enc: bytes, sk_r: X25519PrivateKey) -> bytes:
    """DHKEM Decap; returns the shared secret."""
    dh = _dh(sk_r, enc)
    return _extract_and_expand(dh, enc + public_bytes(sk_r))


@dataclass(frozen=True)
class _Schedule:
    """The outputs of KeySchedule (RFC 9180 §5.1), kept for test vectors."""

    key_schedule_context: bytes
    secret: bytes
    key: bytes
    base_nonce: bytes
    exporter_secret: bytes


def _key_schedule(suite: Suite, shared_secret: bytes, info: bytes) -> _Schedule:
    sid = suite.suite_id
    psk_id_hash = _labeled_extract(sid, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(sid, b"", b"info_hash", info)
    context = bytes((_MODE_BASE,)) + psk_id_hash + info_hash
    secret = _labeled_extract(sid, shared_secret, b"secret", b"")
    return _Schedule(
        key_schedule_context=context,
        secret=secret,
        key=_labeled_expand(sid, secret, b"key", context, suite.n_k),
        base_nonce=_labeled_expand(sid, secret, b"base_nonce", context, N_N),
        exporter_secret=_labeled_expand(sid, secret, b"exp", context, N_H),
    )


class _Context:
    """Shared state of an HPKE context: AEAD key, base nonce, sequence, exporter."""

    __slots__ = ("_aead", "_base_nonce", "_exporter_secret", "_seq", "_suite")

    def __init__(self, suite: Suite, schedule: _Schedule) -> None:
        self._suite = suite
        self._aead = AESGCM(schedule.key)
        self._base_nonce = int.from_bytes(schedule.base_nonce, "big")
        self._exporter_secret = schedule.exporter_secret
        self._seq = 0

    @property
    def suite(self) -> Suite:
        """The suite this context was set up with."""
        return self._suite

    @property
    def seq(self) -> int:
        """The sequence number the next seal or open will use."""
        return self._seq

    def _nonce(self) -> bytes:
        # RFC 9180 §5.2: IncrementSeq refuses to reach 2^(8*Nn) - 1, so a
        # (key, nonce) pair can never come round again.
        if self._seq >= (1 << (8 * N_N)) - 1:
            raise MessageLimitReachedError("HPKE message limit reached")
        return (self._base_nonce ^ self._seq).to_bytes(N_N, "big")

    def export(self, exporter_context: bytes, length: int) -> bytes:
        """Secret export (RFC 9180 §5.3): ``length`` bytes bound to this context.

        Raises:
            ValueError: ``length`` is over 255 * ``N_H``.
        """
        if not 0 <= length <= _MAX_EXPORT:
            raise ValueError("export length out of range")
        return _labeled_expand(
            self._suite.suite_id, self._exporter_secret, b"sec", exporter_context, length
        )


class SenderContext(_Context):
    """The sender's side of an HPKE context (ContextS)."""

    __slots__ = ()

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        """Encrypt with the next sequence number; returns ``ciphertext || tag``."""
        nonce = self._nonce()
        ciphertext = self._aead.encrypt(nonce, plaintext, aad)
        self._seq += 1
        return ciphertext


class RecipientContext(_Context):
    """The recipient's side of an HPKE context (ContextR)."""

    __slots__ = ()

    def open(self, aad: bytes, ciphertext: bytes) -> bytes:
        """Decrypt with the next sequence number.

        The sequence number advances only on success, as in RFC 9180.

        Raises:
            cryptography.exceptions.InvalidTag: the ciphertext does not authenticate.
        """
        nonce = self._nonce()
        if len(ciphertext) < N_T:
            raise InvalidTag()
        plaintext = self._aead.decrypt(nonce, ciphertext, aad)
        self._seq += 1
        return plaintext


def setup_base_sender(
    pk_r: bytes, info: bytes, *, suite: Suite = SUITE, _sk_e: X25519PrivateKey | None = None
) -> tuple[bytes, SenderContext]:
    """SetupBaseS: encapsulate to ``pk_r``; returns ``(enc, context)``.

    Args:
        pk_r: the recipient's raw 32-byte X25519 public key.
        info: application context bound into the key schedule.
        suite: the cipher suite (sealtune uses :data:`SUITE` only).
        _sk_e: a fixed ephemeral key, for known-answer tests only; by default
            a fresh one is generated for every call.

    Raises:
        ValueError: ``pk_r`` is malformed or a low-order point.
    """
    sk_e = _sk_e if _sk_e is not None else generate_private_key()
    shared_secret, enc = _encap(pk_r, sk_e)
    return enc, SenderContext(suite, _key_schedule(suite, shared_secret, info))


def setup_base_recipient(
    enc: bytes, sk_r: X25519PrivateKey, info: bytes, *, suite: Suite = SUITE
) -> RecipientContext:
    """SetupBaseR: decapsulate ``enc`` with ``sk_r``; returns the context.

    Raises:
        ValueError: ``enc`` is malformed or a low-order point.
    """
    shared_secret = _decap(enc, sk_r)
    return RecipientContext(suite, _key_schedule(suite, shared_secret, info))


class Aead:
    """A fixed AES-GCM key, for the many chunks of one response stream.

    Holds the ``AESGCM`` object so that per-chunk cost is one cipher call.
    The caller owns nonce uniqueness (``protocol`` uses base nonce XOR counter).
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """Encrypt; returns ``ciphertext || tag``."""
        return self._aead.encrypt(nonce, plaintext, aad)

    def open(self, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        """Decrypt ``ciphertext || tag``.

        Raises:
            cryptography.exceptions.InvalidTag: the ciphertext does not authenticate.
        """
        if len(ciphertext) < N_T:
            raise InvalidTag()
        return self._aead.decrypt(nonce, ciphertext, aad)
