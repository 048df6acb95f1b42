"""Pins: the pin file, PEM keys and key ids; anything else is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sealtune.config import WitnessPolicyConfig
from sealtune.core.cosignature import CosignatureSigner
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


def _wkey(name: str) -> str:
    return CosignatureSigner(Ed25519PrivateKey.generate(), name).verifier_key


def test_witness_pins_from_the_pin_file_and_by_hand(tmp_path: Path) -> None:
    w1, w2, w3 = _wkey("w.test/1"), _wkey("w.test/2"), _wkey("w.test/3")
    path = tmp_path / "pins.json"
    path.write_bytes(pin_file(KEY, LEDGER, workspace_id="ws",
                              witnesses=WitnessPolicyConfig(k=1, keys=(w1, w2),
                                                            urls=("http://w.test",))))
    assert b"http" not in path.read_bytes()  # keys and k are pinned, not where to reach them
    pins = load_pins([str(path)])
    policy = pins.witness_policy()
    assert policy is not None and policy[1] == 1
    assert [v.key_string for v in policy[0]] == [w1, w2]
    grown = load_pins([str(path)], witness_keys=[w3, w1]).witness_policy()
    assert grown is not None and (len(grown[0]), grown[1]) == (3, 1)  # w1 once; k from the file
    overridden = load_pins([str(path)], witnesses_k=2).witness_policy()
    assert overridden is not None and overridden[1] == 2
    by_hand = load_pins([keyid(KEY)], witness_keys=[w1, w2]).witness_policy()
    assert by_hand is not None and by_hand[1] == 2  # all of them unless k is given
    assert load_pins([keyid(KEY)]).witness_policy() is None
    plain = tmp_path / "plain.json"
    plain.write_bytes(pin_file(KEY, LEDGER, workspace_id="ws"))
    assert b"witnesses" not in plain.read_bytes()


def test_bad_witness_pins_are_refused(tmp_path: Path) -> None:
    w1 = _wkey("w.test/1")
    with pytest.raises(UsageError, match="--witnesses-k 2"):
        load_pins([keyid(KEY)], witness_keys=[w1], witnesses_k=2)
    with pytest.raises(UsageError, match="--witnesses-k 0"):
        load_pins([keyid(KEY)], witness_keys=[w1], witnesses_k=0)
    with pytest.raises(UsageError):
        load_pins([keyid(KEY)], witnesses_k=1)
    with pytest.raises(ConfigError):
        load_pins([keyid(KEY)], witness_keys=[LEDGER])  # a ledger key is not a witness key
    doc = json.loads(pin_file(KEY, LEDGER, workspace_id="ws",
                              witnesses=WitnessPolicyConfig(k=1, keys=(w1,))))
    for witnesses in ({"k": 2, "keys": [w1]}, {"k": 1, "keys": [w1], "urls": []},
                      {"k": "1", "keys": [w1]}, {"k": 1, "keys": ["junk"]}):
        (tmp_path / "p.json").write_text(json.dumps({**doc, "witnesses": witnesses}))
        with pytest.raises(ConfigError):
            load_pins([str(tmp_path / "p.json")])
