"""An attacker who can edit sealed files: every edit must fail closed.

The attacker may flip, truncate, extend, reorder and splice bytes, copy
headers, slots and segments between files sealed under the same KEK, and hold
KEKs of their own. None of it may yield plaintext other than the original;
everything but damage to the inactive header slot (which carries nothing the
reader trusts) raises ``IntegrityError``.
"""

from __future__ import annotations

import io
import os

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealtune.core import envelope as env
from sealtune.core.wrapped_key import WrappedKey
from sealtune.errors import IntegrityError, KeyNotFoundError

SEG = env.SEGMENT_BYTES


class Kek:
    """A real AES-256-GCM KEK, as a keyring backend holds."""

    def __init__(self, uri: str = "local:k1") -> None:
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
    kek: Kek,
    *,
    suite: env.Suite = env.AES_256_GCM,
    segment_size: int = SEG,
    slot_size: int = env.SLOT_BYTES,
) -> bytes:
    data_key = env.new_data_key(suite)
    prefix = env.make_prefix(data_key, suite=suite, segment_size=segment_size, slot_size=slot_size)
    out = io.BytesIO()
    env.seal_stream(
        io.BytesIO(data),
        out,
        prefix=prefix,
        data_key=data_key,
        wrapped=[kek.wrap(data_key, env.wrap_aad(prefix))],
    )
    return out.getvalue()


def unseal(blob: bytes, kek: Kek) -> tuple[bytes, env.OpenInfo]:
    out = io.BytesIO()
    info = env.open_stream(io.BytesIO(blob), out, unwrap=kek.unwrap)
    return out.getvalue(), info


def rejects(blob: bytes, kek: Kek) -> None:
    with pytest.raises(IntegrityError):
        unseal(blob, kek)


def flip(blob: bytes, at: int, mask: int = 0x01) -> bytes:
    buf = bytearray(blob)
    buf[at] ^= mask
    return bytes(buf)


@pytest.fixture(scope="module")
def kek() -> Kek:
    return Kek()


@pytest.fixture(scope="module")
def data() -> bytes:
    # Three full segments and a partial fourth at the real segment size.
    return os.urandom(3 * SEG + 1000)


@pytest.fixture(scope="module")
def sealed(data: bytes, kek: Kek) -> bytes:
    return seal(data, kek)


def payload_offset(blob: bytes) -> int:
    return env.parse_prefix(blob[:68]).payload_offset


# -- every byte, exhaustively, on a small-segment file ---------------------------------


@pytest.mark.parametrize("suite", [env.AES_256_GCM, env.SM4_GCM], ids=lambda s: s.algorithm)
def test_every_single_byte_flip_is_caught(suite: env.Suite) -> None:
    kek = Kek()
    data = os.urandom(300)
    blob = seal(data, kek, suite=suite, segment_size=64, slot_size=160)
    uri = range(68 + 12, 68 + 12 + len(kek.uri))
    slot_b = range(68 + 160, 68 + 320)
    for at in range(len(blob)):
        for mask in (0x01, 0x80):
            tampered = flip(blob, at, mask)
            if at in slot_b:
                # The inactive slot is not trusted: damage is reported, not fatal.
                plain, info = unseal(tampered, kek)
                assert plain == data and info.warning is not None, at
            elif at in uri:
                # Naming another KEK: a reader cannot tell this from a file
                # sealed for keys it lacks; it opens nothing either way.
                with pytest.raises((IntegrityError, KeyNotFoundError)):
                    unseal(tampered, kek)
            else:
                with pytest.raises(IntegrityError):
                    unseal(tampered, kek)


# -- every region, at the real segment size --------------------------------------------


REGIONS = {
    "magic": 0,
    "version": 8,
    "suite": 9,
    "flags": 11,
    "segment size": 14,
    "slot size": 18,
    "file id": 25,
    "commitment": 50,
    "slot generation": 68 + 7,
    "slot entry count": 68 + 9,
    "slot uri length": 68 + 11,
    "slot version": 68 + 12 + 8 + 3,
    "slot blob length": 68 + 12 + 8 + 5,
    "slot blob": 68 + 12 + 8 + 6 + 20,
    "slot padding": 68 + 1000,
    "slot tag": 68 + 2048 - 1,
}


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_a_flip_in_each_header_region_is_rejected(region: str, sealed: bytes, kek: Kek) -> None:
    rejects(flip(sealed, REGIONS[region]), kek)


