"""The registry's signing key and model signatures in the OpenSSF model-signing (OMS) format.

* :func:`registry_key` returns the workspace's registry signing key, an EC
  P-256 key (the kind model-signing's ``key`` method takes), created on
  first use (audited as ``registry.key_create``, saying where it lives):

  - a workspace configured with PKCS#11 (``[keyring.pkcs11]``) keeps it on
    the token (:mod:`sealtune.keys.pkcs11_ecdsa`): generated there,
    non-extractable, signing with ``CKM_ECDSA``; a token without EC P-256
    ECDSA keeps it in the keyring file instead, with a warning and a
    ``registry.key_not_on_token`` audit event;
  - otherwise it is kept in the passphrase-sealed keyring file (section
    ``registry``, record ``signing-key``) like the evidence key. A key
    already in the keyring file stays the registry key (a workspace that
    configures a token later keeps verifying what it signed before).

  It signs model signatures and registry snapshots.
* :func:`sign_model` builds an OMS signature (a Sigstore bundle holding a
  DSSE envelope over an in-toto statement whose predicate lists every
  file's SHA-256) from digests computed while the files were sealed, with
  the ``model-signing`` library's own manifest, payload and EC signer
  (given our key object, in memory or on the token, instead of a PEM file),
  so the plaintext never needs to sit on disk to be signed. Stock
  ``model_signing verify key DIR --signature DIR/model.sig --public_key PUB``
  verifies an exported copy offline.
* :func:`verify_model_signature` checks such a bundle against the public key
  and returns the signed ``{file name: sha256 hex}`` (no library needed).

What this protects against: a model file, name or set of files changed after
signing (the digests are signed); a signature made with another key; with
PKCS#11, theft of the signing key (it never leaves the token). What it does
not: a process that has unlocked the keyring (or holds the token's PIN) can
sign anything; rotation of the registry key is not implemented.
"""

from __future__ import annotations

import base64
import hashlib
import json
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealtune.errors import BackendUnavailableError, IntegrityError
from sealtune.keys.keyfile import b64decode, b64encode
from sealtune.keys.token_lock import token_lock

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

SECTION = "registry"
RECORD = "signing-key"
SIGNATURE_FILE = "model.sig"
IN_TOTO_JSON = "application/vnd.in-toto+json"
NO_ECDSA_WARNING = (
    "the PKCS#11 token has no EC P-256 ECDSA: the registry signing key is kept in the "
    "keyring file instead; recorded in the audit log as registry.key_not_on_token")
INSTALL_HINT = "install the registry extra: pip install 'sealtune[registry]'"


class SigningKey(Protocol):
    """What signs for the registry: ``cryptography``'s EC private-key signing methods."""

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public key."""
        ...

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm
             ) -> bytes:
        """A DER ECDSA signature of ``data``."""
        ...


def registry_key(ws: Workspace) -> SigningKey:
    """The workspace's registry signing key (EC P-256), created on first use (audited).

    Raises:
        KeyringError, BackendUnavailableError: the token cannot be used.
        IntegrityError: the keyring file's record is not an EC key.
    """
    rec = ws.keyfile.get(SECTION, RECORD)
    if rec is not None:
        return _loaded(rec)
    if ws.config.pkcs11 is not None:
        token = _token_key(ws)
        if token is not None:
            return token
    return _keyring_key(ws)


def _token_key(ws: Workspace) -> SigningKey | None:
    """The token's key pair, or None (warned and audited) when the token lacks ECDSA."""
    from sealtune.keys.pkcs11_ecdsa import Pkcs11EcdsaKey

    assert ws.config.pkcs11 is not None
    key = Pkcs11EcdsaKey(ws.config.pkcs11, workspace_id=ws.config.workspace_id,
                         purpose=SECTION)
    with token_lock(ws.root):  # two first registrations must not both generate a pair
        if key.find() is not None:
            return key
        if not key.supported():
            warnings.warn(NO_ECDSA_WARNING, UserWarning, stacklevel=3)
            ws.audit("registry.key_not_on_token", f"pkcs11:{ws.config.pkcs11.token_label}",
                     details={"reason": "token lacks CKM_EC_KEY_PAIR_GEN or CKM_ECDSA"})
            return None
        public, created = key.ensure()
    if created:
        ws.audit("registry.key_create", f"registry-key:{key_id(public)}",
                 details={"keyid": key_id(public), "backend": "pkcs11",
                          "algorithm": "ecdsa-p256-sha256", "label": key.label})
    return key


