"""Unit tests of the e2e-v1 protocol (sealtune.core.protocol).

Real cryptography throughout. Known-answer tests are apart, in
``tests/vectors``; attacks an adversary would try are in
``tests/adversarial/test_protocol_attacks.py``.
"""

from __future__ import annotations

import os
import struct
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from sealtune.core import protocol as p
from sealtune.core.hazmat import hpke
from sealtune.errors import AttestationError, IntegrityError, UsageError

PROMPT = "患者 张三 的病历: secret prompt \u2603".encode()
ANSWER = b"the model's private answer " * 20


@pytest.fixture
def keys() -> p.ServerKeys:
    return p.ServerKeys(now=1000.0, grace_seconds=60.0)


def _frames(stream: bytes, prefix: int) -> tuple[bytes, list[bytes], bytes]:
    """Split a chunk stream into (prefix, non-final frames incl. length, final frame)."""
    head, rest, frames = stream[:prefix], bytearray(stream[prefix:]), list[bytes]()
    while True:
        parsed = p._read_varint(rest)
        assert parsed is not None
        length, used = parsed
        if length == 0:
            return head, frames, bytes(rest[used:])
        frames.append(bytes(rest[: used + length]))
        del rest[: used + length]


def _stream_response(keys: p.ServerKeys, pieces: list[bytes]) -> tuple[bytes, p.ClientContext]:
    sealed, client = p.seal_request(keys.current, PROMPT)
    _, server = keys.open_request(sealed, now=1000.0)
    sealer = server.response_stream()
    wire = b"".join(sealer.seal(piece) for piece in pieces) + sealer.seal_final()
    return wire, client


def _open_stream(client: p.ClientContext, wire: bytes) -> bytes:
    reader = client.response_stream()
    return reader.feed(wire) + reader.finish()


# -- round trips -------------------------------------------------------------------------------


def test_request_response_round_trip(keys: p.ServerKeys) -> None:
    sealed, client = p.seal_request(keys.current, PROMPT)
    assert PROMPT not in sealed
    assert sealed[0] == keys.current.key_id
    assert sealed[1:7] == b"\x00\x20\x00\x01\x00\x02"
    assert len(sealed) == p.HEADER_SIZE + 32 + len(PROMPT) + 16
    request, server = keys.open_request(sealed, now=1000.0)
    assert request == PROMPT
    response = server.seal_response(ANSWER)
    assert ANSWER not in response and len(response) == 32 + len(ANSWER) + 16
    assert client.open_response(response) == ANSWER


def test_empty_request_and_response(keys: p.ServerKeys) -> None:
    sealed, client = p.seal_request(keys.current, b"")
    request, server = keys.open_request(sealed, now=1000.0)
    assert request == b""
    assert client.open_response(server.seal_response(b"")) == b""


def test_streamed_response_round_trip_fed_byte_by_byte(keys: p.ServerKeys) -> None:
    pieces = [b"tok%d " % i for i in range(50)]
    wire, client = _stream_response(keys, pieces)
    reader = client.response_stream()
    got = b"".join(reader.feed(wire[i : i + 1]) for i in range(len(wire)))
    assert got + reader.finish() == b"".join(pieces)


def test_large_chunks_are_split_at_max_chunk_size(keys: p.ServerKeys) -> None:
    big = os.urandom(3 * p.MAX_CHUNK_SIZE + 5)
    wire, client = _stream_response(keys, [big])
    _, frames, final = _frames(wire, 32)
    assert len(frames) == 4 and len(final) == 16  # 3 full + 5 bytes, then an empty final
    assert _open_stream(client, wire) == big


def test_seal_final_splits_but_keeps_the_last_piece_final(keys: p.ServerKeys) -> None:
    sealed, client = p.seal_request(keys.current, PROMPT)
    sealer = keys.open_request(sealed, now=1000.0)[1].response_stream(max_chunk_size=10)
    wire = sealer.seal_final(b"x" * 25)
    _, frames, final = _frames(wire, 32)
    assert len(frames) == 2 and len(final) == 5 + 16
    reader = client.response_stream(max_chunk_size=10)
    assert reader.feed(wire) + reader.finish() == b"x" * 25


