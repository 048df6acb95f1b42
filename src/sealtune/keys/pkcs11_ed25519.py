"""Ed25519 signing keys generated and used inside a PKCS#11 token (CKM_EDDSA).

One key pair per purpose and workspace, labelled
``sealtune/<workspace id>/<purpose>/ed25519``: the private key is generated on
the token (``CKM_EC_EDWARDS_KEY_PAIR_GEN`` on the Ed25519 curve; ``TOKEN``,
``PRIVATE``, ``SENSITIVE`` true, ``EXTRACTABLE`` false, ``SIGN`` only) and
signs with ``C_Sign``/``CKM_EDDSA`` (pure Ed25519, RFC 8032), so signatures
are ordinary Ed25519 signatures any verifier checks with the public key,
which is read from the public object's ``CKA_EC_POINT``. SoftHSM2 2.6 and
python-pkcs11 0.10 support this.

Protects against: theft of the signing key from the host's disk or the
workspace (it never leaves the token). Does not protect against: a host that
has the PIN signing whatever it likes while it has the token, or a token
without EdDSA (:meth:`Pkcs11Ed25519Key.supported` says so; the caller
decides what to do). Sessions and their lock are the ``pkcs11`` keyring's.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sealtune.config import Pkcs11Config
from sealtune.errors import KeyringError
from sealtune.keys.pkcs11 import Pkcs11Keyring

#: The Ed25519 curve's object identifier (RFC 8410), as CKA_EC_PARAMS names it.
ED25519_OID = "1.3.101.112"


def _raw_point(point: bytes) -> bytes:
    """The 32-byte public key from ``CKA_EC_POINT`` (a DER OCTET STRING, or raw)."""
    if len(point) == 34 and point[:2] == b"\x04\x20":
        return point[2:]
    if len(point) == 32:
        return point
    raise KeyringError("the token returned an Ed25519 public key in an unknown encoding")


class Pkcs11Ed25519Key:
    """An Ed25519 key pair for one purpose on the workspace's PKCS#11 token.

    Args:
        config: the token (module, label, PIN variable).
        workspace_id: scopes the label, like the keyring's KEKs.
        purpose: what the key is for (e.g. ``evidence``); part of the label.
    """

    def __init__(self, config: Pkcs11Config, *, workspace_id: str, purpose: str) -> None:
        self._ring = Pkcs11Keyring(config, workspace_id=workspace_id)
        self._label = f"sealtune/{workspace_id}/{purpose}/ed25519"
        self._token_label = config.token_label

    @property
    def label(self) -> str:
        """The label of both objects on the token."""
        return self._label

    def supported(self) -> bool:
        """Whether the token offers Ed25519 key generation and CKM_EDDSA."""
        from pkcs11 import Mechanism

        with self._ring._session() as s:
            mechanisms = set(s.token.slot.get_mechanisms())
        return {Mechanism.EC_EDWARDS_KEY_PAIR_GEN, Mechanism.EDDSA} <= mechanisms

    def _find(self, session: Any, cls: Any) -> Any | None:
        from pkcs11 import Attribute, KeyType

        found = list(session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: self._label,
                                          Attribute.KEY_TYPE: KeyType.EC_EDWARDS}))
        if len(found) > 1:
            raise KeyringError(f"token {self._token_label!r} holds several objects labelled "
                               f"{self._label!r}", hint="remove the extra ones")
        return found[0] if found else None

    def _generate(self, session: Any) -> Any:
        from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag
        from pkcs11.util.ec import encode_named_curve_parameters

        params = session.create_domain_parameters(
            KeyType.EC_EDWARDS, {Attribute.EC_PARAMS: encode_named_curve_parameters(
                ED25519_OID)}, local=True)
        public, _private = params.generate_keypair(
            mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN, store=True, label=self._label,
            id=hashlib.sha256(self._label.encode()).digest()[:16],
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            public_template={Attribute.TOKEN: True, Attribute.VERIFY: True,
                             Attribute.MODIFIABLE: False},
            private_template={Attribute.TOKEN: True, Attribute.PRIVATE: True,
                              Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                              Attribute.SIGN: True, Attribute.MODIFIABLE: False})
        return public

    def ensure(self) -> tuple[Ed25519PublicKey, bool]:
        """Return the public key, generating the pair on the token if absent.

        Returns:
            The public key, and whether it was generated now.
        """
        from pkcs11 import Attribute, ObjectClass

        with self._ring._session(rw=True) as s:
            public = self._find(s, ObjectClass.PUBLIC_KEY)
            created = public is None
            if public is None:
                public = self._generate(s)
            point = bytes(public[Attribute.EC_POINT])
        return Ed25519PublicKey.from_public_bytes(_raw_point(point)), created

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` on the token (CKM_EDDSA); returns the 64-byte signature.

        Raises:
            KeyringError: the key pair is missing (call :meth:`ensure`) or the
                token refused.
        """
        from pkcs11 import Mechanism, ObjectClass

        with self._ring._session() as s:
            private = self._find(s, ObjectClass.PRIVATE_KEY)
            if private is None:
                raise KeyringError(f"no Ed25519 key {self._label!r} on token "
                                   f"{self._token_label!r}")
            return bytes(private.sign(bytes(data), mechanism=Mechanism.EDDSA))
