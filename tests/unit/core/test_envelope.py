"""Unit tests of the sealed-file format v1 (sealtune.core.envelope).

Real cryptography throughout: the KEK in these tests is a real AES-256-GCM
wrap (a tiny in-test keyring), never a mock.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import struct
import tracemalloc
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from sealtune.core import envelope as env
from sealtune.core.wrapped_key import WrappedKey
from sealtune.errors import IntegrityError, KeyDestroyedError, KeyNotFoundError, UsageError

SUITES = [env.AES_256_GCM, env.SM4_GCM]


class Kek:
    """A real AES-256-GCM key-encryption key (what a keyring backend does)."""

    def __init__(self, uri: str = "test:kek") -> None:
        self.uri = uri
        self.key = os.urandom(32)

    def wrap(self, data_key: bytes, aad: bytes) -> WrappedKey:
        nonce = os.urandom(12)
        return WrappedKey(self.uri, 1, nonce + AESGCM(self.key).encrypt(nonce, data_key, aad))

    def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes | None:
        if wrapped.kek_uri != self.uri:
            return None
        try:
            return AESGCM(self.key).decrypt(wrapped.blob[:12], wrapped.blob[12:], aad)
        except InvalidTag:
            raise IntegrityError("wrapped key failed") from None


def seal(
    data: bytes,
    *,
    suite: env.Suite = env.AES_256_GCM,
    keks: tuple[Kek, ...] = (),
    segment_size: int = env.SEGMENT_BYTES,
) -> tuple[bytes, bytes, tuple[Kek, ...]]:
    """Seal ``data``; return (file bytes, data key, keks)."""
    keks = keks or (Kek(),)
    data_key = env.new_data_key(suite)
    prefix = env.make_prefix(data_key, suite=suite, segment_size=segment_size)
    wrapped = [k.wrap(data_key, env.wrap_aad(prefix)) for k in keks]
    out = io.BytesIO()
    info = env.seal_stream(io.BytesIO(data), out, prefix=prefix, data_key=data_key, wrapped=wrapped)
    assert info.sealed_size == len(out.getvalue())
    assert info.plaintext_size == len(data)
    return out.getvalue(), data_key, keks


def unseal(blob: bytes, kek: Kek) -> tuple[bytes, env.OpenInfo]:
    out = io.BytesIO()
    info = env.open_stream(io.BytesIO(blob), out, unwrap=kek.unwrap)
    return out.getvalue(), info


def boundary_sizes(suite: env.Suite, segment_size: int) -> list[int]:
    stream = suite.stream(segment_size)
    first, later = stream.first_plaintext_size, stream.plaintext_segment_size
    sizes = {0, 1, 2}
    for k in range(3):
        edge = first + k * later
        sizes |= {edge - 1, edge, edge + 1}
    return sorted(sizes)


class ShortReads(io.RawIOBase):
    """A raw stream that returns at most ``step`` bytes per read."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._step, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


# -- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.algorithm)
def test_round_trip_at_real_segment_boundaries(suite: env.Suite) -> None:
    kek = Kek()
    for size in boundary_sizes(suite, env.SEGMENT_BYTES):
        data = os.urandom(size)
        blob, _, _ = seal(data, suite=suite, keks=(kek,))
        stream = suite.stream()
        assert len(blob) == env.PREFIX_BYTES + 2 * env.SLOT_BYTES + stream.ciphertext_size(size)
        plain, info = unseal(blob, kek)
        assert plain == data, size
        assert info.plaintext_size == size
        assert info.warning is None


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.algorithm)
def test_exact_fill_ends_with_a_full_final_segment(suite: env.Suite) -> None:
    stream = suite.stream(env.SEGMENT_BYTES)
    size = stream.first_plaintext_size + stream.plaintext_segment_size
    blob, _, (kek,) = seal(bytes(size), suite=suite)
    payload = blob[env.PREFIX_BYTES + 2 * env.SLOT_BYTES :]
    assert len(payload) == 2 * env.SEGMENT_BYTES  # no empty trailing segment
    assert unseal(blob, kek)[0] == bytes(size)


