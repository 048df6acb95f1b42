"""X.509 helpers shared by the SEV-SNP and TDX verifiers.

Roots are pinned by the SHA-256 of their SubjectPublicKeyInfo (the key, not
the certificate), so a root certificate re-issued with the same key still
verifies, and a look-alike certificate with another key never does.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning


class ChainError(Exception):
    """A certificate chain did not verify (message is safe to show)."""


def load_der(data: bytes) -> x509.Certificate:
    """Load one DER certificate; AMD's VCEKs carry serial number 0, which is tolerated."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        cert = x509.load_der_x509_certificate(data)
        cert.serial_number  # noqa: B018 -- parse it now, inside the filter
    return cert


def load_pem_chain(data: bytes) -> list[x509.Certificate]:
    """Load every certificate in a PEM bundle, in order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        certs = x509.load_pem_x509_certificates(data)
        for cert in certs:
            cert.serial_number  # noqa: B018
    return certs


def spki_sha256(cert: x509.Certificate) -> str:
    """SHA-256 (hex) of the certificate's SubjectPublicKeyInfo."""
    der = cert.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def verify_chain(chain: Sequence[x509.Certificate], *, pinned: dict[str, str],
                 now: datetime) -> str:
    """Verify ``leaf, intermediate..., root`` up to a pinned root key.

    Args:
        chain: leaf first, root last (the root must be self-signed).
        pinned: SPKI SHA-256 (hex) -> a name for that root.
        now: the time at which every certificate must be valid.

    Returns:
        The pinned name of the root that anchors the chain.

    Raises:
        ChainError: a signature, a validity period, a CA constraint or the pin failed.
    """
    if len(chain) < 2:
        raise ChainError("the certificate chain is incomplete")
    root = chain[-1]
    name = pinned.get(spki_sha256(root))
    if name is None:
        raise ChainError(f"the root {_cn(root)!r} is not a pinned root key")
    for i, cert in enumerate(chain):
        issuer = chain[min(i + 1, len(chain) - 1)]
        try:
            cert.verify_directly_issued_by(issuer)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            raise ChainError(f"{_cn(cert)!r} is not validly signed by {_cn(issuer)!r}") from None
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ChainError(f"{_cn(cert)!r} is not valid at {now:%Y-%m-%dT%H:%M:%SZ}")
        if cert is not chain[0] and not _is_ca(cert):
            raise ChainError(f"{_cn(cert)!r} is not a CA certificate")
    return name


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False
