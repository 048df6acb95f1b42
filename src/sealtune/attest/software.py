"""``dev-software``: attestation by an Ed25519 key, for development. NOT a TEE.

The evidence is an Ed25519 signature over ``label || report_data``, where
report data binds the key configurations, nonce, measurement and issue time
(:mod:`sealtune.attest.report`). It proves exactly one thing: whoever holds
the attestation private key produced this report for these claims. It says
nothing about hardware isolation, and nothing about what code runs: the
operator, the host and anyone who can read the server's memory or key file
can produce a valid report for any measurement. A verifier that pins the
public key (``dev_attestation_keys`` in the policy) at least knows *which*
key holder answered; without a pin, any key is accepted and the report
proves only internal consistency. Every report and every verification result
says so.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Collection
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from sealtune.attest.base import Check, Evidence
from sealtune.errors import AttestationError

PLATFORM = "dev-software"
SIGNATURE_LABEL = b"sealtune/attestation/v1 dev-software signature\x00"
WARNING = ("dev-software: no hardware isolation; proves only possession of the "
           "attestation key")


def fingerprint(public_key: bytes) -> str:
    """SHA-256 (hex) of a raw 32-byte Ed25519 public key: the value to pin."""
    return hashlib.sha256(public_key).hexdigest()


class SoftwareProvider:
    """The ``dev-software`` provider: signs report data with an Ed25519 key.

    Args:
        private_key: the attestation key; None generates a fresh one (per boot).
    """

    platform = PLATFORM
    is_tee = False
    untested_on_hardware = False

    def __init__(self, private_key: Ed25519PrivateKey | None = None) -> None:
        self._key = private_key or Ed25519PrivateKey.generate()
        self.public_key = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def __repr__(self) -> str:
        return f"SoftwareProvider(key {self.fingerprint[:16]}..., NOT a TEE)"

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the raw public key (give it to clients to pin)."""
        return fingerprint(self.public_key)

    @classmethod
    def load(cls, path: Path) -> SoftwareProvider:
        """Load an unencrypted PKCS#8 PEM Ed25519 key (development only).

        Raises:
            AttestationError: missing, unreadable, or not an Ed25519 key.
        """
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise AttestationError(f"{path}: attestation key not found") from None
        except (OSError, ValueError, TypeError) as exc:
            raise AttestationError(f"{path}: cannot load the attestation key "
                                   f"({type(exc).__name__})",
                                   hint="expected an unencrypted PKCS#8 PEM Ed25519 key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise AttestationError(f"{path}: the attestation key is not Ed25519")
        return cls(key)

    def save(self, path: Path) -> None:
        """Write the key as unencrypted PKCS#8 PEM, mode 0600, refusing to overwrite."""
        pem = self._key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        with path.open("xb") as f:
            path.chmod(0o600)
            f.write(pem)

    def evidence(self, report_data: bytes) -> Evidence:
        """Sign ``label || report_data``."""
        if len(report_data) != 64:
            raise AttestationError("report data must be 64 bytes")
        signature = self._key.sign(SIGNATURE_LABEL + report_data)
        return Evidence(platform=PLATFORM, is_tee=False, payload={
            "public_key": base64.b64encode(self.public_key).decode("ascii"),
            "signature": base64.b64encode(signature).decode("ascii"),
            "warning": WARNING,
        })


def _field(payload: dict[str, Any], name: str, size: int) -> bytes | None:
    value = payload.get(name)
    if not isinstance(value, str):
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size else None


def verify_evidence(payload: dict[str, Any], *, report_data: bytes,
                    trusted_keys: Collection[str] = ()) -> list[Check]:
    """Check a ``dev-software`` evidence payload against the expected report data.

    Args:
        payload: the report's ``evidence`` object.
        report_data: the report data recomputed from the report's claims.
        trusted_keys: pinned public-key fingerprints; empty accepts any key.

    Returns:
        ``dev-signature`` and ``dev-key`` checks.
    """
    unknown = sorted(set(payload) - {"public_key", "signature", "warning"})
    public = _field(payload, "public_key", 32)
    signature = _field(payload, "signature", 64)
    if unknown or public is None or signature is None:
        what = ("unknown field(s) " + ", ".join(unknown)) if unknown else \
            "public_key (32 bytes) and signature (64 bytes) must be base64"
        return [Check("dev-signature", False, f"the dev-software evidence is malformed: {what}")]
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, SIGNATURE_LABEL + report_data)
        checks = [Check("dev-signature", True,
                        "the Ed25519 signature over the report data verifies under the "
                        "public key in the report")]
    except InvalidSignature:
        return [Check("dev-signature", False,
                      "the Ed25519 signature does not verify: the report was altered, or "
                      "signed by another key than the one it names")]
    fp = fingerprint(public)
    if not trusted_keys:
        checks.append(Check("dev-key", True,
                            f"attestation key {fp} is not pinned (no dev_attestation_keys in "
                            "the policy): anyone with any key could have made this report"))
    elif fp in trusted_keys:
        checks.append(Check("dev-key", True, f"attestation key {fp} is pinned by the policy"))
    else:
        checks.append(Check("dev-key", False,
                            f"attestation key {fp} is not one of the policy's "
                            "dev_attestation_keys: signed by another key"))
    return checks