@settings(max_examples=60, deadline=None)
@given(
    suite=st.sampled_from(SUITES),
    segment_size=st.integers(min_value=64, max_value=160),
    data=st.binary(max_size=1200),
    step=st.integers(min_value=1, max_value=300),
)
def test_round_trip_random_sizes_and_short_reads(
    suite: env.Suite, segment_size: int, data: bytes, step: int
) -> None:
    blob, _, (kek,) = seal(data, suite=suite, segment_size=segment_size)
    out = io.BytesIO()
    info = env.open_stream(ShortReads(blob, step), out, unwrap=kek.unwrap)  # type: ignore[arg-type]
    assert out.getvalue() == data
    assert info.prefix.segment_size == segment_size
    stream = suite.stream(segment_size)
    payload = len(blob) - info.prefix.payload_offset
    assert payload == stream.ciphertext_size(len(data))
    assert stream.plaintext_size(payload) == len(data)


def test_sealing_reads_through_short_reads() -> None:
    data = os.urandom(3000)
    kek = Kek()
    data_key = env.new_data_key(env.AES_256_GCM)
    prefix = env.make_prefix(data_key, suite=env.AES_256_GCM, segment_size=100)
    out = io.BytesIO()
    env.seal_stream(
        ShortReads(data, 7),  # type: ignore[arg-type]
        out,
        prefix=prefix,
        data_key=data_key,
        wrapped=[kek.wrap(data_key, env.wrap_aad(prefix))],
    )
    assert unseal(out.getvalue(), kek)[0] == data


def test_two_seals_of_the_same_data_differ() -> None:
    kek = Kek()
    a, _, _ = seal(b"same", keks=(kek,))
    b, _, _ = seal(b"same", keks=(kek,))
    assert a != b


# -- the byte layout the spec promises -------------------------------------------------


def test_prefix_layout_matches_the_spec() -> None:
    blob, data_key, _ = seal(b"x")
    p = blob[:68]
    assert p[:8] == b"SEALTUNE"
    assert p[8] == 1 and p[9] == 1
    assert p[10:12] == b"\0\0"
    assert struct.unpack(">II", p[12:20]) == (1048576, 2048)
    file_id = p[20:36]
    expected = HKDF(hashes.SHA256(), 32, salt=file_id, info=b"sealtune/v1/commit" + p[:36]).derive(
        data_key
    )
    assert p[36:68] == expected
    assert env.parse_prefix(p).encode() == p


def test_slot_layout_and_tag_match_the_spec() -> None:
    kek_a, kek_b = Kek("test:a"), Kek("pkcs11:b")
    blob, data_key, _ = seal(b"x", keks=(kek_a, kek_b))
    prefix, slot_a, slot_b = blob[:68], blob[68 : 68 + 2048], blob[68 + 2048 : 68 + 4096]
    assert slot_b == bytes(2048)
    generation, count = struct.unpack(">QH", slot_a[:10])
    assert (generation, count) == (1, 2)
    ulen = struct.unpack(">H", slot_a[10:12])[0]
    assert slot_a[12 : 12 + ulen] == b"test:a"
    mac_key = HKDF(hashes.SHA256(), 32, salt=prefix[20:36], info=b"sealtune/v1/slot-mac").derive(
        data_key
    )
    tag = hmac.new(mac_key, prefix + slot_a[:-32], hashlib.sha256).digest()
    assert slot_a[-32:] == tag
    parsed = env.parse_slot(slot_a)
    assert parsed is not None
    assert [e.kek_uri for e in parsed.entries] == ["test:a", "pkcs11:b"]
    # The wrap is bound to this file: AAD = label || SHA-256(prefix).
    aad = b"sealtune/v1/wrap" + hashlib.sha256(prefix).digest()
    assert kek_b.unwrap(parsed.entries[1], aad) == data_key


def test_payload_uses_the_prefix_as_associated_data() -> None:
    blob, data_key, _ = seal(b"hello")
    stream = env.AES_256_GCM.stream()
    payload = io.BytesIO(blob[env.PREFIX_BYTES + 2 * env.SLOT_BYTES :])
    out = io.BytesIO()
    stream.decrypt(payload, out, key=data_key, aad=blob[:68])
    assert out.getvalue() == b"hello"
    with pytest.raises(InvalidTag):
        payload.seek(0)
        stream.decrypt(payload, io.BytesIO(), key=data_key, aad=b"")


