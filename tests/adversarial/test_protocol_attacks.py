"""What a network attacker (or a logging, TLS-terminating proxy) can try on e2e-v1.

The attacker sees and rewrites every byte between client and server. Each
test plays one attack end to end with real keys and asserts the only
outcomes the protocol allows: the attack fails with an ``IntegrityError``
(or ``StaleKeyError`` for a key id that points nowhere), and no forged or
incomplete plaintext is ever handed over as a complete message.
"""

from __future__ import annotations

import pytest

from sealtune.core import protocol as p
from sealtune.errors import IntegrityError, SealtuneError

NOW = 50.0
PROMPT = b"diagnosis for patient 110101199003077777, please"


@pytest.fixture
def keys() -> p.ServerKeys:
    return p.ServerKeys(now=NOW)


def _split(stream: bytes, prefix: int) -> tuple[bytes, list[bytes], bytes]:
    """(prefix, non-final frames with their length prefix, final frame with its 0x00)."""
    head, rest, frames = stream[:prefix], bytearray(stream[prefix:]), list[bytes]()
    while True:
        parsed = p._read_varint(rest)
        assert parsed is not None
        length, used = parsed
        if length == 0:
            return head, frames, bytes(rest)
        frames.append(bytes(rest[: used + length]))
        del rest[: used + length]


def _exchange(keys: p.ServerKeys, pieces: list[bytes]) -> tuple[bytes, p.ClientContext]:
    sealed, client = p.seal_request(keys.current, PROMPT)
    _, server = keys.open_request(sealed, now=NOW)
    stream = server.response_stream()
    return b"".join(stream.seal(x) for x in pieces) + stream.seal_final(b"."), client


def _complete(client: p.ClientContext, wire: bytes) -> bytes:
    """Read a whole response stream; raises unless it is authentic and complete."""
    reader = client.response_stream()
    return reader.feed(wire) + reader.finish()


def test_replay_a_response_to_a_different_request(keys: p.ServerKeys) -> None:
    sealed_a, client_a = p.seal_request(keys.current, b"alice's prompt")
    sealed_b, client_b = p.seal_request(keys.current, b"bob's prompt")
    _, server_a = keys.open_request(sealed_a, now=NOW)
    _, server_b = keys.open_request(sealed_b, now=NOW)
    response_a = server_a.seal_response(b"alice's answer")
    with pytest.raises(IntegrityError):
        client_b.open_response(response_a)
    stream_a, _ = _exchange(keys, [b"alice ", b"streamed"])
    with pytest.raises(IntegrityError):
        _complete(client_b, stream_a)
    # ...and each still gets their own answer.
    assert client_a.open_response(response_a) == b"alice's answer"
    assert client_b.open_response(server_b.seal_response(b"bob's answer")) == b"bob's answer"


def test_swap_chunks_between_two_streams(keys: p.ServerKeys) -> None:
    wire_a, client_a = _exchange(keys, [b"a0", b"a1", b"a2"])
    wire_b, client_b = _exchange(keys, [b"b0", b"b1", b"b2"])
    head_a, frames_a, final_a = _split(wire_a, 32)
    head_b, frames_b, final_b = _split(wire_b, 32)
    forgeries = [
        head_a + frames_a[0] + frames_b[1] + frames_a[2] + final_a,   # one chunk from b
        head_a + frames_a[0] + frames_a[1] + frames_a[2] + final_b,   # b's final chunk
        head_b + b"".join(frames_a) + final_a,                        # b's nonce, a's chunks
        head_a + frames_b[0] + frames_a[1] + frames_a[2] + final_a,   # same position, b's chunk
    ]
    for forged in forgeries:
        with pytest.raises(IntegrityError):
            _complete(client_a, forged)
    assert _complete(client_a, wire_a) == b"a0a1a2."
    assert _complete(client_b, wire_b) == b"b0b1b2."


