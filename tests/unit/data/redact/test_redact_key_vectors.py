"""Known answers for the dataset redaction keys: pseudonyms and tokens made before still match.

The vectors were computed with the code as it was before its primitives moved
behind :mod:`sealtune.keys.derive`; a change to a label, the derivation or
the token layout fails here (and would make every sealed dataset's tokens
unreadable and its pseudonyms change). The surrogates were computed before the
surrogate generators were made faster (commit e709fe1): a speed-up must not change
one of them.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealtune.data.redact import DatasetKeys
from sealtune.data.redact.pseudonym import Pseudonym
from sealtune.errors import IntegrityError

SECRET = bytes(range(32))
SEED = "2706069c63e43df12232214e989a60527587adf46da12d9cf120700ff99a68e9"
TOKEN = ("0d34d4542e1d5ba6a4cf73ac9666dba258624712a6e1e8075b58986605f579ddbc967fbf4a0543587"
         "1e653889c")

#: (type, value, surrogate under SECRET): every generator and shape (full width, +86,
#: area codes, the legacy 15-digit ID, IPv6 in brackets, titles, a custom type).
SURROGATES = [
    ('PHONE', '13800138000', '13692627704'),
    ('PHONE', '+86 138 0013 8000', '+86 136 9262 7704'),
    ('PHONE', '+86-10-6552-9988', '+86-10-4190-0972'),
    ('PHONE', '010-65529988', '010-41900972'),
    ('PHONE', '(０２１)６４３８ ７７２２', '(０２１)５１０１ ２４８９'),
    ('PHONE', '１３９１２３４５６７８', '１６６７１３４７１６０'),
    ('PHONE', '+1 650 253 0000', '+1 650 385 4867'),
    ('PHONE', '12', '27'),
    ('CN_ID', '11010519491231002X', '31010519870104744X'),
    ('CN_ID', '１１０１０５１９４９１２３１００２ｘ', '３１０１０５１９８７０１０４７４４Ｘ'),
    ('CN_ID', '110105491231002', '530102700605376'),
    ('CN_ID', '1234', '3351'),
    ('BANK_CARD', '6222 0212 3456 7890', '6268 3700 5054 2175'),
    ('BANK_CARD', '4111-1111-1111-1111', '4813-9857-3349-4075'),
    ('BANK_CARD', '12345', '16885'),
    ('EMAIL', 'zhang.wei@example.cn', 'helen.rodriguez26@example.com'),
    ('IP_ADDRESS', '10.1.2.3', '198.51.100.205'),
    ('IP_ADDRESS', '[fe80::1]', '[2001:db8:7c5b:760d:179f:1903:b986:7695]'),
    ('IP_ADDRESS', 'fe80::1', '2001:db8:7c5b:760d:179f:1903:b986:7695'),
    ('PERSON', '王建国', '宋嘉辉'),
    ('PERSON', 'Mr. John SMITH', 'Mr. William WRIGHT'),
    ('PERSON', 'Dr.', 'Yb.'),
    ('ADDRESS', '北京市朝阳区建国路88号', '武汉市江岸区建设路17号'),
    ('ADDRESS', '221B Baker Street, London', '9527 Spring St, Milton'),
    ('PASSPORT', 'E12345678', 'E76405675'),
    ('PASSPORT', '１23', '２31'),
    ('CUSTOMER_NO', 'AB-１２3-王x', 'SW-６７1-雪v'),
]


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


@pytest.mark.parametrize(("entity_type", "value", "expected"), SURROGATES)
def test_surrogates_made_before_are_made_the_same_way(entity_type: str, value: str,
                                                      expected: str) -> None:
    keys, operator = DatasetKeys(SECRET), Pseudonym()
    assert operator.apply(value, entity_type=entity_type, keys=keys) == expected
    assert operator.apply(value, entity_type=entity_type, keys=keys) == expected  # cached
