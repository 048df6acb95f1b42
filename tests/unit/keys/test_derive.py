"""The keyed API for stages (keys/derive.py): known answers, independent oracles, tampering."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from sealtune.errors import IntegrityError, UsageError
from sealtune.keys.derive import OVERHEAD_BYTES, TokenCipher, derive_key, keyed_digest

KEY = bytes(range(32))
LABEL = b"sealtune/v1/test/label"


def _hkdf(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(ikm)


def test_derive_key_is_hkdf_sha256_with_an_empty_salt() -> None:
    assert derive_key(KEY, label=LABEL) == _hkdf(KEY, LABEL)
    assert derive_key(KEY, label=LABEL, length=48) == _hkdf(KEY, LABEL, 48)
    assert derive_key(KEY, label=LABEL + b"x") != derive_key(KEY, label=LABEL)
    assert derive_key(KEY, label=LABEL).hex() == (  # pinned: a change breaks old tokens
        "92494cfd349c24276d6c8c98d7b165f0"
        "fa2bc3409134da5a4da230a5aed7b56e")
    with pytest.raises(UsageError, match="label"):
        derive_key(KEY, label=b"")


def test_keyed_digest_is_hmac_sha256_of_the_concatenation() -> None:
    parts = (b"PHONE", b"\x00", b"+15551234567")
    assert keyed_digest(KEY, parts) == hmac.new(KEY, b"".join(parts), hashlib.sha256).digest()


def test_deterministic_sealing_is_a_synthetic_iv_aes_gcm() -> None:
    cipher = TokenCipher(KEY, nonce_label=b"sealtune/v1/test/nonce")
    blob = cipher.seal(b"alice@example.org", aad=b"ctx", deterministic=True)
    nonce_key = _hkdf(KEY, b"sealtune/v1/test/nonce")
    nonce = hmac.new(nonce_key, b"ctx\x00alice@example.org", hashlib.sha256).digest()[:12]
    assert blob == nonce + AESGCM(KEY).encrypt(nonce, b"alice@example.org", b"ctx")
    assert cipher.seal(b"alice@example.org", aad=b"ctx", deterministic=True) == blob
    assert len(blob) == len(b"alice@example.org") + OVERHEAD_BYTES
    assert cipher.open(blob, aad=b"ctx") == b"alice@example.org"


def test_random_sealing_differs_every_time_and_opens() -> None:
    cipher = TokenCipher(KEY, nonce_label=b"n")
    a, b = (cipher.seal(b"v", aad=b"", deterministic=False) for _ in range(2))
    assert a != b
    assert cipher.open(a, aad=b"") == cipher.open(b, aad=b"") == b"v"


def test_every_flipped_bit_wrong_context_wrong_key_or_short_blob_fails_opaquely() -> None:
    cipher = TokenCipher(KEY, nonce_label=b"n")
    blob = cipher.seal(b"secret value", aad=b"EMAIL", deterministic=True)
    bad = [bytes(blob[:i]) + bytes([blob[i] ^ 1]) + bytes(blob[i + 1:]) for i in range(len(blob))]
    bad += [blob[:-1], blob[:OVERHEAD_BYTES - 1], b""]
    for forged in bad:
        with pytest.raises(IntegrityError) as info:
            cipher.open(forged, aad=b"EMAIL")
        assert "secret" not in str(info.value) and info.value.message == (
            "a sealed value failed authentication")
    with pytest.raises(IntegrityError):
        cipher.open(blob, aad=b"PHONE")
    with pytest.raises(IntegrityError):
        TokenCipher(bytes(32), nonce_label=b"n").open(blob, aad=b"EMAIL")


def test_the_cipher_refuses_a_wrong_key_length_and_hides_its_key() -> None:
    for key in (b"", bytes(16), bytes(33)):
        with pytest.raises(UsageError):
            TokenCipher(key, nonce_label=b"n")
    assert KEY.hex() not in repr(TokenCipher(KEY, nonce_label=b"n"))
    assert repr(TokenCipher(KEY, nonce_label=b"n")) == "TokenCipher(<hidden>)"


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=256), aad=st.binary(max_size=32), deterministic=st.booleans())
def test_seal_then_open_round_trips(data: bytes, aad: bytes, deterministic: bool) -> None:
    cipher = TokenCipher(KEY, nonce_label=b"n")
    assert cipher.open(cipher.seal(data, aad=aad, deterministic=deterministic), aad=aad) == data
