"""The registry's signing key and model signatures in the OpenSSF model-signing (OMS) format.

* :func:`registry_key` returns the workspace's registry signing key, an EC
  P-256 private key (the kind model-signing's ``key`` method takes), kept in
  the passphrase-sealed keyring file (section ``registry``, record
  ``signing-key``) like the evidence key, and created on first use (audited
  as ``registry.key_create``). It signs model signatures and registry
  snapshots.
* :func:`sign_model` builds an OMS signature (a Sigstore bundle holding a
  DSSE envelope over an in-toto statement whose predicate lists every
  file's SHA-256) from digests computed while the files were sealed, with
  the ``model-signing`` library's own manifest, payload and EC signer, so
  the plaintext never needs to sit on disk to be signed. Stock
  ``model_signing verify key DIR --signature DIR/model.sig --public_key PUB``
  verifies an exported copy offline.
* :func:`verify_model_signature` checks such a bundle against the public key
  and returns the signed ``{file name: sha256 hex}`` (no library needed).

What this protects against: a model file, name or set of files changed after
signing (the digests are signed); a signature made with another key. What it
does not: a process that has unlocked the keyring can sign anything; the key
is not on a PKCS#11 token yet (model-signing's PKCS#11 signer needs
PyKCS11); rotation of the registry key is not implemented.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealtune.errors import BackendUnavailableError, IntegrityError
from sealtune.keys.keyfile import b64decode, b64encode

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

SECTION = "registry"
RECORD = "signing-key"
SIGNATURE_FILE = "model.sig"
IN_TOTO_JSON = "application/vnd.in-toto+json"
INSTALL_HINT = "install the registry extra: pip install 'sealtune[registry]'"


def registry_key(ws: Workspace) -> ec.EllipticCurvePrivateKey:
    """The workspace's registry signing key (EC P-256), created on first use (audited)."""
    rec = ws.keyfile.get(SECTION, RECORD)
    if rec is None:
        private = ec.generate_private_key(ec.SECP256R1())
        der = private.private_bytes(serialization.Encoding.DER,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        with ws.keyfile.transaction() as doc:  # re-read under the lock: another process may win
            existing = doc.get(SECTION, {}).get(RECORD)
            if existing is None:
                doc.setdefault(SECTION, {})[RECORD] = {"ec-p256-pkcs8": b64encode(der)}
        if existing is None:
            ws.audit("registry.key_create", f"registry-key:{key_id(private.public_key())}",
                     details={"keyid": key_id(private.public_key()), "backend": "keyring",
                              "algorithm": "ecdsa-p256-sha256"})
            return private
        rec = existing
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


def sign_model(private: ec.EllipticCurvePrivateKey, *, model_name: str,
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
    # The library's EC signer reads its key from a PEM file; ours stays in memory
    # (it is sealed in the keyring), so the signer is built around the key object.
    signer = sign_ec_key.Signer.__new__(sign_ec_key.Signer)
    signer._private_key = private
    bundle: str = signer.sign(payload).bundle.to_json()  # type: ignore[attr-defined]
    return bundle.encode("utf-8")


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
