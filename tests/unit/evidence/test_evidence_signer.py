"""The evidence key in the keyring file: created once, audited, apart from the ledger key."""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sealtune.evidence import evidence_signer
from sealtune.evidence.signer import RECORD, SECTION
from sealtune.keys.keyfile import KeyFile
from sealtune.workspace import Workspace


def _raw(key: object) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)  # type: ignore[attr-defined]


def test_the_key_is_made_once_kept_sealed_and_audited(workspace: Workspace,
                                                      passphrase: str) -> None:
    first = evidence_signer(workspace)
    again = evidence_signer(workspace)
    assert first.backend == "keyring" and first.keyid == again.keyid
    events = [e for e in workspace.ledger.entries() if e.action == "evidence.key_create"]
    assert len(events) == 1 and events[0].details["keyid"] == first.keyid
    assert set(events[0].details) == {"keyid", "backend", "algorithm"}  # no key material
    reopened = KeyFile.open(workspace.keyfile_path, passphrase)
    assert reopened.get(SECTION, RECORD) is not None
    raw = workspace.keyfile_path.read_bytes()
    assert _raw(first.public_key) not in raw  # sealed: not even the public half in clear
    sig = first.sign(b"m")
    first.public_key.verify(sig, b"m")
    assert _raw(first.public_key) != _raw(workspace.ledger_verifier().public_key)


def test_another_process_sees_the_same_key(workspace: Workspace, passphrase: str) -> None:
    key = evidence_signer(workspace).keyid
    other = Workspace.open(workspace.root, passphrase=passphrase)
    try:
        assert evidence_signer(other).keyid == key
    finally:
        other.close()