def test_chunked_request_round_trip(keys: p.ServerKeys) -> None:
    sealer = p.ChunkedRequestSealer(keys.current, max_chunk_size=100)
    wire = sealer.seal(PROMPT) + sealer.seal(b"more" * 60) + sealer.seal_final(b"end")
    opener = keys.open_chunked_request(now=1000.0, max_chunk_size=100)
    got = b"".join(opener.feed(wire[i : i + 13]) for i in range(0, len(wire), 13))
    tail, server = opener.finish()
    assert got + tail == PROMPT + b"more" * 60 + b"end"
    stream = server.response_stream()
    out = stream.seal(ANSWER) + stream.seal_final(b"!")
    assert _open_stream(sealer.context, out) == ANSWER + b"!"


def test_chunked_request_with_single_response(keys: p.ServerKeys) -> None:
    sealer = p.ChunkedRequestSealer(keys.current)
    opener = keys.open_chunked_request(now=1000.0)
    assert opener.feed(sealer.seal_final(PROMPT)) == b""
    tail, server = opener.finish()
    assert tail == PROMPT
    assert sealer.context.open_response(server.seal_response(ANSWER)) == ANSWER


@settings(max_examples=40, deadline=None)
@given(request=st.binary(max_size=3000), pieces=st.lists(st.binary(max_size=700), max_size=8),
       final=st.binary(max_size=300), chunk=st.integers(1, 512), cut=st.integers(1, 97))
def test_property_round_trip(request: bytes, pieces: list[bytes], final: bytes, chunk: int,
                             cut: int) -> None:
    keys = p.ServerKeys(now=0.0)
    sealer = p.ChunkedRequestSealer(keys.current, max_chunk_size=chunk)
    wire = b"".join(sealer.seal(x) for x in pieces) + sealer.seal_final(request)
    opener = keys.open_chunked_request(now=0.0, max_chunk_size=chunk)
    got = b"".join(opener.feed(wire[i : i + cut]) for i in range(0, len(wire), cut))
    tail, server = opener.finish()
    assert got + tail == b"".join(pieces) + request
    stream = server.response_stream(max_chunk_size=chunk)
    out = b"".join(stream.seal(x) for x in pieces) + stream.seal_final(final)
    reader = sealer.context.response_stream(max_chunk_size=chunk)
    got = b"".join(reader.feed(out[i : i + cut]) for i in range(0, len(out), cut))
    assert got + reader.finish() == b"".join(pieces) + final


@settings(max_examples=40, deadline=None)
@given(request=st.binary(max_size=2000), response=st.binary(max_size=2000))
def test_property_single_shot(request: bytes, response: bytes) -> None:
    keys = p.ServerKeys(now=0.0)
    sealed, client = p.seal_request(keys.current, request)
    got, server = keys.open_request(sealed, now=0.0)
    assert got == request
    assert client.open_response(server.seal_response(response)) == response


@settings(max_examples=30, deadline=None)
@given(data=st.binary(min_size=1, max_size=400), position=st.integers(0, 10_000),
       bit=st.integers(0, 7))
def test_property_any_bit_flip_is_rejected(data: bytes, position: int, bit: int) -> None:
    keys = p.ServerKeys(now=0.0)
    sealed, client = p.seal_request(keys.current, data)
    flipped = bytearray(sealed)
    flipped[position % len(sealed)] ^= 1 << bit
    with pytest.raises((IntegrityError, p.StaleKeyError)):
        keys.open_request(bytes(flipped), now=0.0)
    _, server = keys.open_request(sealed, now=0.0)
    response = bytearray(server.seal_response(data))
    response[position % len(response)] ^= 1 << bit
    with pytest.raises(IntegrityError):
        client.open_response(bytes(response))


# -- tampering, reordering, truncation ---------------------------------------------------------


