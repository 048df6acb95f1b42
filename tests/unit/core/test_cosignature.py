"""tlog-cosignature v1: round trips, forgeries and strict parsing (vectors in tests/vectors)."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from sealtune.core.cosignature import (
    MAX_TIMESTAMP,
    CosignatureSigner,
    CosignatureVerifier,
    check_cosignatures,
    parse_signature_line,
    parse_signature_lines,
    signed_message,
)
from sealtune.core.note import NoteSigner, NoteVerifier, open_note
from sealtune.errors import ConfigError, IntegrityError, UsageError

TEXT = "example.com/log\n7\n" + base64.b64encode(bytes(range(32))).decode() + "\n"
SIGNER = CosignatureSigner(Ed25519PrivateKey.generate(), "witness.example/w1")


def test_round_trip_and_vkey() -> None:
    line = SIGNER.cosign(TEXT, 1_700_000_000)
    assert line.startswith("\u2014 witness.example/w1 ") and line.endswith("\n")
    parsed = parse_signature_line(line[:-1])
    again = CosignatureVerifier.from_key_string(SIGNER.verifier_key)
    got = again.verify(TEXT, parsed)
    assert got is not None and got.timestamp == 1_700_000_000 and got.line == line[:-1]


def test_forgeries_are_not_counted() -> None:
    good = parse_signature_line(SIGNER.cosign(TEXT, 10)[:-1])
    other = CosignatureSigner(Ed25519PrivateKey.generate(), "witness.example/w1")
    forged = parse_signature_line(other.cosign(TEXT, 10)[:-1])  # same name, another key
    blob = bytearray(good.blob)
    blob[-1] ^= 1
    flipped = parse_signature_line("\u2014 witness.example/w1 "
                                   + base64.b64encode(bytes(blob)).decode())
    check = check_cosignatures(TEXT, [forged, flipped, good], [SIGNER.verifier()])
    assert [c.line for c in check.valid] == [good.line]
    assert check.invalid == ("witness.example/w1",) and check.unknown == 1
    # another checkpoint, another time: nothing verifies
    assert SIGNER.verifier().verify(TEXT.replace("\n7\n", "\n8\n"), good) is None


def test_note_keys_and_cosignature_keys_never_mix() -> None:
    key = Ed25519PrivateKey.generate()
    cosigner = CosignatureSigner(key, "same.example")
    note_signer = NoteSigner(key, "same.example")
    note = note_signer.sign(TEXT)
    # a note signature by the same key is not a cosignature (other id, other message)
    line = parse_signature_line(note.split("\n\n")[1].rstrip("\n"))
    assert check_cosignatures(TEXT, [line], [cosigner.verifier()]).valid == ()
    with pytest.raises(IntegrityError):
        open_note(TEXT + "\n" + cosigner.cosign(TEXT, 5), NoteVerifier("same.example",
                                                                         key.public_key()))
    with pytest.raises(ConfigError, match="0x04"):
        CosignatureVerifier.from_key_string(note_signer.verifier_key)


@pytest.mark.parametrize("bad", [
    "witness+1234abcd+AQ==", "w+zzzzzzzz+BA==", "w+00000000+" + "B" * 44, "nokey", "",
])
def test_malformed_vkeys(bad: str) -> None:
    with pytest.raises(ConfigError):
        CosignatureVerifier.from_key_string(bad)


def test_wrong_key_id_in_vkey() -> None:
    name, kid, key = SIGNER.verifier_key.split("+", 2)  # base64 may hold "+"
    wrong = f"{int(kid, 16) ^ 1:08x}"
    with pytest.raises(ConfigError, match="does not match"):
        CosignatureVerifier.from_key_string(f"{name}+{wrong}+{key}")


@pytest.mark.parametrize("line", [
    "- w AAAAAAA=", "\u2014 w", "\u2014 w AAAA", "\u2014 w AAAAAAA", "\u2014 bad name AAAAAAA=",
    "\u2014 w AAAAAAA=\n",
])
def test_malformed_lines(line: str) -> None:
    with pytest.raises(IntegrityError):
        parse_signature_line(line)


def test_response_blocks() -> None:
    lines = SIGNER.cosign(TEXT, 1) + SIGNER.cosign(TEXT, 2)
    assert [x.name for x in parse_signature_lines(lines)] == ["witness.example/w1"] * 2
    for bad in ("", lines.rstrip("\n"), lines + "\n", SIGNER.cosign(TEXT, 1) * 101):
        with pytest.raises(IntegrityError):
            parse_signature_lines(bad)


def test_timestamp_range_and_checkpoint_only() -> None:
    with pytest.raises(UsageError):
        signed_message(TEXT, MAX_TIMESTAMP + 1)
    with pytest.raises(UsageError):
        SIGNER.cosign(TEXT, -1)
    with pytest.raises(IntegrityError):
        SIGNER.cosign("not a checkpoint\n", 1)  # witnesses cosign checkpoints only
    blob = bytearray(parse_signature_line(SIGNER.cosign(TEXT, 1)[:-1]).blob)
    blob[4] = 0x80  # a timestamp above 2^63 - 1 is refused before any signature check
    text = "\u2014 witness.example/w1 " + base64.b64encode(bytes(blob)).decode()
    line = parse_signature_line(text)
    assert SIGNER.verifier().verify(TEXT, line) is None


@settings(max_examples=40, deadline=None)
@given(ts=st.integers(0, MAX_TIMESTAMP), size=st.integers(0, 2**63 - 1))
def test_any_time_and_size_round_trip(ts: int, size: int) -> None:
    text = f"o.example\n{size}\n{base64.b64encode(bytes(32)).decode()}\n"
    got = SIGNER.verifier().verify(text, parse_signature_line(SIGNER.cosign(text, ts)[:-1]))
    assert got is not None and got.timestamp == ts
