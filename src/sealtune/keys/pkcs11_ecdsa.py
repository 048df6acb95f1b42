"""EC P-256 signing keys generated and used inside a PKCS#11 token (CKM_ECDSA).

One key pair per purpose and workspace, labelled
``sealtune/<workspace id>/<purpose>/ecdsa-p256``: the private key is generated
on the token (``CKM_EC_KEY_PAIR_GEN`` on secp256r1; ``TOKEN``, ``PRIVATE``,
``SENSITIVE`` true, ``EXTRACTABLE`` false, ``SIGN`` only). The host hashes
the message (SHA-256) and the token signs the digest with ``C_Sign`` /
``CKM_ECDSA``; the raw ``r || s`` it returns is re-encoded as DER, so a
signature is an ordinary ECDSA-P256-SHA256 signature that any verifier
checks with the public key (read from the public object's ``CKA_EC_POINT``).

:class:`Pkcs11EcdsaKey` has the two methods of ``cryptography``'s
``EllipticCurvePrivateKey`` that signers call (``public_key()`` and
``sign(data, ec.ECDSA(hashes.SHA256()))``), so code written for an in-memory
key (the OpenSSF model-signing EC signer, the registry's snapshots) signs on
the token unchanged. It has no ``private_bytes``: the key cannot be exported.

Protects against: theft of the signing key from the host's disk or the
workspace (it never leaves the token). Does not protect against: a host that
has the PIN signing whatever it likes while it has the token; a token without
ECDSA on P-256 (:meth:`Pkcs11EcdsaKey.supported` says so; the caller
decides). The token handling is :class:`sealtune.keys.pkcs11_pair.TokenKeyPair`'s.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sealtune.config import Pkcs11Config
from sealtune.errors import KeyringError, UsageError
from sealtune.keys.pkcs11_pair import TokenKeyPair

#: secp256r1's object identifier, as CKA_EC_PARAMS names it.
P256_OID = "1.2.840.10045.3.1.7"


def _point(raw: bytes) -> bytes:
    """The uncompressed point ``04 || X || Y`` from ``CKA_EC_POINT`` (DER OCTET STRING or raw)."""
    if len(raw) == 67 and raw[:2] == b"\x04\x41":
        return raw[2:]
    if len(raw) == 65 and raw[0] == 4:
        return raw
    raise KeyringError("the token returned an EC public key in an unknown encoding")


class Pkcs11EcdsaKey(TokenKeyPair):
    """An EC P-256 key pair for one purpose on the workspace's PKCS#11 token.

    Args:
        config: the token (module, label, PIN variable).
        workspace_id: scopes the label, like the keyring's KEKs.
        purpose: what the key is for (e.g. ``registry``); part of the label.
    """

    KIND: ClassVar[str] = "ecdsa-p256"
    NAME: ClassVar[str] = "EC P-256"
    KEY_TYPE: ClassVar[str] = "EC"
    GENERATE: ClassVar[str] = "EC_KEY_PAIR_GEN"
    SIGN: ClassVar[str] = "ECDSA"
    CURVE_OID: ClassVar[str] = P256_OID
    PRIVATE_EXTRA: ClassVar[tuple[str, ...]] = ("DECRYPT", "DERIVE")

    def __init__(self, config: Pkcs11Config, *, workspace_id: str, purpose: str) -> None:
        super().__init__(config, workspace_id=workspace_id, purpose=purpose)
        self._public: ec.EllipticCurvePublicKey | None = None

    def _decode(self, point: bytes) -> ec.EllipticCurvePublicKey:
        self._public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(),
                                                                   _point(point))
        return self._public

    def find(self) -> ec.EllipticCurvePublicKey | None:
        """The public key if the pair exists on the token, else None."""
        point, _ = self._point(create=False)
        return None if point is None else self._decode(point)

    def ensure(self) -> tuple[ec.EllipticCurvePublicKey, bool]:
        """Return the public key, generating the pair on the token if absent.

        Returns:
            The public key, and whether it was generated now.
        """
        point, created = self._point(create=True)
        assert point is not None
        return self._decode(point), created

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public key (``cryptography``'s private-key API).

        Raises:
            KeyringError: the pair is not on the token.
        """
        if self._public is None and self.find() is None:
            raise KeyringError(f"no EC key {self._label!r} on token {self._token_label!r}")
        assert self._public is not None
        return self._public

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm
             ) -> bytes:
        """Sign ``data`` on the token; a DER ECDSA signature (``cryptography``'s API).

        Raises:
            UsageError: an algorithm other than ECDSA with SHA-256.
            KeyringError: the key pair is missing or the token refused.
        """
        algorithm = getattr(signature_algorithm, "algorithm", None)
        if not (isinstance(signature_algorithm, ec.ECDSA)
                and isinstance(algorithm, hashes.SHA256)):
            raise UsageError("the token's EC P-256 key signs ECDSA with SHA-256 only")
        raw = self._sign(hashlib.sha256(data).digest())
        if len(raw) != 64:
            raise KeyringError("the token returned an ECDSA signature of an unexpected size")
        return encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                    int.from_bytes(raw[32:], "big"))