def test_tampered_request_and_response_rejected(keys: p.ServerKeys) -> None:
    sealed, client = p.seal_request(keys.current, PROMPT)
    bad = bytearray(sealed)
    bad[-1] ^= 1
    with pytest.raises(IntegrityError):
        keys.open_request(bytes(bad), now=1000.0)
    _, server = keys.open_request(sealed, now=1000.0)
    response = bytearray(server.seal_response(ANSWER))
    response[40] ^= 0x80
    with pytest.raises(IntegrityError):
        client.open_response(bytes(response))


def test_short_messages_rejected(keys: p.ServerKeys) -> None:
    sealed, client = p.seal_request(keys.current, PROMPT)
    for size in (0, 1, 7, 38, 39 + 15):
        with pytest.raises(IntegrityError):
            keys.open_request(sealed[:size], now=1000.0)
    for size in (0, 31, 32 + 15):
        with pytest.raises(IntegrityError):
            client.open_response(bytes(size))


def test_chunk_reorder_drop_duplicate_append_rejected(keys: p.ServerKeys) -> None:
    wire, client = _stream_response(keys, [b"one", b"two", b"three"])
    head, frames, final = _frames(wire, 32)
    assert head + b"".join(frames) + b"\x00" + final == wire
    attacks = {
        "reorder": head + frames[1] + frames[0] + frames[2] + b"\x00" + final,
        "drop middle": head + frames[0] + frames[2] + b"\x00" + final,
        "duplicate": head + frames[0] + frames[0] + frames[1] + frames[2] + b"\x00" + final,
        "append after final": wire + b"\x00",
        "append chunk after final": wire + frames[0],
    }
    for name, forged in attacks.items():
        reader = client.response_stream()
        with pytest.raises(IntegrityError):
            reader.feed(forged)
            reader.finish()
        assert name  # every attack above must raise


def test_drop_final_chunk_is_truncation(keys: p.ServerKeys) -> None:
    wire, client = _stream_response(keys, [b"one", b"two"])
    head, frames, _ = _frames(wire, 32)
    reader = client.response_stream()
    assert reader.feed(head + b"".join(frames)) == b"onetwo"  # authentic so far...
    with pytest.raises(IntegrityError, match="truncated"):
        reader.finish()  # ...but never complete


def test_final_indicator_on_a_non_final_chunk_rejected(keys: p.ServerKeys) -> None:
    wire, client = _stream_response(keys, [b"one", b"two"])
    head, frames, _ = _frames(wire, 32)
    reader = client.response_stream()
    reader.feed(head + frames[0] + b"\x00" + frames[1][1:])  # frames[1] relabelled final
    with pytest.raises(IntegrityError):
        reader.finish()


def test_reader_stays_failed(keys: p.ServerKeys) -> None:
    wire, client = _stream_response(keys, [b"one"])
    head, frames, _ = _frames(wire, 32)
    reader = client.response_stream()
    with pytest.raises(IntegrityError):
        reader.feed(head + frames[0][:-1] + b"\xff")
    with pytest.raises(IntegrityError):
        reader.feed(b"")
    with pytest.raises(IntegrityError):
        reader.finish()
    ok = client.response_stream()
    assert ok.feed(wire) + ok.finish() == b"one"
    with pytest.raises(IntegrityError):
        ok.finish()


def test_oversized_and_undersized_chunk_lengths_rejected_early(keys: p.ServerKeys) -> None:
    _, client = p.seal_request(keys.current, PROMPT)
    for length in (1, 15, p.MAX_CHUNK_SIZE + 17, (1 << 62) - 1):
        reader = client.response_stream()
        with pytest.raises(IntegrityError):
            reader.feed(bytes(32) + p._varint(length))
    reader = client.response_stream()
    with pytest.raises(IntegrityError, match="oversized"):
        reader.feed(bytes(32) + b"\x00" + bytes(p.MAX_CHUNK_SIZE + 17))


