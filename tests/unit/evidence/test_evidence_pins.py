"""Pins: the pin file, PEM keys and key ids; anything else is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sealtune.core.note import NoteSigner
from sealtune.errors import ConfigError, UsageError
from sealtune.evidence import load_pins, pin_file
from sealtune.evidence.dsse import keyid
from sealtune.evidence.pins import public_pem

KEY = Ed25519PrivateKey.generate().public_key()
LEDGER = NoteSigner(Ed25519PrivateKey.generate(), "ledger-x").verifier_key


def test_a_pin_file_pins_both_keys(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    path.write_bytes(pin_file(KEY, LEDGER, workspace_id="ws"))
    pins = load_pins([str(path)])
    assert [keyid(k) for k in pins.evidence] == [keyid(KEY)]
    assert [v.key_string for v in pins.ledger] == [LEDGER]


def test_a_pem_key_a_key_id_and_a_ledger_key(tmp_path: Path) -> None:
    (tmp_path / "k.pem").write_text(public_pem(KEY))
    pins = load_pins([str(tmp_path / "k.pem"), keyid(KEY)], [LEDGER])
    assert [keyid(k) for k in pins.evidence] == [keyid(KEY)]
    assert pins.evidence_ids == [keyid(KEY)] and len(pins.ledger) == 1


def test_bad_pins_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--key"):
        load_pins([])
    with pytest.raises(UsageError):
        load_pins([str(tmp_path / "missing")])
    x25519 = X25519PrivateKey.generate().public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "x.pem").write_bytes(x25519)
    with pytest.raises(ConfigError, match="Ed25519"):
        load_pins([str(tmp_path / "x.pem")])
    doc = pin_file(KEY, LEDGER, workspace_id="ws").replace(
        keyid(KEY).encode(), b"sha256:" + b"0" * 64)
    (tmp_path / "p.json").write_bytes(doc)
    with pytest.raises(ConfigError, match="does not match"):
        load_pins([str(tmp_path / "p.json")])
    (tmp_path / "junk").write_text("hello")
    with pytest.raises(ConfigError):
        load_pins([str(tmp_path / "junk")])
    with pytest.raises(ConfigError):
        load_pins([keyid(KEY)], ["not-a-key"])