# -- header rules ----------------------------------------------------------------------


def test_entries_that_do_not_fit_are_refused_with_the_count() -> None:
    data_key = env.new_data_key(env.AES_256_GCM)
    prefix = env.make_prefix(data_key, suite=env.AES_256_GCM, slot_size=256)
    entries = tuple(WrappedKey(f"local:k{i}", 1, bytes(60)) for i in range(4))
    with pytest.raises(UsageError, match="4 wrapped keys"):
        env.encode_slot(env.Slot(1, entries), prefix=prefix, data_key=data_key)
    with pytest.raises(UsageError):
        env.encode_slot(env.Slot(1, ()), prefix=prefix, data_key=data_key)


def test_prefix_ranges_are_enforced() -> None:
    key = env.new_data_key(env.AES_256_GCM)
    for kwargs in ({"slot_size": 10}, {"segment_size": 50}, {"segment_size": 1 << 30}):
        with pytest.raises(UsageError):
            env.make_prefix(key, suite=env.AES_256_GCM, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        env.make_prefix(bytes(16), suite=env.AES_256_GCM)
    with pytest.raises(UsageError):
        env.suite_for("rot13")


def test_a_key_not_committed_to_is_refused() -> None:
    data_key = env.new_data_key(env.AES_256_GCM)
    prefix = env.make_prefix(data_key, suite=env.AES_256_GCM)
    assert env.key_is_committed(prefix, data_key)
    assert not env.key_is_committed(prefix, os.urandom(32))
    with pytest.raises(UsageError):
        env.seal_stream(
            io.BytesIO(b""), io.BytesIO(), prefix=prefix, data_key=os.urandom(32), wrapped=[]
        )


def test_a_file_opens_with_any_of_its_keks() -> None:
    a, b = Kek("test:a"), Kek("test:b")
    blob, _, _ = seal(b"data", keks=(a, b))
    assert unseal(blob, a)[1].unwrapped_by.kek_uri == "test:a"
    assert unseal(blob, b)[1].unwrapped_by.kek_uri == "test:b"


def test_no_available_kek_names_the_keks_needed() -> None:
    blob, _, _ = seal(b"data", keks=(Kek("local:k9"),))
    with pytest.raises(KeyNotFoundError, match="local:k9"):
        unseal(blob, Kek("local:other"))


def test_backend_errors_surface_only_when_no_other_entry_works() -> None:
    a, b = Kek("test:a"), Kek("test:b")
    blob, _, _ = seal(b"data", keks=(a, b))

    def a_destroyed(wrapped: WrappedKey, aad: bytes) -> bytes | None:
        if wrapped.kek_uri == "test:a":
            raise KeyDestroyedError("key test:a was destroyed")
        return b.unwrap(wrapped, aad)

    out = io.BytesIO()
    assert env.open_stream(io.BytesIO(blob), out, unwrap=a_destroyed).unwrapped_by.kek_uri == (
        "test:b"
    )

    def only_a(wrapped: WrappedKey, aad: bytes) -> bytes | None:
        if wrapped.kek_uri == "test:a":
            raise KeyDestroyedError("key test:a was destroyed")
        return None

    with pytest.raises(KeyDestroyedError):
        env.open_stream(io.BytesIO(blob), io.BytesIO(), unwrap=only_a)


def test_a_callback_returning_a_wrong_key_is_an_integrity_failure() -> None:
    blob, _, _ = seal(b"data")
    with pytest.raises(IntegrityError):
        env.open_stream(io.BytesIO(blob), io.BytesIO(), unwrap=lambda w, aad: os.urandom(32))


# -- rewrap plan -----------------------------------------------------------------------


def apply(blob: bytes, writes: list[tuple[int, bytes]]) -> bytes:
    buf = bytearray(blob)
    for offset, data in writes:
        buf[offset : offset + len(data)] = data
    return bytes(buf)


def opened(blob: bytes, kek: Kek) -> env.OpenedHeader:
    return env.unlock_header(env.read_header(io.BytesIO(blob)), unwrap=kek.unwrap)


def test_rewrap_moves_to_the_other_slot_and_clears_the_old_one() -> None:
    old, new = Kek("test:old"), Kek("test:new")
    blob, data_key, _ = seal(b"payload" * 100, keks=(old,))
    header = opened(blob, old)
    writes = env.plan_rewrap(header, [new.wrap(data_key, env.wrap_aad(header.prefix))])
    assert [offset for offset, _ in writes] == [68 + 2048, 68]
    after = apply(blob, writes)
    assert after[68 : 68 + 2048] == bytes(2048)
    assert after[68 + 4096 :] == blob[68 + 4096 :]
    plain, info = unseal(after, new)
    assert plain == b"payload" * 100
    assert info.slot.generation == 2 and info.warning is None
    with pytest.raises(KeyNotFoundError):
        unseal(after, old)
    # and back again to slot A, generation 3
    writes = env.plan_rewrap(opened(after, new), [old.wrap(data_key, env.wrap_aad(header.prefix))])
    assert unseal(apply(after, writes), old)[1].slot.generation == 3


def test_crash_points_of_a_rewrap_all_leave_a_file_that_opens() -> None:
    kek = Kek()
    blob, data_key, _ = seal(b"secret", keks=(kek,))
    header = opened(blob, kek)
    (new_off, new_slot), (old_off, zeros) = env.plan_rewrap(
        header, [kek.wrap(data_key, env.wrap_aad(header.prefix))]
    )
    # Crash after the new slot is durable, before the old one is cleared.
    both = apply(blob, [(new_off, new_slot)])
    assert unseal(both, kek)[1].slot.generation == 2
    assert unseal(both, kek)[1].warning is None
    # Torn writes of the new slot: any prefix of it, on top of zeros.
    for cut in (1, 8, 9, 40, 1000, 2047):
        torn = apply(blob, [(new_off, new_slot[:cut])])
        plain, info = unseal(torn, kek)
        assert plain == b"secret"
        assert info.slot.generation == 1
        # Nothing to warn about while the torn bytes are still all zero.
        assert (info.warning is not None) == any(new_slot[:cut])
    # A torn clear of the old slot.
    done = apply(both, [(old_off, zeros[:100])])
    plain, info = unseal(done, kek)
    assert plain == b"secret" and info.slot.generation == 2 and info.warning is not None


def test_a_newer_slot_that_fails_falls_back_with_a_warning() -> None:
    kek = Kek()
    blob, data_key, _ = seal(b"secret", keks=(kek,))
    header = opened(blob, kek)
    (new_off, new_slot), _ = env.plan_rewrap(
        header, [kek.wrap(data_key, env.wrap_aad(header.prefix))]
    )
    forged = bytearray(new_slot)
    forged[-1] ^= 1  # valid structure, generation 2, bad tag
    plain, info = unseal(apply(blob, [(new_off, bytes(forged))]), kek)
    assert plain == b"secret"
    assert info.slot.generation == 1
    assert info.warning is not None and "previous" in info.warning


# -- bounded memory --------------------------------------------------------------------


class Pattern(io.RawIOBase):
    """``size`` pseudo-random bytes, generated on the fly."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._block = os.urandom(1 << 16)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), len(self._block), self._left)
        buffer[:n] = self._block[:n]
        self._left -= n
        return n


class Sink(io.RawIOBase):
    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        n = len(memoryview(data))
        self.size += n
        return n


def _peak_seal_open(size: int, path: Path) -> int:
    kek = Kek()
    data_key = env.new_data_key(env.AES_256_GCM)
    prefix = env.make_prefix(data_key, suite=env.AES_256_GCM)
    wrapped = [kek.wrap(data_key, env.wrap_aad(prefix))]
    tracemalloc.start()
    try:
        with path.open("wb") as f:
            env.seal_stream(Pattern(size), f, prefix=prefix, data_key=data_key, wrapped=wrapped)  # type: ignore[arg-type]
        sink = Sink()
        with path.open("rb") as f:
            info = env.open_stream(f, sink, unwrap=kek.unwrap)  # type: ignore[arg-type]
        assert info.plaintext_size == size == sink.size
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_independent_of_size(tmp_path: Path) -> None:
    small = _peak_seal_open(4 << 20, tmp_path / "small.sealed")
    large = _peak_seal_open(64 << 20, tmp_path / "large.sealed")
    assert large < 6 << 20  # a few segment buffers
    assert large - small < 256 << 10