def test_response_cannot_be_opened_with_another_requests_context(keys: p.ServerKeys) -> None:
    sealed_a, client_a = p.seal_request(keys.current, b"a")
    _, client_b = p.seal_request(keys.current, b"b")
    _, server_a = keys.open_request(sealed_a, now=1000.0)
    response_a = server_a.seal_response(ANSWER)
    with pytest.raises(IntegrityError):
        client_b.open_response(response_a)
    assert client_a.open_response(response_a) == ANSWER


def test_single_and_streamed_responses_are_not_interchangeable(keys: p.ServerKeys) -> None:
    sealed, client = p.seal_request(keys.current, PROMPT)
    _, server = keys.open_request(sealed, now=1000.0)
    single = server.seal_response(ANSWER)
    reader = client.response_stream()
    with pytest.raises(IntegrityError):
        reader.feed(single[:32] + b"\x00" + single[32:])
        reader.finish()
    wire, client2 = _stream_response(keys, [])
    with pytest.raises(IntegrityError):
        client2.open_response(wire[:32] + wire[33:])


def test_errors_carry_no_plaintext(keys: p.ServerKeys) -> None:
    sealed, client = p.seal_request(keys.current, PROMPT)
    _, server = keys.open_request(sealed, now=1000.0)
    response = bytearray(server.seal_response(ANSWER))
    response[-1] ^= 1
    with pytest.raises(IntegrityError) as caught:
        client.open_response(bytes(response))
    text = caught.value.diagnostics()
    assert "answer" not in text and "secret" not in text and response.hex()[:16] not in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# -- keys: rotation, grace, restart ------------------------------------------------------------


def test_unknown_key_id_tells_the_client_to_reattest(keys: p.ServerKeys) -> None:
    other = p.ServerKeys._from_private_key(  # e.g. the server restarted
        hpke.generate_private_key(), key_id=(keys.current.key_id + 1) % 256, now=0.0)
    sealed, _ = p.seal_request(other.current, PROMPT)
    with pytest.raises(p.StaleKeyError) as caught:
        keys.open_request(sealed, now=1000.0)
    assert isinstance(caught.value, AttestationError)
    assert caught.value.hint is not None and "/v1/attestation" in caught.value.hint
    assert f"key id {other.current.key_id}" in str(caught.value)


def test_a_reused_key_id_under_another_key_fails_and_says_reattest(keys: p.ServerKeys) -> None:
    """A restart can draw the same 8-bit key id (1 in 256): the request fails, never opens."""
    other = p.ServerKeys._from_private_key(hpke.generate_private_key(),
                                           key_id=keys.current.key_id, now=0.0)
    sealed, _ = p.seal_request(other.current, PROMPT)
    with pytest.raises(IntegrityError) as caught:
        keys.open_request(sealed, now=1000.0)
    assert not isinstance(caught.value, p.ReplayError)
    assert caught.value.hint is not None and "/v1/attestation" in caught.value.hint


def test_rotation_keeps_the_previous_key_for_the_grace_window(keys: p.ServerKeys) -> None:
    old = keys.current
    sealed, client = p.seal_request(old, PROMPT)
    new = keys.rotate(now=1010.0)
    assert new.key_id == (old.key_id + 1) % 256 and new.public_key != old.public_key
    assert keys.key_configs(now=1010.0) == (new, old)
    request, server = keys.open_request(sealed, now=1069.9)  # still inside 60 s grace
    assert request == PROMPT
    assert client.open_response(server.seal_response(b"ok")) == b"ok"
    assert keys.key_configs(now=1070.0) == (new,)
    with pytest.raises(p.StaleKeyError, match=f"key id {old.key_id}"):
        keys.open_request(sealed, now=1070.0)
    fresh, _ = p.seal_request(new, PROMPT)
    assert keys.open_request(fresh, now=5000.0)[0] == PROMPT


def test_two_rotations_drop_the_oldest_key(keys: p.ServerKeys) -> None:
    first = keys.current
    sealed, _ = p.seal_request(first, PROMPT)
    keys.rotate(now=1001.0)
    keys.rotate(now=1002.0)
    with pytest.raises(p.StaleKeyError):
        keys.open_request(sealed, now=1003.0)


