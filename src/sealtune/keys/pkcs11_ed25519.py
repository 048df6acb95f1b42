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
decides what to do). The token handling is
:class:`sealtune.keys.pkcs11_pair.TokenKeyPair`'s.
"""

from __future__ import annotations

from typing import ClassVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sealtune.errors import KeyringError
from sealtune.keys.pkcs11_pair import TokenKeyPair

#: The Ed25519 curve's object identifier (RFC 8410), as CKA_EC_PARAMS names it.
ED25519_OID = "1.3.101.112"


def _raw_point(point: bytes) -> bytes:
    """The 32-byte public key from ``CKA_EC_POINT`` (a DER OCTET STRING, or raw)."""
    if len(point) == 34 and point[:2] == b"\x04\x20":
        return point[2:]
    if len(point) == 32:
        return point
    raise KeyringError("the token returned an Ed25519 public key in an unknown encoding")


class Pkcs11Ed25519Key(TokenKeyPair):
    """An Ed25519 key pair for one purpose on the workspace's PKCS#11 token.

    Args:
        config: the token (module, label, PIN variable).
        workspace_id: scopes the label, like the keyring's KEKs.
        purpose: what the key is for (e.g. ``evidence``); part of the label.
    """

    KIND: ClassVar[str] = "ed25519"
    NAME: ClassVar[str] = "Ed25519"
    KEY_TYPE: ClassVar[str] = "EC_EDWARDS"
    GENERATE: ClassVar[str] = "EC_EDWARDS_KEY_PAIR_GEN"
    SIGN: ClassVar[str] = "EDDSA"
    CURVE_OID: ClassVar[str] = ED25519_OID

    def ensure(self) -> tuple[Ed25519PublicKey, bool]:
        """Return the public key, generating the pair on the token if absent.

        Returns:
            The public key, and whether it was generated now.
        """
        point, created = self._point(create=True)
        assert point is not None
        return Ed25519PublicKey.from_public_bytes(_raw_point(point)), created

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` on the token (CKM_EDDSA); returns the 64-byte signature.

        Raises:
            KeyringError: the key pair is missing (call :meth:`ensure`) or the
                token refused.
        """
        return self._sign(bytes(data))