def test_truncate_at_every_chunk_boundary_and_every_byte(keys: p.ServerKeys) -> None:
    wire, client = _exchange(keys, [b"x" * n for n in (1, 5, 30, 2)])
    head, frames, final = _split(wire, 32)
    boundaries = {len(head) + sum(len(f) for f in frames[:i]) for i in range(len(frames) + 1)}
    boundaries.add(len(wire) - len(final) + 1)  # after the 0x00 final indicator
    for cut in sorted(boundaries | set(range(len(wire)))):
        reader = client.response_stream()
        with pytest.raises(IntegrityError):
            reader.feed(wire[:cut])
            reader.finish()
    assert _complete(client, wire) == b"x" * 38 + b"."


def test_truncated_chunked_request_never_completes(keys: p.ServerKeys) -> None:
    sealer = p.ChunkedRequestSealer(keys.current, max_chunk_size=8)
    wire = sealer.seal(PROMPT) + sealer.seal_final(b"!")
    for cut in range(len(wire)):
        opener = keys.open_chunked_request(now=NOW, max_chunk_size=8)
        with pytest.raises(IntegrityError):
            opener.feed(wire[:cut])
            opener.finish()
    # The cuts above authenticated its first chunk: the server remembers the request.
    opener = keys.open_chunked_request(now=NOW, max_chunk_size=8)
    with pytest.raises(p.ReplayError):
        opener.feed(wire)
    sealer = p.ChunkedRequestSealer(keys.current, max_chunk_size=8)
    wire = sealer.seal(PROMPT) + sealer.seal_final(b"!")
    opener = keys.open_chunked_request(now=NOW, max_chunk_size=8)
    got = opener.feed(wire)
    assert got + opener.finish()[0] == PROMPT + b"!"


def test_flip_each_header_byte(keys: p.ServerKeys) -> None:
    sealed, _ = p.seal_request(keys.current, PROMPT)
    header_and_enc = p.HEADER_SIZE + 32
    for index in range(header_and_enc):
        for mask in (0x01, 0x80, 0xFF):
            forged = bytearray(sealed)
            forged[index] ^= mask
            with pytest.raises((IntegrityError, p.StaleKeyError)):
                keys.open_request(bytes(forged), now=NOW)
    assert keys.open_request(sealed, now=NOW)[0] == PROMPT


def test_flip_every_byte_of_a_request_and_a_response_stream(keys: p.ServerKeys) -> None:
    sealed, _ = p.seal_request(keys.current, PROMPT)
    for index in range(len(sealed)):
        forged = bytearray(sealed)
        forged[index] ^= 0x04
        with pytest.raises(SealtuneError):
            keys.open_request(bytes(forged), now=NOW)
    wire, client = _exchange(keys, [b"alpha", b"beta"])
    for index in range(len(wire)):
        forged = bytearray(wire)
        forged[index] ^= 0x04
        with pytest.raises(IntegrityError):
            _complete(client, bytes(forged))


def test_relabel_a_non_final_chunk_as_final(keys: p.ServerKeys) -> None:
    wire, client = _exchange(keys, [b"all you get", b"is this"])
    head, frames, _ = _split(wire, 32)
    _, used = p._read_varint(bytearray(frames[0])) or (0, 0)
    forged = head + b"\x00" + frames[0][used:]  # drop the rest, claim frame 0 was the end
    with pytest.raises(IntegrityError):
        _complete(client, forged)


def test_downgrade_of_the_suite_in_the_header_is_refused(keys: p.ServerKeys) -> None:
    sealed, _ = p.seal_request(keys.current, PROMPT)
    for aead_id in (b"\x00\x01", b"\x00\x03", b"\xff\xff"):  # AES-128-GCM, ChaCha20, export-only
        forged = sealed[:5] + aead_id + sealed[7:]
        with pytest.raises(IntegrityError, match="cipher suite"):
            keys.open_request(forged, now=NOW)


def test_request_chunks_cannot_be_spliced_into_a_response(keys: p.ServerKeys) -> None:
    sealer = p.ChunkedRequestSealer(keys.current)
    request_wire = sealer.seal(b"some request text") + sealer.seal_final(b"")
    opener = keys.open_chunked_request(now=NOW)
    opener.feed(request_wire)
    _, server = opener.finish()
    response_wire = server.response_stream().seal_final(b"answer")
    _, req_frames, req_final = _split(request_wire, p.HEADER_SIZE + 32)
    forged = response_wire[:32] + req_frames[0] + req_final
    with pytest.raises(IntegrityError):
        _complete(sealer.context, forged)


