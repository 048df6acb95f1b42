"""Fixtures for the attestation tests: a TEST certificate authority and the vector files.

The test CA stands in for AMD's and Intel's roots so that the parser, the
signature checks and every policy check can be exercised on reports built
here. Its names say ``TEST ... (not AMD)`` / ``(not Intel)``: a verifier
only accepts it when a test passes it explicitly as an extra root.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "data" / "attest"
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
NOT_BEFORE = datetime(2024, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2034, 1, 1, tzinfo=UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Issued:
    """A key and the certificate that a TEST CA issued for it."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


class FakeVendorPki:
    """Builds TEST CA hierarchies (never a vendor's)."""

    def __init__(self, curve: ec.EllipticCurve) -> None:
        self.curve = curve
        self.hash: hashes.SHA256 | hashes.SHA384 = (
            hashes.SHA384() if isinstance(curve, ec.SECP384R1) else hashes.SHA256())

    def root(self, cn: str) -> Issued:
        key = ec.generate_private_key(self.curve)
        return Issued(key, self._build(cn, key, cn, key, ca=True))

    def issue(self, cn: str, issuer: Issued, *, ca: bool,
              extensions: tuple[x509.ExtensionType, ...] = ()) -> Issued:
        key = ec.generate_private_key(self.curve)
        return Issued(key, self._build(cn, key, issuer.cert.subject.rfc4514_string(),
                                       issuer.key, ca=ca, extensions=list(extensions),
                                       issuer_name=issuer.cert.subject))

    def _build(self, cn: str, key: ec.EllipticCurvePrivateKey, issuer_cn: str,
               issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool,
               extensions: list[x509.ExtensionType] | None = None,
               issuer_name: x509.Name | None = None) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(_name(cn))
                   .issuer_name(issuer_name or _name(issuer_cn))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        for ext in extensions or []:
            builder = builder.add_extension(ext, critical=False)
        return builder.sign(issuer_key, self.hash)


@pytest.fixture(scope="session")
def vectors() -> Path:
    return VECTORS


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture(scope="session")
def pki384() -> FakeVendorPki:
    return FakeVendorPki(ec.SECP384R1())


@pytest.fixture(scope="session")
def pki256() -> FakeVendorPki:
    return FakeVendorPki(ec.SECP256R1())
