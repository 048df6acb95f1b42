"""Independent checks of the sealed-file format v1.

* Google Tink (``tink`` 1.16.1, C++ underneath) as an oracle for the payload:
  it decrypts our AES payloads, and we decrypt its ciphertexts.
* The RFC 8998 SM4-GCM known-answer vector for the SM4 suite.
* A minimal reader written from ``docs/formats/sealed-v1.md`` alone, using
  ``cryptography`` directly and no sealtune code, that opens our files and
  the golden files in ``tests/vectors/data`` (so format drift is caught).

Regenerate the golden files (only for a deliberate format change, which
needs a new format version) with ``python tests/vectors/test_tink_oracle.py --regenerate``.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealtune.core import envelope as env
from sealtune.core.hazmat.aead import gcm_decrypt, gcm_encrypt
from sealtune.core.wrapped_key import WrappedKey

DATA = Path(__file__).parent / "data"
SEG = 1048576


# -- Tink as an oracle -----------------------------------------------------------------


def tink_streaming_aead(data_key: bytes, segment_size: int = SEG) -> Any:
    import tink  # test dependency (pyproject [test])
    from tink import secret_key_access, streaming_aead
    from tink.proto import aes_gcm_hkdf_streaming_pb2 as pb
    from tink.proto import common_pb2, tink_pb2

    streaming_aead.register()
    key = pb.AesGcmHkdfStreamingKey(
        version=0,
        key_value=data_key,
        params=pb.AesGcmHkdfStreamingParams(
            ciphertext_segment_size=segment_size,
            derived_key_size=32,
            hkdf_hash_type=common_pb2.SHA256,
        ),
    )
    keyset = tink_pb2.Keyset(
        primary_key_id=7,
        key=[
            tink_pb2.Keyset.Key(
                key_data=tink_pb2.KeyData(
                    type_url="type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey",
                    value=key.SerializeToString(),
                    key_material_type=tink_pb2.KeyData.SYMMETRIC,
                ),
                status=tink_pb2.ENABLED,
                key_id=7,
                output_prefix_type=tink_pb2.RAW,
            )
        ],
    )
    handle = tink.proto_keyset_format.parse(keyset.SerializeToString(), secret_key_access.TOKEN)
    return handle.primitive(streaming_aead.StreamingAead)


class _Keep(io.BytesIO):
    """Tink closes the destination when its stream closes; keep the bytes."""

    def close(self) -> None:
        pass


def seal_with_known_key(data: bytes, suite: env.Suite = env.AES_256_GCM) -> tuple[bytes, bytes]:
    data_key = env.new_data_key(suite)
    prefix = env.make_prefix(data_key, suite=suite)
    out = io.BytesIO()
    entry = WrappedKey("test:plain", 1, b"not a real wrap")
    env.seal_stream(io.BytesIO(data), out, prefix=prefix, data_key=data_key, wrapped=[entry])
    return out.getvalue(), data_key


SIZES = [0, 1, SEG - 56 - 1, SEG - 56, SEG - 56 + 1, 2 * SEG - 72, 3 * SEG + 12345]


@pytest.mark.parametrize("size", SIZES)
def test_tink_decrypts_our_payload(size: int) -> None:
    data = os.urandom(size)
    blob, data_key = seal_with_known_key(data)
    offset = env.parse_prefix(blob[:68]).payload_offset
    tink = tink_streaming_aead(data_key)
    with tink.new_decrypting_stream(io.BytesIO(blob[offset:]), blob[:68]) as dec:
        assert dec.read() == data


@pytest.mark.parametrize("size", SIZES)
def test_we_decrypt_tink_ciphertext(size: int) -> None:
    data = os.urandom(size)
    data_key = env.new_data_key(env.AES_256_GCM)
    prefix = env.make_prefix(data_key, suite=env.AES_256_GCM)
    sink = _Keep()
    with tink_streaming_aead(data_key).new_encrypting_stream(sink, prefix.encode()) as enc:
        enc.write(data)
    payload = sink.getvalue()
    assert len(payload) == env.AES_256_GCM.stream().ciphertext_size(size)
    # A whole sealed file around Tink's payload opens through our reader.
    entry = WrappedKey("test:plain", 1, b"-")
    slot = env.encode_slot(env.Slot(1, (entry,)), prefix=prefix, data_key=data_key)
    blob = prefix.encode() + slot + bytes(env.SLOT_BYTES) + payload
    out = io.BytesIO()
    env.open_stream(io.BytesIO(blob), out, unwrap=lambda w, aad: data_key)
    assert out.getvalue() == data


def test_tink_agrees_on_small_segments() -> None:
    data_key = env.new_data_key(env.AES_256_GCM)
    stream = env.AES_256_GCM.stream(4096)
    tink = tink_streaming_aead(data_key, 4096)
    for size in (0, 4096 - 56, 4096 - 55, 4096 - 56 + 4080, 50000):
        data = os.urandom(size)
        out = io.BytesIO()
        stream.encrypt(io.BytesIO(data), out, key=data_key, aad=b"ad")
        with tink.new_decrypting_stream(io.BytesIO(out.getvalue()), b"ad") as dec:
            assert dec.read() == data
        sink = _Keep()
        with tink.new_encrypting_stream(sink, b"ad") as enc:
            enc.write(data)
        back = io.BytesIO()
        stream.decrypt(io.BytesIO(sink.getvalue()), back, key=data_key, aad=b"ad")
        assert back.getvalue() == data
        assert len(sink.getvalue()) == len(out.getvalue())


# -- SM4-GCM known answer (RFC 8998, appendix A.1) -------------------------------------

RFC8998_KEY = "0123456789ABCDEFFEDCBA9876543210"
RFC8998_IV = "00001234567800000000ABCD"
RFC8998_AAD = "FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2"
RFC8998_PT = (
    "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
    "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
)
RFC8998_CT = (
    "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
    "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
)
RFC8998_TAG = "83DE3541E4C2B58177E065A9BF7B62EC"


def test_sm4_gcm_known_answer_rfc8998() -> None:
    key, iv, aad = (bytes.fromhex(x) for x in (RFC8998_KEY, RFC8998_IV, RFC8998_AAD))
    plaintext = bytes.fromhex(RFC8998_PT)
    sealed = gcm_encrypt("sm4", key, iv, plaintext, aad)
    assert sealed.hex().upper() == RFC8998_CT + RFC8998_TAG
    assert gcm_decrypt("sm4", key, iv, sealed, aad) == plaintext


# -- a reader written from the spec alone ----------------------------------------------


def spec_reader(blob: bytes, data_key: bytes) -> bytes:
    """Open a sealed v1 file following docs/formats/sealed-v1.md, no sealtune code."""
    magic, version, suite, flags, seg, slot_size, file_id, commit = struct.unpack(
        ">8sBBHII16s32s", blob[:68]
    )
    assert (magic, version, flags) == (b"SEALTUNE", 1, 0)
    prefix = blob[:68]
    key_len, hash_alg, cipher = {
        1: (32, hashes.SHA256(), algorithms.AES),
        2: (16, hashes.SM3(), algorithms.SM4),
    }[suite]
    expect = HKDF(hashes.SHA256(), 32, file_id, b"sealtune/v1/commit" + prefix[:36])
    assert hmac.compare_digest(expect.derive(data_key), commit)
    mac_key = HKDF(hashes.SHA256(), 32, file_id, b"sealtune/v1/slot-mac").derive(data_key)
    slots = [blob[68 + i * slot_size : 68 + (i + 1) * slot_size] for i in (0, 1)]
    valid = [
        s
        for s in slots
        if any(s)
        and hmac.compare_digest(
            hmac.new(mac_key, prefix + s[:-32], hashlib.sha256).digest(), s[-32:]
        )
    ]
    assert valid, "no valid slot"
    payload = blob[68 + 2 * slot_size :]
    header_len = payload[0]
    assert header_len == 1 + key_len + 7
    salt, nonce_prefix = payload[1 : 1 + key_len], payload[1 + key_len : header_len]
    key = HKDF(hash_alg, key_len, salt, prefix).derive(data_key)
    segments, pos, index = [], header_len, 0
    while True:
        end = (index + 1) * seg
        chunk = payload[pos:end]
        last = end >= len(payload)
        nonce = nonce_prefix + struct.pack(">IB", index, last)
        dec = Cipher(cipher(key), modes.GCM(nonce, chunk[-16:])).decryptor()
        segments.append(dec.update(chunk[:-16]) + dec.finalize())
        if last:
            return b"".join(segments)
        pos, index = end, index + 1


@pytest.mark.parametrize("suite", [env.AES_256_GCM, env.SM4_GCM], ids=lambda s: s.algorithm)
@pytest.mark.parametrize("size", [0, 1, SEG - 40, SEG, 2 * SEG + 7])
def test_the_spec_reader_opens_our_files(suite: env.Suite, size: int) -> None:
    data = os.urandom(size)
    blob, data_key = seal_with_known_key(data, suite)
    assert spec_reader(blob, data_key) == data


def golden_cases() -> list[dict[str, Any]]:
    return list(json.loads((DATA / "sealed-v1.json").read_text())["cases"])


@pytest.mark.parametrize("case", golden_cases(), ids=lambda c: c["file"])
def test_golden_files_still_open(case: dict[str, Any]) -> None:
    blob = (DATA / case["file"]).read_bytes()
    data_key = bytes.fromhex(case["data_key"])
    plaintext = bytes.fromhex(case["plaintext"])
    assert spec_reader(blob, data_key) == plaintext
    out = io.BytesIO()
    info = env.open_stream(io.BytesIO(blob), out, unwrap=lambda w, aad: data_key)
    assert out.getvalue() == plaintext
    assert info.prefix.suite.algorithm == case["suite"]
    assert info.prefix.file_id.hex() == case["file_id"]
    assert [w.kek_uri for w in info.slot.entries] == case["kek_uris"]
    # Re-encoding what we parsed gives the same bytes (a stable, canonical encoding).
    header = env.read_header(io.BytesIO(blob))
    assert header.prefix.encode() == blob[:68]
    assert (
        env.encode_slot(info.slot, prefix=header.prefix, data_key=data_key) == (header.raw_slots[0])
    )


def _regenerate() -> None:
    """Write new golden files (a format change needs a new version instead)."""
    cases = []
    specs = [
        ("aes-empty.sealed", env.AES_256_GCM, b"", SEG),
        ("aes-short.sealed", env.AES_256_GCM, "脱敏 test record 1\n".encode() * 3, SEG),
        ("aes-seg64.sealed", env.AES_256_GCM, bytes(range(256)), 64),
        ("sm4-short.sealed", env.SM4_GCM, "机密部署 sm4 record\n".encode() * 3, SEG),
        ("sm4-seg48.sealed", env.SM4_GCM, bytes(range(200)), 48),
    ]
    for name, suite, data, seg in specs:
        data_key = env.new_data_key(suite)
        prefix = env.make_prefix(data_key, suite=suite, segment_size=seg, slot_size=256)
        entries = [WrappedKey("local:golden", 1, os.urandom(60)), WrappedKey("pkcs11:hsm", 3, b"")]
        out = io.BytesIO()
        env.seal_stream(io.BytesIO(data), out, prefix=prefix, data_key=data_key, wrapped=entries)
        (DATA / name).write_bytes(out.getvalue())
        cases.append(
            {
                "file": name,
                "suite": suite.algorithm,
                "data_key": data_key.hex(),
                "file_id": prefix.file_id.hex(),
                "plaintext": data.hex(),
                "kek_uris": [e.kek_uri for e in entries],
            }
        )
    note = "Golden sealed-v1 files; the wrapped-key blobs are random (no KEK)."
    (DATA / "sealed-v1.json").write_text(json.dumps({"note": note, "cases": cases}, indent=1))


if __name__ == "__main__" and "--regenerate" in sys.argv:
    _regenerate()