def test_request_to_an_old_key_after_the_grace_window(keys: p.ServerKeys) -> None:
    old = keys.current
    keys.rotate(now=NOW)
    sealed, _ = p.seal_request(old, PROMPT)
    with pytest.raises(p.StaleKeyError):
        keys.open_request(sealed, now=NOW + p.DEFAULT_GRACE_SECONDS)


def test_replayed_request_is_refused_for_the_life_of_its_key(keys: p.ServerKeys) -> None:
    """A captured request sent again is refused, also after a rotation (grace window)."""
    sealed, victim = p.seal_request(keys.current, PROMPT)
    plaintext, first = keys.open_request(sealed, now=NOW)
    assert plaintext == PROMPT
    with pytest.raises(p.ReplayError) as info:
        keys.open_request(sealed, now=NOW + 1)
    assert isinstance(info.value, IntegrityError)
    assert PROMPT.decode() not in str(info.value) + str(info.value.hint)
    keys.rotate(now=NOW + 2)  # the old key is still live in its grace window: still refused
    with pytest.raises(p.ReplayError):
        keys.open_request(sealed, now=NOW + 3)
    with pytest.raises(p.StaleKeyError):  # and once the key is gone, it is stale
        keys.open_request(sealed, now=NOW + 3 + p.DEFAULT_GRACE_SECONDS)
    assert victim.open_response(first.seal_response(b"answer")) == b"answer"


def test_a_replay_with_a_flipped_ciphertext_byte_is_an_integrity_error_not_remembered(
        keys: p.ServerKeys) -> None:
    """Only requests that authenticate are remembered: forgeries cannot poison the cache."""
    sealed, _ = p.seal_request(keys.current, PROMPT)
    forged = bytearray(sealed)
    forged[-1] ^= 1
    with pytest.raises(IntegrityError) as info:
        keys.open_request(bytes(forged), now=NOW)
    assert not isinstance(info.value, p.ReplayError)
    assert keys.open_request(sealed, now=NOW)[0] == PROMPT  # the real one still opens once
    with pytest.raises(p.ReplayError):
        keys.open_request(sealed, now=NOW)


def test_replayed_chunked_request_is_refused(keys: p.ServerKeys) -> None:
    sealer = p.ChunkedRequestSealer(keys.current, max_chunk_size=8)
    wire = sealer.seal(PROMPT) + sealer.seal_final(b"!")
    opener = keys.open_chunked_request(now=NOW, max_chunk_size=8)
    assert opener.feed(wire) + opener.finish()[0] == PROMPT + b"!"
    again = keys.open_chunked_request(now=NOW, max_chunk_size=8)
    with pytest.raises(p.ReplayError):
        again.feed(wire)


def test_the_replay_cache_is_bounded_and_forces_rotation() -> None:
    keys = p.ServerKeys(now=NOW, replay_capacity=3)
    for _ in range(3):
        keys.open_request(p.seal_request(keys.current, PROMPT)[0], now=NOW)
    assert keys.rotation_due(now=NOW)
    full = keys.current
    with pytest.raises(p.StaleKeyError):  # a full key opens nothing more: re-attest
        keys.open_request(p.seal_request(full, PROMPT)[0], now=NOW)
    keys.rotate(now=NOW)
    assert not keys.rotation_due(now=NOW)
    assert keys.open_request(p.seal_request(keys.current, PROMPT)[0], now=NOW)[0] == PROMPT
    with pytest.raises(p.UsageError):
        p.ServerKeys(now=NOW, replay_capacity=0)


def test_concurrent_replays_open_exactly_once(keys: p.ServerKeys) -> None:
    """Eight threads race the same sealed request: exactly one opens it."""
    import threading

    sealed, _ = p.seal_request(keys.current, PROMPT)
    results: list[str] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            keys.open_request(sealed, now=NOW)
            results.append("opened")
        except p.ReplayError:
            results.append("replay")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["opened"] + ["replay"] * 7