def test_rotation_due() -> None:
    keys = p.ServerKeys(now=0.0, rotate_after_seconds=3600.0)
    assert not keys.rotation_due(now=3599.0)
    assert keys.rotation_due(now=3600.0)
    keys.rotate(now=3600.0)
    assert not keys.rotation_due(now=3601.0)
    assert not p.ServerKeys(now=0.0).rotation_due(now=1e12)


def test_key_lifetimes_are_validated() -> None:
    with pytest.raises(UsageError):
        p.ServerKeys(now=0.0, grace_seconds=-1.0)
    with pytest.raises(UsageError):
        p.ServerKeys(now=0.0, rotate_after_seconds=0.0)


def test_repr_shows_no_key_material(keys: p.ServerKeys) -> None:
    assert repr(keys) == f"ServerKeys(current key id {keys.current.key_id})"


def test_chunked_request_with_stale_key(keys: p.ServerKeys) -> None:
    other = p.ServerKeys(now=0.0)
    if other.current.key_id == keys.current.key_id:
        other.rotate(now=0.0)
    sealer = p.ChunkedRequestSealer(other.current)
    opener = keys.open_chunked_request(now=1000.0)
    with pytest.raises(p.StaleKeyError):
        opener.feed(sealer.seal(PROMPT))


# -- key configuration -------------------------------------------------------------------------


configs = st.builds(
    p.KeyConfig,
    key_id=st.integers(0, 255),
    kem_id=st.just(0x0020),
    public_key=st.binary(min_size=32, max_size=32),
    suites=st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)), min_size=1,
                    max_size=20, unique=True).map(tuple),
)


@given(config=configs)
def test_key_config_round_trip(config: p.KeyConfig) -> None:
    encoded = config.encode()
    assert len(encoded) == 1 + 2 + 32 + 2 + 4 * len(config.suites)
    assert p.KeyConfig.decode(encoded) == config


@given(many=st.lists(configs, min_size=1, max_size=4))
def test_key_config_list_round_trip(many: list[p.KeyConfig]) -> None:
    assert p.decode_key_configs(p.encode_key_configs(many)) == tuple(many)


def test_key_config_layout(keys: p.ServerKeys) -> None:
    encoded = keys.current.encode()
    assert encoded[0] == keys.current.key_id
    assert encoded[1:3] == b"\x00\x20"
    assert encoded[3:35] == keys.current.public_key
    assert encoded[35:] == b"\x00\x04\x00\x01\x00\x02"


@pytest.mark.parametrize("mutate", [
    lambda b: b + b"\x00",                       # trailing byte
    lambda b: b[:-1],                             # short
    lambda b: b[:1] + b"\x00\x21" + b[3:],        # another KEM (X448)
    lambda b: b[:35] + b"\x00\x03" + b[37:-1],    # length not a multiple of 4
    lambda b: b[:35] + b"\x00\x00",               # no suites
    lambda b: b[:35] + b"\x00\x08" + b[37:] + b[37:],  # duplicate suite
    lambda b: b"",
])
def test_key_config_decode_is_strict(keys: p.ServerKeys, mutate: Any) -> None:
    with pytest.raises(p.KeyConfigError):
        p.KeyConfig.decode(mutate(keys.current.encode()))


def test_key_config_list_skips_other_kems_and_rejects_bad_framing(keys: p.ServerKeys) -> None:
    x448 = b"\x07\x00\x21" + bytes(56) + b"\x00\x04\x00\x03\x00\x02"
    ours = keys.current.encode()
    data = struct.pack(">H", len(x448)) + x448 + struct.pack(">H", len(ours)) + ours
    assert p.decode_key_configs(data) == (keys.current,)
    for bad in (b"", data[:-1], data + b"\x00", struct.pack(">H", len(x448)) + x448):
        with pytest.raises(p.KeyConfigError):
            p.decode_key_configs(bad)


