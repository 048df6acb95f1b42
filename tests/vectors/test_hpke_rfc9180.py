"""Known-answer and cross-implementation tests of ``sealtune.core.hazmat.hpke``.

* The official RFC 9180 test vector for exactly our suite (mode_base,
  DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM), from the CFRG
  ``test-vectors.json`` (provenance in the data file): DeriveKeyPair, the
  encapsulated key, the shared secret, every key-schedule value, all 257
  encryptions in sequence (the sequence number crosses a byte boundary) and
  the exports.
* Interoperability both ways with two independent implementations:
  ``cryptography``'s own HPKE (Rust, single-shot) and ``pyhpke`` (contexts
  and exports). Both are test dependencies: a missing one fails the test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from sealtune.core.hazmat import hpke

DATA = Path(__file__).parent / "data"
h = bytes.fromhex


@pytest.fixture(scope="module")
def vector() -> dict[str, Any]:
    doc = json.loads((DATA / "hpke-rfc9180-x25519-sha256-aes256gcm.json").read_text())
    v: dict[str, Any] = doc["vector"]
    assert (v["mode"], v["kem_id"], v["kdf_id"], v["aead_id"]) == (0, 0x20, 1, 2)
    return v


def test_suite_identifiers_match_the_vector(vector: dict[str, Any]) -> None:
    assert (hpke.SUITE.kem_id, hpke.SUITE.kdf_id, hpke.SUITE.aead_id) == (0x20, 1, 2)
    assert hpke.SUITE.n_k == 32 and hpke.N_N == 12 and hpke.N_T == 16 and hpke.N_ENC == 32
    assert hpke.SUITE.suite_id == b"HPKE\x00\x20\x00\x01\x00\x02"


def test_derive_key_pair(vector: dict[str, Any]) -> None:
    sk_e = hpke.derive_private_key(h(vector["ikmE"]))
    sk_r = hpke.derive_private_key(h(vector["ikmR"]))
    assert sk_e.private_bytes_raw().hex() == vector["skEm"]
    assert hpke.public_bytes(sk_e).hex() == vector["pkEm"]
    assert sk_r.private_bytes_raw().hex() == vector["skRm"]
    assert hpke.public_bytes(sk_r).hex() == vector["pkRm"]


def test_encap_decap_shared_secret(vector: dict[str, Any]) -> None:
    sk_e = X25519PrivateKey.from_private_bytes(h(vector["skEm"]))
    shared_secret, enc = hpke._encap(h(vector["pkRm"]), sk_e)
    assert enc.hex() == vector["enc"]
    assert shared_secret.hex() == vector["shared_secret"]
    sk_r = X25519PrivateKey.from_private_bytes(h(vector["skRm"]))
    assert hpke._decap(enc, sk_r).hex() == vector["shared_secret"]


def test_key_schedule(vector: dict[str, Any]) -> None:
    schedule = hpke._key_schedule(hpke.SUITE, h(vector["shared_secret"]), h(vector["info"]))
    assert schedule.key_schedule_context.hex() == vector["key_schedule_context"]
    assert schedule.secret.hex() == vector["secret"]
    assert schedule.key.hex() == vector["key"]
    assert schedule.base_nonce.hex() == vector["base_nonce"]
    assert schedule.exporter_secret.hex() == vector["exporter_secret"]


def _contexts(vector: dict[str, Any]) -> tuple[hpke.SenderContext, hpke.RecipientContext]:
    sk_e = X25519PrivateKey.from_private_bytes(h(vector["skEm"]))
    enc, sender = hpke.setup_base_sender(h(vector["pkRm"]), h(vector["info"]), _sk_e=sk_e)
    assert enc.hex() == vector["enc"]
    sk_r = X25519PrivateKey.from_private_bytes(h(vector["skRm"]))
    return sender, hpke.setup_base_recipient(enc, sk_r, h(vector["info"]))


def test_sequence_of_encryptions(vector: dict[str, Any]) -> None:
    sender, recipient = _contexts(vector)
    assert len(vector["encryptions"]) == 257
    base = int(vector["base_nonce"], 16)
    for seq, enc in enumerate(vector["encryptions"]):
        # The vector's per-message nonce is base_nonce XOR seq (RFC 9180 §5.2).
        assert (base ^ seq).to_bytes(12, "big").hex() == enc["nonce"]
        assert sender.seq == seq
        assert sender.seal(h(enc["aad"]), h(enc["pt"])).hex() == enc["ct"]
        assert recipient.open(h(enc["aad"]), h(enc["ct"])).hex() == enc["pt"]
    assert sender.seq == recipient.seq == 257


def test_exports(vector: dict[str, Any]) -> None:
    sender, recipient = _contexts(vector)
    assert len(vector["exports"]) == 3
    for export in vector["exports"]:
        context, length = h(export["exporter_context"]), export["L"]
        assert sender.export(context, length).hex() == export["exported_value"]
        assert recipient.export(context, length).hex() == export["exported_value"]


def test_open_out_of_sequence_fails_and_does_not_advance(vector: dict[str, Any]) -> None:
    _, recipient = _contexts(vector)
    second = vector["encryptions"][1]
    with pytest.raises(InvalidTag):
        recipient.open(h(second["aad"]), h(second["ct"]))
    assert recipient.seq == 0
    first = vector["encryptions"][0]
    assert recipient.open(h(first["aad"]), h(first["ct"])).hex() == first["pt"]


def test_sequence_number_never_wraps() -> None:
    _, sender = hpke.setup_base_sender(hpke.public_bytes(hpke.generate_private_key()), b"")
    sender._seq = (1 << 96) - 2
    sender.seal(b"", b"last allowed")
    with pytest.raises(hpke.MessageLimitReachedError):
        sender.seal(b"", b"would reuse a nonce")


def test_low_order_and_malformed_public_keys_rejected() -> None:
    sk = hpke.generate_private_key()
    for bad in (bytes(32), (1).to_bytes(32, "little"), bytes(31)):
        with pytest.raises(ValueError):
            hpke.setup_base_sender(bad, b"")
        with pytest.raises(ValueError):
            hpke.setup_base_recipient(bad, sk, b"")


def test_expand_length_limits() -> None:
    assert len(hpke.expand(b"k" * 32, b"", 255 * 32)) == 255 * 32
    with pytest.raises(ValueError):
        hpke.expand(b"k" * 32, b"", 255 * 32 + 1)


# -- interoperability with independent implementations ------------------------------------------


def test_interop_with_cryptography_hpke() -> None:
    from cryptography.hazmat.primitives import hpke as crypto_hpke
    suite = crypto_hpke.Suite(crypto_hpke.KEM.X25519, crypto_hpke.KDF.HKDF_SHA256,
                              crypto_hpke.AEAD.AES_256_GCM)
    sk_r = X25519PrivateKey.generate()
    info, message = b"sealtune interop", os.urandom(100)
    # theirs -> ours: their output is enc || ciphertext at sequence 0, empty AAD.
    sealed = suite.encrypt(message, sk_r.public_key(), info=info)
    recipient = hpke.setup_base_recipient(sealed[:32], sk_r, info)
    assert recipient.open(b"", sealed[32:]) == message
    # ours -> theirs.
    enc, sender = hpke.setup_base_sender(hpke.public_bytes(sk_r), info)
    assert suite.decrypt(enc + sender.seal(b"", message), sk_r, info=info) == message


def test_interop_with_pyhpke_contexts_and_exports() -> None:
    import pyhpke  # test dependency (pyproject [test])
    suite = pyhpke.CipherSuite.new(pyhpke.KEMId.DHKEM_X25519_HKDF_SHA256,
                                   pyhpke.KDFId.HKDF_SHA256, pyhpke.AEADId.AES256_GCM)
    sk_r = X25519PrivateKey.generate()
    pk_r = hpke.public_bytes(sk_r)
    their_sk = suite.kem.deserialize_private_key(sk_r.private_bytes_raw())
    their_pk = suite.kem.deserialize_public_key(pk_r)
    info = b"sealtune interop"
    # ours -> theirs, several messages in sequence, then exports.
    enc, sender = hpke.setup_base_sender(pk_r, info)
    theirs = suite.create_recipient_context(enc, their_sk, info=info)
    for i in range(5):
        message = os.urandom(i * 37)
        assert theirs.open(sender.seal(b"aad%d" % i, message), aad=b"aad%d" % i) == message
    assert theirs.export(b"ctx", 32) == sender.export(b"ctx", 32)
    # theirs -> ours.
    enc2, their_sender = suite.create_sender_context(their_pk, info=info)
    ours = hpke.setup_base_recipient(enc2, sk_r, info)
    for i in range(5):
        message = os.urandom(i * 41)
        assert ours.open(b"", their_sender.seal(message)) == message
    assert ours.export(b"", 48) == their_sender.export(b"", 48)


def test_public_bytes_accepts_public_or_private_key() -> None:
    sk = hpke.generate_private_key()
    public: X25519PublicKey = sk.public_key()
    assert hpke.public_bytes(sk) == hpke.public_bytes(public) == public.public_bytes_raw()