@pytest.mark.parametrize(
    ("segment", "where"),
    [(i, w) for i in range(4) for w in ("body", "tag")] + [(0, "stream header")],
)
def test_a_flip_in_each_payload_part_is_rejected(
    segment: int, where: str, sealed: bytes, kek: Kek
) -> None:
    base = payload_offset(sealed)
    start = base + segment * SEG
    end = min(base + (segment + 1) * SEG, len(sealed))
    at = {"body": (start + end) // 2 + 41, "tag": end - 3, "stream header": base + 5}[where]
    rejects(flip(sealed, at), kek)


def test_nothing_is_written_for_a_segment_that_fails(sealed: bytes, kek: Kek) -> None:
    base = payload_offset(sealed)
    out = io.BytesIO()
    with pytest.raises(IntegrityError):
        env.open_stream(io.BytesIO(flip(sealed, base + SEG + 100)), out, unwrap=kek.unwrap)
    # Only segment 0, which authenticated, reached the output.
    assert len(out.getvalue()) == SEG - 40 - 16


# -- truncation, extension, reordering, splicing ---------------------------------------


def test_truncation_anywhere_is_rejected(sealed: bytes, kek: Kek) -> None:
    base = payload_offset(sealed)
    cuts = [0, 10, 68, 68 + 2048, base, base + 40, base + 1000, base + SEG - 1]
    cuts += [base + SEG, base + 2 * SEG, base + 3 * SEG]  # whole final segments dropped
    cuts += [base + 3 * SEG + 1, len(sealed) - 16, len(sealed) - 1]
    for cut in cuts:
        rejects(sealed[:cut], kek)


def test_appended_bytes_are_rejected(sealed: bytes, kek: Kek) -> None:
    base = payload_offset(sealed)
    for extra in (b"\0", os.urandom(16), sealed[base + SEG : base + 2 * SEG]):
        rejects(sealed + extra, kek)


def test_dropping_the_final_segment_of_an_exact_multiple_is_rejected(kek: Kek) -> None:
    stream = env.AES_256_GCM.stream()
    blob = seal(os.urandom(stream.first_plaintext_size + stream.plaintext_segment_size), kek)
    base = payload_offset(blob)
    assert len(blob) == base + 2 * SEG
    rejects(blob[: base + SEG], kek)


def test_reordered_segments_are_rejected(sealed: bytes, kek: Kek) -> None:
    base = payload_offset(sealed)
    one, two = slice(base + SEG, base + 2 * SEG), slice(base + 2 * SEG, base + 3 * SEG)
    buf = bytearray(sealed)
    buf[one], buf[two] = sealed[two], sealed[one]
    rejects(bytes(buf), kek)


def test_a_segment_from_another_file_under_the_same_kek_is_rejected(
    data: bytes, sealed: bytes, kek: Kek
) -> None:
    other = seal(data, kek)  # same plaintext, same KEK, its own data key
    base = payload_offset(sealed)
    seg = slice(base + SEG, base + 2 * SEG)
    buf = bytearray(sealed)
    buf[seg] = other[seg]
    rejects(bytes(buf), kek)
    # and the other way round: our header on the other file's payload
    rejects(sealed[:base] + other[base:], kek)


def test_a_wrapped_entry_copied_from_another_file_is_rejected(
    data: bytes, sealed: bytes, kek: Kek
) -> None:
    other = seal(data, kek)
    slot = slice(68, 68 + 2048)
    buf = bytearray(sealed)
    buf[slot] = other[slot]
    rejects(bytes(buf), kek)


def test_the_wrong_kek_of_the_same_name_is_rejected(sealed: bytes) -> None:
    rejects(sealed, Kek("local:k1"))


def test_a_consistent_looking_header_edit_is_rejected(sealed: bytes, kek: Kek) -> None:
    prefix = env.parse_prefix(sealed[:68])
    # Another file id (with the old commitment) and another segment size.
    edits = [
        env.Prefix(
            prefix.suite, prefix.segment_size, prefix.slot_size, os.urandom(16), prefix.commitment
        ),
        env.Prefix(
            prefix.suite,
            prefix.segment_size // 2,
            prefix.slot_size,
            prefix.file_id,
            prefix.commitment,
        ),
    ]
    for edited in edits:
        rejects(edited.encode() + sealed[68:], kek)


# -- key commitment: one ciphertext, two keys ------------------------------------------


def test_a_second_data_key_smuggled_into_the_header_is_rejected(sealed: bytes, kek: Kek) -> None:
    """The "invisible salamander" attack: an entry that unwraps to a different
    key, with a slot tag valid under that key, must not open the file."""
    attacker = Kek("local:attacker")
    prefix = env.parse_prefix(sealed[:68])
    rogue_key = env.new_data_key(env.AES_256_GCM)
    entry = attacker.wrap(rogue_key, env.wrap_aad(prefix))
    slot = env.encode_slot(env.Slot(5, (entry,)), prefix=prefix, data_key=rogue_key)
    forged = sealed[: 68 + 2048] + slot + sealed[68 + 4096 :]
    rejects(forged, attacker)
    # The legitimate holder is unaffected (it falls back to its own slot).
    _, info = unseal(forged, kek)
    assert info.warning is not None and info.slot.generation == 1


# -- a real multi-key ciphertext ("invisible salamander") ------------------------------

_R = 0xE1 << 120


def _gf_mul(x: int, y: int) -> int:
    """Multiplication in GCM's GF(2^128) (bit-reflected, as in SP 800-38D)."""
    z, v = 0, y
    for i in range(128):
        if (x >> (127 - i)) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def _gf_inv(x: int) -> int:
    result, power, e = 1 << 127, x, (1 << 128) - 2  # 1 << 127 is the field's one
    while e:
        if e & 1:
            result = _gf_mul(result, power)
        power = _gf_mul(power, power)
        e >>= 1
    return result


def _ecb(suite: env.Suite, key: bytes, block: bytes) -> int:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    algorithm = algorithms.AES(key) if suite.cipher == "aes" else algorithms.SM4(key)
    enc = Cipher(algorithm, modes.ECB()).encryptor()  # raw block for GHASH
    return int.from_bytes(enc.update(block) + enc.finalize(), "big")


def _two_key_segment(suite: env.Suite, k1: bytes, k2: bytes, nonce: bytes) -> bytes:
    """A 32-byte GCM ciphertext + tag that authenticates under both keys."""
    h1, h2 = (_ecb(suite, k, bytes(16)) for k in (k1, k2))
    j0 = nonce + b"\0\0\0\1"
    e1, e2 = (_ecb(suite, k, j0) for k in (k1, k2))
    c1 = int.from_bytes(os.urandom(16), "big")
    length = 256  # len(A) = 0 bits, len(C) = 256 bits
    sq1, sq2 = _gf_mul(h1, h1), _gf_mul(h2, h2)
    rhs = e1 ^ e2 ^ _gf_mul(c1, _gf_mul(sq1, h1) ^ _gf_mul(sq2, h2)) ^ _gf_mul(length, h1 ^ h2)
    c2 = _gf_mul(rhs, _gf_inv(sq1 ^ sq2))
    tag = e1 ^ _gf_mul(c1, _gf_mul(sq1, h1)) ^ _gf_mul(c2, sq1) ^ _gf_mul(length, h1)
    return b"".join(x.to_bytes(16, "big") for x in (c1, c2, tag))


@pytest.mark.parametrize("suite", [env.AES_256_GCM, env.SM4_GCM], ids=lambda s: s.algorithm)
def test_a_ciphertext_valid_under_two_keys_opens_only_under_the_committed_one(
    suite: env.Suite,
) -> None:
    from sealtune.core.hazmat.kdf import hkdf

    honest, attacker = Kek("local:honest"), Kek("local:attacker")
    key1, key2 = env.new_data_key(suite), env.new_data_key(suite)
    prefix = env.make_prefix(key1, suite=suite)
    aad = env.wrap_aad(prefix)
    slot_a = env.encode_slot(env.Slot(1, (honest.wrap(key1, aad),)), prefix=prefix, data_key=key1)
    slot_b = env.encode_slot(env.Slot(1, (attacker.wrap(key2, aad),)), prefix=prefix, data_key=key2)
    salt, nonce_prefix = os.urandom(suite.key_bytes), os.urandom(7)
    k1, k2 = (
        hkdf(hash=suite.hkdf_hash, ikm=k, salt=salt, info=prefix.encode(), length=suite.key_bytes)
        for k in (key1, key2)
    )
    segment = _two_key_segment(suite, k1, k2, nonce_prefix + b"\0\0\0\0\1")
    stream_header = bytes([1 + suite.key_bytes + 7]) + salt + nonce_prefix
    forged = prefix.encode() + slot_a + slot_b + stream_header + segment

    # The attack is real: without the commitment the payload opens under both keys.
    stream, payload = suite.stream(), stream_header + segment
    plain = []
    for key in (key1, key2):
        out = io.BytesIO()
        stream.decrypt(io.BytesIO(payload), out, key=key, aad=prefix.encode())
        plain.append(out.getvalue())
    assert plain[0] != plain[1]
    # The format stops it: only the committed key opens the file.
    assert unseal(forged, honest)[0] == plain[0]
    rejects(forged, attacker)
