"""Known-answer tests of ``sealtune.core.protocol`` against the Oblivious HTTP examples.

e2e-v1 is RFC 9458 (and draft-ietf-ohai-chunked-ohttp for streams) with our
own labels and AES-256-GCM. The published worked examples use OHTTP's labels
and AES-128-GCM, so these tests run the very same code with that private
profile and must reproduce every published byte: the key configuration, the
HPKE info, the encapsulated request, the exported secret, the response
salt/PRK/key/nonce, the encapsulated response and, for chunks, the framing
and per-chunk nonces. Values and provenance are in ``data/ohttp-examples.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sealtune.core import protocol as p
from sealtune.core.hazmat import hpke

DATA = Path(__file__).parent / "data"
h = bytes.fromhex

OHTTP = p._Profile(
    hpke._AES_128_GCM_SUITE,
    b"message/bhttp request",
    b"message/bhttp response",
    b"message/bhttp chunked request",
    b"message/bhttp chunked response",
)


@pytest.fixture(scope="module")
def examples() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / "ohttp-examples.json").read_text())
    return doc


def _key(hex_value: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(h(hex_value))


def _check_response_derivation(ctx: hpke.SenderContext | hpke.RecipientContext, label: bytes,
                               ex: dict[str, Any]) -> None:
    """RFC 9458 §4.4 step by step, from the context to the published values."""
    secret = ctx.export(label, 16)
    assert secret.hex() == ex["secret"]
    prk = hpke.extract(h(ex["pkE"]) + h(ex["response_nonce"]), secret)
    assert prk.hex() == ex["prk"]
    assert hpke.expand(prk, b"key", 16).hex() == ex["aead_key"]
    assert hpke.expand(prk, b"nonce", 12).hex() == ex["aead_nonce"]


def test_rfc9458_key_configuration(examples: dict[str, Any]) -> None:
    ex = examples["rfc9458_appendix_a"]
    config = p.KeyConfig.decode(h(ex["key_config"]))
    assert config.key_id == 1 and config.kem_id == 0x0020
    assert config.public_key == hpke.public_bytes(_key(ex["skR"]))
    assert config.suites == ((1, 1), (1, 3))
    assert config.encode().hex() == ex["key_config"]
    assert not config.supports()  # it offers AES-128-GCM and ChaCha20, not our AES-256-GCM
    assert config._offers(OHTTP)


def test_rfc9458_request_and_response(examples: dict[str, Any]) -> None:
    ex = examples["rfc9458_appendix_a"]
    config = p.KeyConfig.decode(h(ex["key_config"]))
    assert hpke.public_bytes(_key(ex["skE"])).hex() == ex["pkE"]
    assert (OHTTP.request + b"\x00" + h(ex["encapsulated_request"])[:7]).hex() == ex["info"]
    sealed, client = p._seal_request(config, h(ex["request"]), profile=OHTTP,
                                     sk_e=_key(ex["skE"]))
    assert sealed.hex() == ex["encapsulated_request"]

    server_keys = p.ServerKeys._from_private_key(_key(ex["skR"]), key_id=1, now=0.0,
                                                 profile=OHTTP)
    request, server = server_keys.open_request(sealed, now=0.0)
    assert request.hex() == ex["request"]
    _check_response_derivation(server._ctx, OHTTP.response, ex)
    _check_response_derivation(client._ctx, OHTTP.response, ex)

    response = server._seal_response(h(ex["response"]), nonce=h(ex["response_nonce"]))
    assert response.hex() == ex["encapsulated_response"]
    assert client.open_response(response).hex() == ex["response"]


def test_chunked_request_and_response(examples: dict[str, Any]) -> None:
    ex = examples["chunked_ohttp_example"]
    config = p.KeyConfig.decode(h(ex["key_config"]))
    assert config.public_key == hpke.public_bytes(_key(ex["skR"]))
    assert hpke.public_bytes(_key(ex["skE"])).hex() == ex["pkE"]
    assert (OHTTP.chunked_request + b"\x00" + h(ex["key_config"])[:1]
            + b"\x00\x20\x00\x01\x00\x01").hex() == ex["info"]

    request = h(ex["request"])
    first, second, final = ex["request_split"]
    sealer = p.ChunkedRequestSealer(config, _profile=OHTTP, _sk_e=_key(ex["skE"]))
    wire = [sealer.seal(request[:first]), sealer.seal(request[first : first + second]),
            sealer.seal_final(request[first + second :])]
    assert final == 0 and len(request) == first + second
    parts = ex["encapsulated_request"]
    assert [w.hex() for w in wire] == [parts[0] + parts[1] + parts[2], parts[3], parts[4]]

    opener = p.ServerKeys._from_private_key(
        _key(ex["skR"]), key_id=1, now=0.0, profile=OHTTP
    ).open_chunked_request(now=0.0)
    body = b"".join(wire)
    got = b"".join(opener.feed(body[i : i + 7]) for i in range(0, len(body), 7))
    tail, server = opener.finish()
    assert got + tail == request
    _check_response_derivation(server._ctx, OHTTP.chunked_response, ex)

    response = h(ex["response"])
    stream = server._response_stream(nonce=h(ex["response_nonce"]))
    out = [stream.seal(response[:1]), stream.seal(response[1:]), stream.seal_final()]
    want = ex["encapsulated_response"]
    assert [o.hex() for o in out] == [want[0] + want[1], want[2], want[3]]

    base = int(ex["aead_nonce"], 16)
    assert [(base ^ i).to_bytes(12, "big").hex() for i in range(3)] == ex["chunk_nonces"]

    reader = sealer.context.response_stream()
    assert reader.feed(b"".join(out)) + reader.finish() == response
