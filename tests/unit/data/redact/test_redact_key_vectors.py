"""Known answers for the dataset redaction keys: pseudonyms and tokens made before still match.

The vectors were computed with the code as it was before its primitives moved
behind :mod:`sealtune.keys.derive`; a change to a label, the derivation or
the token layout fails here (and would make every sealed dataset's tokens
unreadable and its pseudonyms change).
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealtune.data.redact import DatasetKeys
from sealtune.errors import IntegrityError

SECRET = bytes(range(32))
SEED = "2706069c63e43df12232214e989a60527587adf46da12d9cf120700ff99a68e9"
TOKEN = ("0d34d4542e1d5ba6a4cf73ac9666dba258624712a6e1e8075b58986605f579ddbc967fbf4a0543587"
         "1e653889c")


def _hkdf(ikm: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(ikm)


def test_the_pseudonym_seed_is_pinned_and_matches_an_independent_hmac() -> None:
    keys = DatasetKeys(SECRET)
    seed = keys.pseudonym_seed("PHONE_NUMBER", "+15551234567")
    assert seed.hex() == SEED
    key = _hkdf(SECRET, b"sealtune/v1/dataset/pseudonym")
    assert seed == hmac.new(key, b"PHONE_NUMBER\x00+15551234567", hashlib.sha256).digest()


def test_a_token_made_before_still_opens_and_is_made_the_same_way() -> None:
    token_key = DatasetKeys(SECRET).token_key
    blob = bytes.fromhex(TOKEN)
    assert token_key.open("EMAIL_ADDRESS", blob) == "alice@example.org"
    assert token_key.seal("EMAIL_ADDRESS", "alice@example.org", deterministic=True) == blob
    key = _hkdf(SECRET, b"sealtune/v1/dataset/token")
    aad = b"sealtune/v1/token\x00EMAIL_ADDRESS"
    assert AESGCM(key).decrypt(blob[:12], blob[12:], aad) == b"alice@example.org"
    with pytest.raises(IntegrityError, match="token failed authentication"):
        token_key.open("PHONE_NUMBER", blob)