def test_select_key_config_never_falls_back() -> None:
    aes128_only = p.KeyConfig(1, 0x20, bytes(range(32)), ((1, 1), (1, 3)))
    with pytest.raises(p.KeyConfigError, match="no cipher suite"):
        p.select_key_config([aes128_only])
    with pytest.raises(p.KeyConfigError):
        p.seal_request(aes128_only, PROMPT)
    good = p.KeyConfig(2, 0x20, bytes(range(32)), ((1, 1), (1, 2)))
    assert p.select_key_config([aes128_only, good]) is good


@pytest.mark.parametrize("public_key", [bytes(32), (1).to_bytes(32, "little")])
def test_low_order_server_key_rejected(public_key: bytes) -> None:
    with pytest.raises(p.KeyConfigError, match="invalid"):
        p.seal_request(p.KeyConfig(1, 0x20, public_key, ((1, 2),)), PROMPT)


def test_key_config_constructor_validates() -> None:
    for kwargs in ({"key_id": 256}, {"kem_id": 0x21}, {"public_key": bytes(31)},
                   {"suites": ()}, {"suites": ((1, 2), (1, 2))}, {"suites": ((1, 1 << 16),)}):
        base: dict[str, Any] = {"key_id": 1, "kem_id": 0x20, "public_key": bytes(32),
                                "suites": ((1, 2),)}
        with pytest.raises(p.KeyConfigError):
            p.KeyConfig(**(base | kwargs))


# -- API misuse fails loudly -------------------------------------------------------------------


def test_a_request_is_answered_exactly_once(keys: p.ServerKeys) -> None:
    sealed, _ = p.seal_request(keys.current, PROMPT)
    _, server = keys.open_request(sealed, now=1000.0)
    server.seal_response(b"first")
    with pytest.raises(UsageError):
        server.seal_response(b"second")
    with pytest.raises(UsageError):
        server.response_stream()


def test_no_sealing_after_the_final_chunk(keys: p.ServerKeys) -> None:
    sealer = p.ChunkedRequestSealer(keys.current)
    sealer.seal_final(b"done")
    with pytest.raises(UsageError):
        sealer.seal(b"more")
    with pytest.raises(UsageError):
        sealer.seal_final(b"more")


def test_chunk_size_bounds() -> None:
    keys = p.ServerKeys(now=0.0)
    for size in (0, p.MAX_CHUNK_SIZE + 1):
        with pytest.raises(UsageError):
            p.ChunkedRequestSealer(keys.current, max_chunk_size=size)
        with pytest.raises(UsageError):
            keys.open_chunked_request(now=0.0, max_chunk_size=size)


