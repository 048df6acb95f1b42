"""DSSE envelopes: the spec's PAE vector, round trips, strict parsing, and in-toto as an oracle."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from sealtune.errors import IntegrityError
from sealtune.evidence import _json, dsse

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def _sign(payload: bytes, key: Ed25519PrivateKey = KEY, **kw: str) -> bytes:
    return dsse.sign(payload, signer=key.sign, signer_keyid=dsse.keyid(key.public_key()), **kw)


def _sslib_key(key: Ed25519PrivateKey) -> SSlibKey:
    return SSlibKey.from_crypto(key.public_key(), keyid=dsse.keyid(key.public_key()))


def test_pae_matches_the_dsse_specification_example() -> None:
    # https://github.com/secure-systems-lab/dsse/blob/master/protocol.md (test vector)
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world")


def test_keyid_is_the_sha256_of_the_subject_public_key_info() -> None:
    der_prefix = bytes.fromhex("302a300506032b6570032100")  # RFC 8410 Ed25519 SPKI header
    raw = KEY.public_key().public_bytes_raw()
    assert dsse.keyid(KEY.public_key()) == "sha256:" + hashlib.sha256(der_prefix + raw).hexdigest()


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(max_size=300),
       kind=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))
def test_sign_then_open_round_trips(payload: bytes, kind: str) -> None:
    env = _sign(payload, payload_type=kind)
    assert dsse.open_envelope(env, [KEY.public_key()], what="e", payload_type=kind) == (
        payload, dsse.keyid(KEY.public_key()))


def test_in_toto_reads_and_verifies_our_envelopes() -> None:
    from in_toto.models.metadata import Envelope as InTotoEnvelope
    from in_toto.models.metadata import Metadata

    env = json.loads(_sign(b'{"_type":"https://in-toto.io/Statement/v1"}'))
    meta = Metadata.from_dict(json.loads(json.dumps(env)))
    assert isinstance(meta, InTotoEnvelope)
    key = _sslib_key(KEY)
    meta.verify_signature({"keyid": key.keyid, **key.to_dict()})
    assert SslibEnvelope.from_dict(json.loads(json.dumps(env))).verify([key], 1)
    with pytest.raises(VerificationError):
        SslibEnvelope.from_dict(json.loads(json.dumps(env))).verify(
            [SSlibKey.from_crypto(OTHER.public_key(), keyid=key.keyid)], 1)


def test_we_verify_envelopes_signed_by_securesystemslib() -> None:
    keyid = dsse.keyid(KEY.public_key())
    signer = CryptoSigner(KEY, _sslib_key(KEY))
    env = SslibEnvelope(b'{"a":1}', dsse.PAYLOAD_TYPE, {})
    env.sign(signer)
    data = _json.canonical(env.to_dict())  # the signature covers the PAE, not the JSON layout
    assert dsse.open_envelope(data, [KEY.public_key()], what="e") == (b'{"a":1}', keyid)


def test_every_single_byte_change_is_refused() -> None:
    env = _sign(b'{"statement":"x"}')
    for i in range(len(env)):
        for flip in (0x01, 0x20, 0x80):
            bad = bytearray(env)
            bad[i] ^= flip
            with pytest.raises(IntegrityError):
                dsse.open_envelope(bytes(bad), [KEY.public_key()], what="e")
    for cut in range(len(env)):
        with pytest.raises(IntegrityError):
            dsse.open_envelope(env[:cut], [KEY.public_key()], what="e")


def test_only_pinned_keys_count_and_a_failing_pinned_signature_rejects() -> None:
    env = _sign(b"body")
    with pytest.raises(IntegrityError, match="not signed by a pinned key"):
        dsse.open_envelope(env, [OTHER.public_key()], what="e")
    doc = json.loads(env)
    # An extra signature by an unknown key is ignored ...
    doc["signatures"].append({"keyid": "sha256:" + "0" * 64,
                              "sig": base64.b64encode(bytes(64)).decode()})
    assert dsse.open_envelope(_json.canonical(doc), [KEY.public_key()], what="e")[0] == b"body"
    # ... but a bad signature that claims the pinned key's id rejects the envelope.
    doc["signatures"][1]["keyid"] = dsse.keyid(KEY.public_key())
    with pytest.raises(IntegrityError, match="does not verify"):
        dsse.open_envelope(_json.canonical(doc), [KEY.public_key()], what="e")


def test_a_signature_over_another_payload_type_does_not_verify() -> None:
    env = json.loads(_sign(b"body", payload_type="application/a"))
    env["payloadType"] = "application/b"
    with pytest.raises(IntegrityError, match="pinned key"):
        dsse.open_envelope(_json.canonical(env), [KEY.public_key()], what="e",
                           payload_type="application/b")


@pytest.mark.parametrize("mutate", [
    lambda d: json.dumps(d).encode(),                                  # not canonical (spaces)
    lambda d: _json.canonical(d) + b"\n",                               # trailing byte
    lambda d: _json.canonical({**d, "extra": 1}),                       # unknown field
    lambda d: _json.canonical({**d, "signatures": []}),                 # no signature
    lambda d: _json.canonical({**d, "signatures": d["signatures"] * 17}),  # too many
    lambda d: _json.canonical({**d, "payload": d["payload"].rstrip("=")}),  # non-canonical b64
    lambda d: _json.canonical(d)[:-1] + b',"payload":"AA=="}',           # duplicate key
    lambda d: b"\xff" + _json.canonical(d),                             # not UTF-8
])
def test_malformed_envelopes_are_refused(mutate: object) -> None:
    doc = json.loads(_sign(b"body-bytes"))
    with pytest.raises(IntegrityError):
        dsse.open_envelope(mutate(doc), [KEY.public_key()], what="e")  # type: ignore[operator]
