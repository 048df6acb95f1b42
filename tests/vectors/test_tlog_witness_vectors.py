"""C2SP tlog-cosignature and tlog-witness, byte-exact against published vectors.

Sources and licences: tests/vectors/data/tlog/README.md. The witness tests
run the real witness logic (:class:`sealtune.ledger.witness.Witness`) over
torchwood's request bodies, which carry real log signatures and proofs.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sealtune.core.cosignature import (
    CosignatureSigner,
    CosignatureVerifier,
    check_cosignatures,
    cosignature_key_id,
    parse_signature_line,
    signed_message,
)
from sealtune.core.hashchain import verify_consistency
from sealtune.core.note import NoteVerifier, open_note, parse_checkpoint
from sealtune.core.tlog_witness import parse_add_checkpoint, parse_size
from sealtune.keys.keyfile import KdfParams
from sealtune.ledger.witness import Witness, WitnessHome

DATA = json.loads((Path(__file__).parent / "data" / "tlog" / "witness-vectors.json").read_text())
EM = "\u2014 "


def _line(name: str, blob: bytes) -> str:
    return f"{EM}{name} {base64.b64encode(blob).decode()}"


@pytest.mark.parametrize("vec", DATA["key_ids"])
def test_key_id_and_vkey(vec: dict[str, Any]) -> None:
    pub = bytes.fromhex(vec["public_key_hex"])
    assert f"{cosignature_key_id(vec['name'], pub):08x}" == vec["key_id_hex"]
    verifier = CosignatureVerifier.from_key_string(vec["vkey"])
    assert verifier.key_string == vec["vkey"] and verifier.name == vec["name"]
    # the same key as a note (0x01) key has another id: the two types never mix
    note_key = NoteVerifier(vec["name"], Ed25519PublicKey.from_public_bytes(pub))
    assert note_key.key_id != verifier.key_id


@pytest.mark.parametrize("vec", DATA["timestamps"])
def test_signature_line_framing(vec: dict[str, Any]) -> None:
    line = parse_signature_line(f"{EM}w.example {vec['signature_base64']}")
    assert f"{line.key_id:08x}" == vec["key_id_hex"]
    assert len(line.blob) == 4 + 8 + 64
    assert int.from_bytes(line.blob[4:12], "big") == vec["timestamp"]


def test_cosignatures_by_independent_witnesses_verify() -> None:
    vec = DATA["real_cosignatures"]
    text = vec["checkpoint_text"]
    log = NoteVerifier(vec["log_name"], Ed25519PublicKey.from_public_bytes(
        bytes.fromhex(vec["log_public_key_hex"])))
    log_line = _line(vec["log_name"], log.key_id.to_bytes(4, "big")
                     + bytes.fromhex(vec["log_signature_hex"]))
    verifiers, lines = [], []
    for w in vec["witnesses"]:
        v = CosignatureVerifier(w["name"], Ed25519PublicKey.from_public_bytes(
            bytes.fromhex(w["public_key_hex"])))
        verifiers.append(v)
        lines.append(_line(w["name"], v.key_id.to_bytes(4, "big")
                           + w["timestamp"].to_bytes(8, "big") + bytes.fromhex(w["signature_hex"])))
    note = text + "\n" + "\n".join([log_line, *lines]) + "\n"
    assert open_note(note, log).text == text  # the log signature, as a C2SP note
    check = check_cosignatures(text, [parse_signature_line(x) for x in lines], verifiers)
    assert {c.name for c in check.valid} == {w["name"] for w in vec["witnesses"]}
    assert all(c.timestamp == 1756906440 for c in check.valid) and not check.invalid
    # one second later, or one byte of the tree head changed: not counted
    moved = text.replace("\n4898\n", "\n4899\n")
    assert not check_cosignatures(moved, [parse_signature_line(x) for x in lines], verifiers).valid
    blob = bytearray(base64.b64decode(lines[0].split(" ")[2]))
    blob[11] ^= 1
    late = parse_signature_line(_line(vec["witnesses"][0]["name"], bytes(blob)))
    assert check_cosignatures(text, [late], verifiers).invalid == (vec["witnesses"][0]["name"],)


def test_cosign_is_byte_exact() -> None:
    vec = DATA["cosign_derived"]
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vec["seed_hex"]))
    signer = CosignatureSigner(key, vec["name"])
    assert signer.verifier_key == vec["vkey"]
    message = signed_message(vec["checkpoint_text"], vec["timestamp"])
    assert message == vec["signed_message"].encode()
    assert signer.cosign(vec["checkpoint_text"], vec["timestamp"]) == vec["line"] + "\n"
    verifier = CosignatureVerifier.from_key_string(vec["vkey"])
    got = verifier.verify(vec["checkpoint_text"], parse_signature_line(vec["line"]))
    assert got is not None and got.timestamp == vec["timestamp"]


def test_add_checkpoint_requests_parse() -> None:
    vec = DATA["add_checkpoint"]
    log = NoteVerifier.from_key_string(vec["log_vkey"])
    for r in vec["requests"]:
        req = parse_add_checkpoint(r["body"].encode())
        assert (req.old_size, len(req.proof)) == (r["old"], r["proof_lines"])
        assert req.to_body() == r["body"].encode()  # the encoding is canonical: it round-trips
        cp = parse_checkpoint(open_note(req.checkpoint, log).text)
        assert cp.origin == vec["origin"] and cp.size == r["size"]
    with pytest.raises(Exception, match="more than 63"):
        parse_add_checkpoint(vec["too_many_proofs"]["body"].encode())


def test_torchwood_proofs_are_rfc6962_consistency_proofs() -> None:
    vec = DATA["add_checkpoint"]
    log = NoteVerifier.from_key_string(vec["log_vkey"])
    by_size = {}
    for r in vec["requests"]:
        req = parse_add_checkpoint(r["body"].encode())
        by_size[r["size"]] = (req, parse_checkpoint(open_note(req.checkpoint, log).text).root)
    root1 = by_size[1][1]
    for size in (3, 5):
        req, root = by_size[size]
        assert verify_consistency(1, size, req.proof, root1, root)
        assert not verify_consistency(1, size, req.proof[::-1], root1, root)
    assert by_size[5][1].hex() == vec["final_root_hex"]


def test_witness_processes_torchwood_requests(tmp_path: Path) -> None:
    """The request sequence of torchwood's TestRace, run through our witness."""
    vec = DATA["add_checkpoint"]
    home, _ = WitnessHome.init(tmp_path / "w", name="example.com", passphrase="vectors-pass",
                               kdf=KdfParams.unsafe_fast())
    home.add_log(vec["origin"], vec["log_vkey"])
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vec["witness_seed_hex"]))
    signer = CosignatureSigner(key, "example.com")
    witness = Witness(signer=signer, logs=home.logs(), home=home, clock=lambda: 1679315147.0)
    for r in vec["requests"]:
        reply = witness.add_checkpoint(r["body"].encode())
        assert reply.status == r["status"], r["name"]
        if r["status"] == 409:
            assert reply.content_type == "text/x.tlog.size" and parse_size(reply.body) == r["held"]
        else:
            req = parse_add_checkpoint(r["body"].encode())
            text = req.checkpoint[: req.checkpoint.index("\n\n") + 1]
            line = parse_signature_line(reply.body.decode().rstrip("\n"))
            assert signer.verifier().verify(text, line) is not None
    assert witness.add_checkpoint(vec["too_many_proofs"]["body"].encode()).status == 400
    size, root = home.load_state()[vec["origin"]]
    assert (size, root.hex()) == (vec["final_size"], vec["final_root_hex"])
