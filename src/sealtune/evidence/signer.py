"""The workspace's evidence signing key (Ed25519), separate from the ledger's key.

:func:`evidence_signer` returns the key that signs a run's statements and
bundle manifest, creating it on first use:

* a workspace configured with PKCS#11 (``[keyring.pkcs11]``) keeps it on the
  token (:mod:`sealtune.keys.pkcs11_ed25519`): generated there,
  non-extractable, signing with ``CKM_EDDSA``;
* otherwise (or when that token lacks EdDSA, which warns and is recorded
  in the audit log as ``evidence.key_not_on_token``) it is an Ed25519 key kept
  in the passphrase-sealed keyring file, section ``evidence``, record
  ``signing-key``, beside but apart from the ledger's signing key.

Its creation is audited (``evidence.key_create`` with the key id and where it
lives). The key id is :func:`sealtune.evidence.dsse.keyid` of the public key.

What this protects against: evidence signed by a key that also signs the
ledger (a leak of one does not forge the other), the evidence key on disk in
clear (the keyring file is sealed; a token never releases it). What it does
not: a process that has unlocked the keyring (or holds the PIN) can sign
anything; two processes creating the token key at once make one pair
(:func:`sealtune.keys.token_lock.token_lock`), but only on one host;
rotation and revocation of the evidence key are not implemented (auditors
pin the key they trust).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from sealtune.evidence.dsse import keyid
from sealtune.keys.keyfile import b64decode, b64encode
from sealtune.keys.pkcs11_ed25519 import Pkcs11Ed25519Key
from sealtune.keys.token_lock import token_lock

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

SECTION = "evidence"
RECORD = "signing-key"
PURPOSE = "evidence"
NO_EDDSA_WARNING = (
    "the PKCS#11 token has no Ed25519 (CKM_EDDSA): the evidence signing key "
    "is kept in the keyring file instead; recorded in the audit log as "
    "evidence.key_not_on_token")


class EvidenceSigner(Protocol):
    """Signs evidence with an Ed25519 key."""

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The public key (what auditors pin)."""
        ...

    @property
    def keyid(self) -> str:
        """``sha256:<hex>`` of the public key's SubjectPublicKeyInfo."""
        ...

    @property
    def backend(self) -> str:
        """Where the private key lives: ``keyring`` or ``pkcs11``."""
        ...

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        ...


class KeyringSigner:
    """The evidence key held in the workspace's sealed keyring file."""

    backend = "keyring"

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self._public = private.public_key()

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._public

    @property
    def keyid(self) -> str:
        return keyid(self._public)

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)


class TokenSigner:
    """The evidence key on the workspace's PKCS#11 token."""

    backend = "pkcs11"

    def __init__(self, key: Pkcs11Ed25519Key, public: Ed25519PublicKey) -> None:
        self._key = key
        self._public = public

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._public

    @property
    def keyid(self) -> str:
        return keyid(self._public)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


def _keyring_signer(ws: Workspace) -> KeyringSigner:
    rec = ws.keyfile.get(SECTION, RECORD)
    if rec is not None:
        return KeyringSigner(Ed25519PrivateKey.from_private_bytes(b64decode(rec["ed25519"])))
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    with ws.keyfile.transaction() as doc:  # re-read under the lock: another process may win
        existing = doc.get(SECTION, {}).get(RECORD)
        if existing is None:
            doc.setdefault(SECTION, {})[RECORD] = {"ed25519": b64encode(raw)}
    if existing is not None:
        return KeyringSigner(Ed25519PrivateKey.from_private_bytes(b64decode(
            existing["ed25519"])))
    signer = KeyringSigner(private)
    ws.audit("evidence.key_create", f"evidence-key:{signer.keyid}",
             details={"keyid": signer.keyid, "backend": "keyring", "algorithm": "ed25519"})
    return signer


def _token_signer(ws: Workspace) -> TokenSigner | None:
    """The token's key, or None (warned and audited) when the token has no EdDSA."""
    assert ws.config.pkcs11 is not None
    key = Pkcs11Ed25519Key(ws.config.pkcs11, workspace_id=ws.config.workspace_id,
                           purpose=PURPOSE)
    with token_lock(ws.root):  # two first uses must not both generate a pair
        if not key.supported():
            warnings.warn(NO_EDDSA_WARNING, UserWarning, stacklevel=3)
            ws.audit("evidence.key_not_on_token", f"pkcs11:{ws.config.pkcs11.token_label}",
                     details={"reason": "token lacks CKM_EDDSA"})
            return None
        public, created = key.ensure()
    signer = TokenSigner(key, public)
    if created:
        ws.audit("evidence.key_create", f"evidence-key:{signer.keyid}",
                 details={"keyid": signer.keyid, "backend": "pkcs11", "algorithm": "ed25519",
                          "label": key.label})
    return signer


def evidence_signer(ws: Workspace) -> EvidenceSigner:
    """The workspace's evidence signing key, created on first use (see the module docstring).

    Raises:
        KeyringError, BackendUnavailableError: the token cannot be used.
        IntegrityError: the keyring file was tampered with or the passphrase is wrong.
    """
    if ws.config.pkcs11 is not None:
        token = _token_signer(ws)
        if token is not None:
            return token
    return _keyring_signer(ws)


def workspace_pins(ws: Workspace) -> tuple[bytes, str]:
    """The pin file auditors keep for this workspace, and the evidence key id.

    It pins the evidence key (created on first use), the ledger key and, when
    the workspace has a ``[ledger.witnesses]`` policy, its witness keys and k.
    """
    from sealtune.evidence.pins import pin_file

    signer = evidence_signer(ws)
    return pin_file(signer.public_key, ws.ledger_signer().verifier_key,
                    workspace_id=ws.config.workspace_id,
                    witnesses=ws.config.ledger.witnesses), signer.keyid