def _keyring_key(ws: Workspace) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.private_bytes(serialization.Encoding.DER,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    with ws.keyfile.transaction() as doc:  # re-read under the lock: another process may win
        existing = doc.get(SECTION, {}).get(RECORD)
        if existing is None:
            doc.setdefault(SECTION, {})[RECORD] = {"ec-p256-pkcs8": b64encode(der)}
    if existing is not None:
        return _loaded(existing)
    ws.audit("registry.key_create", f"registry-key:{key_id(private.public_key())}",
             details={"keyid": key_id(private.public_key()), "backend": "keyring",
                      "algorithm": "ecdsa-p256-sha256"})
    return private


def _loaded(rec: Mapping[str, Any]) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_der_private_key(b64decode(rec["ec-p256-pkcs8"]), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise IntegrityError("the keyring's registry signing key is not an EC key",
                             hint="restore the keyring file from a trusted copy")
    return key


def public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    """The public key as PEM SubjectPublicKeyInfo (what ``model_signing`` takes)."""
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: ec.EllipticCurvePublicKey) -> str:
    """``sha256:<hex>`` of the PEM public key (model-signing's key hint is the same hex)."""
    return "sha256:" + hashlib.sha256(public_pem(key)).hexdigest()


def sign_model(private: SigningKey, *, model_name: str,
               digests: Mapping[str, str]) -> bytes:
    """An OMS signature (Sigstore bundle JSON) over ``{file name: sha256 hex}``.

    Raises:
        BackendUnavailableError: the ``model-signing`` library is not installed.
    """
    try:
        from model_signing import manifest
        from model_signing._hashing.hashing import Digest
        from model_signing._signing import sign_ec_key, signing
    except ImportError:
        raise BackendUnavailableError("model signing needs the model-signing library",
                                      hint=INSTALL_HINT) from None
    from pathlib import Path, PurePosixPath

    # The 'files' method, as 'model_signing sign' records it (the signature file ignored).
    serialization_type = manifest._FileSerialization(
        "sha256", allow_symlinks=False, ignore_paths=[Path(SIGNATURE_FILE)])
    items = [manifest.FileManifestItem(path=PurePosixPath(name),
                                       digest=Digest("sha256", bytes.fromhex(hexd)))
             for name, hexd in sorted(digests.items())]
    payload = signing.Payload(manifest.Manifest(model_name, items, serialization_type))
    bundle: str = _signer(sign_ec_key, private).sign(payload).bundle.to_json()
    return bundle.encode("utf-8")


def _signer(sign_ec_key: Any, private: SigningKey) -> Any:
    """model-signing's EC signer around our key object (sealed in the keyring, or on a token).

    The library's signer reads a PEM file in ``__init__`` and afterwards only
    calls ``public_key()`` and ``sign(data, ec.ECDSA(SHA-256))`` on the key it
    loaded, which both our keys offer: its bundle (statement, DSSE envelope,
    key hint) is built by the library itself, as ``model_signing sign key`` does.
    """

    class KeySigner(sign_ec_key.Signer):  # type: ignore[misc]
        def __init__(self, key: SigningKey) -> None:  # no PEM file: the key object
            sign_ec_key._check_supported_ec_key(key.public_key())
            self._private_key = key

    return KeySigner(private)


def _pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def verify_model_signature(bundle: bytes, public: ec.EllipticCurvePublicKey, *,
                           what: str) -> dict[str, str]:
    """Check an OMS bundle made by :func:`sign_model`; return ``{file name: sha256 hex}``.

    Raises:
        IntegrityError: malformed, signed by another key, or not a file manifest.
    """
    try:
        doc = json.loads(bundle)
        env = doc["dsseEnvelope"]
        payload = base64.b64decode(env["payload"], validate=True)
        sig = base64.b64decode(env["signatures"][0]["sig"], validate=True)
        if env["payloadType"] != IN_TOTO_JSON or len(env["signatures"]) != 1:
            raise ValueError
    except (ValueError, KeyError, IndexError, TypeError):
        raise IntegrityError(f"{what} is not a model signature",
                             hint="restore it from the registry") from None
    try:
        public.verify(sig, _pae(IN_TOTO_JSON, payload), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise IntegrityError(f"{what}: the signature does not verify",
                             hint="the model or its signature was modified") from None
    return _resources(payload, what)


def _resources(payload: bytes, what: str) -> dict[str, str]:
    try:
        statement: dict[str, Any] = json.loads(payload)
        predicate = statement["predicate"]
        if predicate["serialization"]["method"] != "files":
            raise ValueError
        out = {}
        for res in predicate["resources"]:
            if res["algorithm"] != "sha256" or res["name"] in out:
                raise ValueError
            out[str(res["name"])] = str(res["digest"])
    except (ValueError, KeyError, TypeError):
        raise IntegrityError(f"{what}: the signed statement is not a file manifest",
                             hint="restore it from the registry") from None
    return out
