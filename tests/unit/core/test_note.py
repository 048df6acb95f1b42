"""C2SP signed notes and checkpoints: Go golden vectors, strictness, round trips.

Golden vectors come from golang.org/x/mod/sumdb/note's note_test.go (TestSign,
TestOpen, TestNewVerifier): the PeterNeumann and EnochRoot keys and notes.
Ed25519 is deterministic, so signing the same text with PeterNeumann's key
must reproduce Go's note byte for byte.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from sealtune.core.note import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    parse_note,
)
from sealtune.errors import ConfigError, IntegrityError, UsageError

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = ("\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZ"
             "SNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")
ENOCH_SIG = ("\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG0"
             "1oOTGwnWLox33WWd1RvMc+QQ=\n")
PETER = NoteVerifier.from_key_string(PETER_VKEY)
ENOCH = NoteVerifier.from_key_string(ENOCH_VKEY)


def peter_signer() -> NoteSigner:
    # The Go private key string is PRIVATE+KEY+<name>+<id>+base64(0x01 || seed).
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]
    return NoteSigner(Ed25519PrivateKey.from_private_bytes(seed), "PeterNeumann")


def new_signer(name: str = "sealtune.test/key") -> NoteSigner:
    return NoteSigner(Ed25519PrivateKey.generate(), name)


# -- Go golden vectors ------------------------------------------------------------


def test_go_note_verifies() -> None:
    note = open_note(TEXT + "\n" + PETER_SIG, PETER)
    assert note.text == TEXT
    assert [(s.name, s.key_id) for s in note.signatures] == [("PeterNeumann", 0xC74F20A3)]
    assert PETER.key_string == PETER_VKEY and PETER.key_id == 0xC74F20A3


def test_signing_reproduces_go_output_byte_for_byte() -> None:
    signer = peter_signer()
    assert signer.verifier_key == PETER_VKEY
    assert signer.sign(TEXT) == TEXT + "\n" + PETER_SIG


def test_go_two_signatures_known_and_unknown() -> None:
    note = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER])
    assert [s.name for s in note.signatures] == ["PeterNeumann"]
    assert [s.name for s in note.unverified] == ["EnochRoot"]
    both = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER, ENOCH])
    assert [s.name for s in both.signatures] == ["PeterNeumann", "EnochRoot"]
    with pytest.raises(IntegrityError, match="no verifiable signatures"):
        open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])


def test_go_duplicates_and_ambiguity() -> None:
    bad_enoch = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    note = open_note(TEXT + "\n" + PETER_SIG * 2 + ENOCH_SIG * 2 + bad_enoch, [PETER])
    assert len(note.signatures) == 1 and len(note.unverified) == 2
    with pytest.raises(IntegrityError, match="ambiguous key EnochRoot"):
        open_note(TEXT + "\n" + ENOCH_SIG, [ENOCH, PETER, ENOCH])
    open_note(TEXT + "\n" + PETER_SIG, [ENOCH, PETER, ENOCH])  # unused duplicate is fine


def test_go_invalid_signature_and_too_many() -> None:
    with pytest.raises(IntegrityError, match="invalid signature for key PeterNeumann"):
        open_note(TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], PETER)
    with pytest.raises(IntegrityError, match="malformed note"):
        open_note(TEXT + "\n" + PETER_SIG * 101, PETER)
    open_note(TEXT + "\n" + PETER_SIG * 100, PETER)


@pytest.mark.parametrize("msg", [
    TEXT,
    TEXT + "\n",
    TEXT + "\n" + PETER_SIG[:-1],
    "\x01" + TEXT + "\n" + PETER_SIG,
    TEXT + "\n" + "\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZ"
    "SNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
    TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    TEXT + "\n" + PETER_SIG.replace("\u2014", "-"),
    TEXT + "\n" + PETER_SIG.replace("AM=\n", "AN=\n"),  # non-canonical base64 padding bits
    TEXT + "\n" + "\u2014 PeterNeumann x08g\n",  # fewer than 5 bytes
    TEXT + "\n" + "\u2014 PeterNeumann \n",
    TEXT + "\r\n" + PETER_SIG,
])
def test_go_malformed_notes_rejected(msg: str) -> None:
    with pytest.raises(IntegrityError, match="malformed note"):
        open_note(msg, PETER)


def test_bytes_input_must_be_utf8() -> None:
    assert open_note((TEXT + "\n" + PETER_SIG).encode(), PETER).text == TEXT
    with pytest.raises(IntegrityError):
        open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), PETER)


def test_go_mangled_verifier_keys_rejected() -> None:
    key = PETER_VKEY
    for i in range(len(key) + 1):
        for j in range(i + 1, len(key) + 1):
            if i != 0 or j != len(key):
                with pytest.raises(ConfigError):
                    NoteVerifier.from_key_string(key[i:j])
    for i in range(len(key)):
        with pytest.raises(ConfigError):
            NoteVerifier.from_key_string(key[:i] + chr(ord(key[i]) + 1) + key[i + 1:])
    with pytest.raises(ConfigError):  # wrong length key with adjusted key hash
        NoteVerifier.from_key_string(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==")
    with pytest.raises(ConfigError):  # unknown algorithm with adjusted key hash
        NoteVerifier.from_key_string(
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


# -- our own round trips and tampering -------------------------------------------


def test_round_trip_and_tampering() -> None:
    signer = new_signer()
    note = signer.sign("hello\nworld\n")
    verifier = NoteVerifier.from_key_string(signer.verifier_key)
    assert open_note(note, verifier).text == "hello\nworld\n"
    with pytest.raises(IntegrityError):
        open_note(note.replace("hello", "hellO"), verifier)
    text, sigs = parse_note(note)
    raw = bytearray(base64.b64decode(sigs[0].base64))
    raw[10] ^= 1
    flipped = text + "\n\u2014 " + signer.name + " " + base64.b64encode(raw).decode() + "\n"
    with pytest.raises(IntegrityError, match="invalid signature"):
        open_note(flipped, verifier)
    with pytest.raises(IntegrityError, match="no verifiable"):
        open_note(note, new_signer().verifier())  # same name, other key: unknown, ignored


def test_signer_rejects_bad_text_and_names() -> None:
    signer = new_signer()
    for text in ("", "no newline", "bell\x07\n"):
        with pytest.raises(IntegrityError):
            signer.sign(text)
    for name in ("", "a b", "a+b", "tab\t"):
        with pytest.raises(UsageError):
            NoteSigner(Ed25519PrivateKey.generate(), name)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=200))
def test_any_valid_text_round_trips(body: str) -> None:
    text = body.replace("\r", "") + "\n"
    signer = SIGNER
    assert open_note(signer.sign(text), signer.verifier()).text == text


SIGNER = new_signer()


# -- checkpoints -------------------------------------------------------------------

SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


def test_checkpoint_parse_and_round_trip() -> None:
    cp = parse_checkpoint(SPEC_BODY)
    assert (cp.origin, cp.size, len(cp.root), cp.extensions) == (
        "example.com/behind-the-sofa", 20852163, 32, ())
    assert cp.to_text() == SPEC_BODY
    ext = Checkpoint("o", 0, bytes(32), ("x y", "z")).to_text()
    assert parse_checkpoint(ext).extensions == ("x y", "z")
    signer = new_signer()
    assert open_checkpoint(signer.sign(SPEC_BODY), signer.verifier()) == cp


@pytest.mark.parametrize("body", [
    "example.com\n20852163\n",
    "example.com\n020852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    "example.com\n+5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    "example.com\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    "example.com\n\u0665\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    "example.com\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n",
    "example.com\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n",
    "example.com\n5\nAAAA\n",
    "example.com\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\next\n",
    "example.com\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",
    "\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    "example.com\n18446744073709551616\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
])
def test_malformed_checkpoints_rejected(body: str) -> None:
    with pytest.raises(IntegrityError, match="malformed checkpoint"):
        parse_checkpoint(body)