def test_stream_length_ceiling(keys: p.ServerKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    # The ceiling lives in (and is read from) the framing module, not the package facade.
    monkeypatch.setattr("sealtune.core.protocol._framing._MAX_STREAM_CHUNKS", 3)
    sealer = p.ChunkedRequestSealer(keys.current)
    sealer.seal(b"1" * 10)
    sealer.seal(b"2" * 10)
    sealer.seal(b"3" * 10)
    with pytest.raises(UsageError, match="too long"):
        sealer.seal(b"4")
    with pytest.raises(UsageError, match="finished"):  # and the stream stays closed
        sealer.seal_final(b"")


# -- varints -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "encoded"), [
    (0, "00"), (37, "25"), (63, "3f"), (64, "4040"), (15293, "7bbd"), (16383, "7fff"),
    (16384, "80004000"), (494878333, "9d7f3e7d"), ((1 << 30) - 1, "bfffffff"),
    (151288809941952652, "c2197c5eff14e88c"),
])
def test_varint_rfc9000_examples(value: int, encoded: str) -> None:
    assert p._varint(value).hex() == encoded
    assert p._read_varint(bytearray.fromhex(encoded + "ff")) == (value, len(encoded) // 2)


def test_varint_accepts_non_minimal_and_reports_incomplete() -> None:
    assert p._read_varint(bytearray.fromhex("4025")) == (37, 2)  # RFC 9000 §A.1 example
    assert p._read_varint(bytearray()) is None
    assert p._read_varint(bytearray.fromhex("80")) is None


# -- no (key, nonce) pair is ever used twice ---------------------------------------------------


class RecordingAESGCM:
    """Wraps the real AESGCM and records every (key, nonce) that encrypts."""

    log: ClassVar[list[tuple[bytes, bytes]]] = []

    def __init__(self, key: bytes) -> None:
        self._key = bytes(key)
        self._real = AESGCM(key)

    def encrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        self.log.append((self._key, bytes(nonce)))
        return self._real.encrypt(nonce, data, aad)

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        return self._real.decrypt(nonce, data, aad)


def test_no_key_nonce_pair_ever_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hpke, "AESGCM", RecordingAESGCM)
    RecordingAESGCM.log = []
    keys = p.ServerKeys(now=0.0, grace_seconds=1e9)
    expected = 0
    for i in range(150):
        if i % 50 == 49:
            keys.rotate(now=float(i))
        # single request, single response: 2 encryptions
        sealed, client = p.seal_request(keys.current, b"same prompt")
        _, server = keys.open_request(sealed, now=float(i))
        client.open_response(server.seal_response(b"same answer"))
        # streamed request (5 chunks) and streamed response (8 chunks), same plaintexts
        sealer = p.ChunkedRequestSealer(keys.current, max_chunk_size=4)
        opener = keys.open_chunked_request(now=float(i), max_chunk_size=4)
        opener.feed(sealer.seal(b"0123456789abcdef") + sealer.seal_final(b"xyz"))
        _, server = opener.finish()
        stream = server.response_stream(max_chunk_size=4)
        wire = b"".join(stream.seal(b"tok") for _ in range(7)) + stream.seal_final(b"")
        reader = sealer.context.response_stream(max_chunk_size=4)
        reader.feed(wire)
        reader.finish()
        expected += 2 + 5 + 8
    log = RecordingAESGCM.log
    assert len(log) == expected  # the recorder saw every encryption...
    assert len(set(log)) == len(log)  # ...and no (key, nonce) pair twice
    assert len({key for key, _ in log}) == 150 * 4  # a fresh key per request and direction


# -- RequestSealer: the next request's context set up ahead -------------------------------------


def test_request_sealer_round_trips_with_and_without_a_prepared_context(
        keys: p.ServerKeys) -> None:
    sealer = p.RequestSealer(keys.current)
    cold, cold_ctx = sealer.seal(b"first")  # nothing prepared: set up on the spot
    sealer.prepare()
    sealer.prepare()  # idempotent: one context waits at most
    warm, warm_ctx = sealer.seal(b"second")
    for data, ctx, text in ((cold, cold_ctx, b"first"), (warm, warm_ctx, b"second")):
        plaintext, server = keys.open_request(data, now=1000.0)
        assert plaintext == text
        assert ctx.open_response(server.seal_response(b"re: " + text)) == b"re: " + text
    # The same wire format as seal_request: header, enc, ciphertext of the same size.
    reference, _ = p.seal_request(keys.current, b"second")
    assert warm[:p.HEADER_SIZE] == reference[:p.HEADER_SIZE]
    assert len(warm) == len(reference)


def test_request_sealer_never_hands_one_context_to_two_requests(keys: p.ServerKeys) -> None:
    """Threads sealing while others prepare: every request has its own enc and opens once."""
    import threading

    sealer = p.RequestSealer(keys.current)
    sealed: list[bytes] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(50):
            sealer.prepare()
            data, _ = sealer.seal(b"x")
            with lock:
                sealed.append(data)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    encs = {data[p.HEADER_SIZE:p.HEADER_SIZE + hpke.N_ENC] for data in sealed}
    assert len(sealed) == len(encs) == 400
    for data in sealed:  # the server's replay cache would refuse any repeat
        assert keys.open_request(data, now=1000.0)[0] == b"x"


def test_request_sealer_refuses_a_config_without_the_suite(keys: p.ServerKeys) -> None:
    other = p.KeyConfig(keys.current.key_id, keys.current.kem_id, keys.current.public_key,
                        ((0x0001, 0x0001),))
    with pytest.raises(p.KeyConfigError):
        p.RequestSealer(other)
