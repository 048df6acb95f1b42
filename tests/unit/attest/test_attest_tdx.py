"""TDX: a real published quote through the pinned Intel root, then synthetic quotes.

Real data (``tests/vectors/data/attest/tdx-quote-v4.hex``, provenance in its
README): a TDX quote v4 whose certification data carries the full PCK
chain. Every authenticity check runs on it unchanged: the PCK chain to the
pinned Intel SGX Root CA key, the QE report signature, the QE's binding of
the attestation key, the QE identity and the quote signature.

Synthetic data: quotes built here under a TEST CA ("TEST SGX Root CA (not
Intel)", trusted only through ``extra_roots``) exercise what the real quote
cannot: debuggable TDs, other QEs, substituted keys and report data, the
provider and the report round trip. The provider is UNTESTED ON HARDWARE.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from sealtune.attest import tdx
from sealtune.attest._pki import load_pem_chain, spki_sha256
from sealtune.attest._tsm import ConfigfsTsm, TsmReport
from sealtune.attest.base import get_provider
from sealtune.attest.report import Measurement, build_report
from sealtune.attest.verify import VerificationFailed, VerificationPolicy, verify_report
from sealtune.core.protocol import ServerKeys, encode_key_configs
from sealtune.errors import AttestationError

REAL_MRTD = ("7ba9e262ce6979087e34632603f354dd8f8a870f5947d116"
             "af8114db6c9d0d74c48bec4280e5b4f4a37025a10905bb29")


@pytest.fixture(scope="module")
def real(vectors: Path) -> bytes:
    text = (vectors / "tdx-quote-v4.hex").read_text().strip()
    assert text.startswith("0x")
    return bytes.fromhex(text[2:])


def _ev(quote: bytes) -> dict[str, Any]:
    return {"quote": base64.b64encode(quote).decode()}


def test_real_quote_fields(real: bytes) -> None:
    q = tdx.parse_quote(real)
    assert len(real) == 5006 and len(q.raw) == 4936  # 70 bytes of padding follow the quote
    assert q.version == 4 and q.mrtd.hex() == REAL_MRTD
    assert q.tee_tcb_svn.hex() == "05010200000000000000000000000000"
    assert q.td_attributes == 0x10000000 and not q.debug
    assert q.qe_report[128:160] == tdx.INTEL_QE_MRSIGNER
    assert q.qe_auth_data == bytes(range(32))
    subjects = [c.subject.rfc4514_string() for c in load_pem_chain(q.pck_chain_pem)]
    assert [s.split("CN=")[1] for s in subjects] == [
        "Intel SGX PCK Certificate", "Intel SGX PCK Platform CA", "Intel SGX Root CA"]


def test_real_quote_verifies_to_the_pinned_intel_root(real: bytes, now: datetime) -> None:
    q = tdx.parse_quote(real)
    policy = tdx.TdxPolicy(mrtd=(REAL_MRTD,), rtmr={0: (q.rtmrs[0].hex(),)},
                           min_tee_tcb_svn="05010200000000000000000000000000")
    checks = tdx.verify_evidence(_ev(real), report_data=q.report_data, policy=policy, now=now)
    assert [(c.name, c.ok) for c in checks] == [
        ("tdx-quote", True), ("tdx-pck-chain", True), ("tdx-qe-signature", True),
        ("tdx-qe-binding", True), ("tdx-qe-identity", True), ("tdx-quote-signature", True),
        ("tdx-report-data", True), ("tdx-debug", True), ("tdx-mrtd", True), ("tdx-rtmr0", True),
        ("tdx-tee-tcb-svn", True)]
    assert "Intel SGX Root CA (pinned Intel root key)" in checks[1].explanation


def test_pinned_intel_root(vectors: Path, real: bytes) -> None:
    (root,) = load_pem_chain((vectors / "intel-sgx-root-ca.pem").read_bytes())
    assert tdx.PINNED_ROOTS[spki_sha256(root)] == "Intel SGX Root CA"
    assert load_pem_chain(tdx.parse_quote(real).pck_chain_pem)[-1] == root


def test_real_quote_policy_failures(real: bytes, now: datetime) -> None:
    policy = tdx.TdxPolicy(mrtd=("00" * 48,), rtmr={3: ("00" * 48,)},
                           min_tee_tcb_svn="06000000000000000000000000000000")
    checks = {c.name: c for c in tdx.verify_evidence(_ev(real), report_data=bytes(64),
                                                     policy=policy, now=now)}
    for name in ("tdx-report-data", "tdx-mrtd", "tdx-rtmr3", "tdx-tee-tcb-svn"):
        assert not checks[name].ok, name
    empty = tdx.verify_evidence(_ev(real), report_data=bytes(64), policy=tdx.TdxPolicy(),
                                now=now)
    assert empty[-1].name == "tdx-mrtd" and not empty[-1].ok  # no reference: fail closed


@pytest.mark.parametrize(("offset", "failing"), [
    (200, "tdx-quote-signature"),   # MRTD
    (600, "tdx-quote-signature"),   # report data
    (640, "tdx-quote-signature"),   # the signature itself
    (700, "tdx-qe-binding"),        # the attestation key
    (770, "tdx-qe-signature"),      # the QE report
    (1154, "tdx-qe-signature"),     # the QE signature
    (1220, "tdx-qe-binding"),       # the QE auth data
])
def test_real_quote_tampered(real: bytes, now: datetime, offset: int, failing: str) -> None:
    quote = bytearray(real)
    quote[offset] ^= 1
    checks = tdx.verify_evidence(_ev(bytes(quote)), report_data=bytes(64),
                                 policy=tdx.TdxPolicy(), now=now)
    assert checks[-1].name == failing and not checks[-1].ok


def test_real_quote_after_pck_expiry(real: bytes) -> None:
    checks = tdx.verify_evidence(_ev(real), report_data=bytes(64), policy=tdx.TdxPolicy(),
                                 now=datetime(2032, 1, 1, tzinfo=UTC))
    assert checks[-1].name == "tdx-pck-chain" and "not valid at" in checks[-1].explanation


# -- synthetic quotes under a TEST CA -------------------------------------------------------


def _rs(signature: bytes) -> bytes:
    r, s = decode_dss_signature(signature)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class FakeIntel:
    """A TEST root -> platform CA -> PCK hierarchy (not Intel) and a fake TD quote generator."""

    def __init__(self, pki: Any) -> None:
        self.root = pki.root("sealtune TEST SGX Root CA (not Intel)")
        self.ca = pki.issue("sealtune TEST PCK Platform CA (not Intel)", self.root, ca=True)
        self.pck = pki.issue("sealtune TEST PCK Certificate (not Intel)", self.ca, ca=False)
        self.roots = {spki_sha256(self.root.cert): "TEST SGX Root CA (not Intel)"}
        self.att = ec.generate_private_key(ec.SECP256R1())

    def quote(self, *, report_data: bytes, mrtd: bytes = b"\x33" * 48,
              td_attributes: int = 0x10000000, mrsigner: bytes = tdx.INTEL_QE_MRSIGNER,
              att: ec.EllipticCurvePrivateKey | None = None) -> bytes:
        att_key = self.att if att is None else att
        header = struct.pack("<HHIHH", 4, 2, 0x81, 0, 0) + bytes(36)
        body = bytearray(tdx.BODY_SIZE)
        body[0:16] = bytes([5, 1, 2]) + bytes(13)
        body[120:128] = td_attributes.to_bytes(8, "little")
        body[136:184], body[520:584] = mrtd, report_data
        att_pub = self.att.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)[1:]
        auth = bytes(range(32))
        qe = bytearray(384)
        qe[128:160], qe[256:258] = mrsigner, (2).to_bytes(2, "little")
        qe[320:352] = hashlib.sha256(att_pub + auth).digest()
        pem = b"".join(c.cert.public_bytes(serialization.Encoding.PEM)
                       for c in (self.pck, self.ca, self.root))
        cert = (bytes(qe) + _rs(self.pck.key.sign(bytes(qe), ec.ECDSA(hashes.SHA256())))
                + struct.pack("<H", len(auth)) + auth + struct.pack("<HI", 5, len(pem)) + pem)
        signed = header + bytes(body)
        sig = (_rs(att_key.sign(signed, ec.ECDSA(hashes.SHA256()))) + att_pub
               + struct.pack("<HI", 6, len(cert)) + cert)
        return signed + struct.pack("<I", len(sig)) + sig

    def report(self, inblob: bytes) -> TsmReport:
        return TsmReport("tdx_guest", self.quote(report_data=inblob), None)


@pytest.fixture(scope="module")
def intel(pki256: Any) -> FakeIntel:
    return FakeIntel(pki256)


def _verify(intel: FakeIntel, quote: bytes, now: datetime, **policy: Any) -> dict[str, Any]:
    pol = tdx.TdxPolicy(extra_roots=intel.roots, mrtd=("33" * 48,), **policy)
    checks = tdx.verify_evidence(_ev(quote), report_data=b"\x42" * 64, policy=pol, now=now)
    return {c.name: c for c in checks}


def test_synthetic_quote_needs_the_test_root(intel: FakeIntel, now: datetime) -> None:
    quote = intel.quote(report_data=b"\x42" * 64)
    checks = _verify(intel, quote, now)
    assert all(c.ok for c in checks.values()) and len(checks) == 9
    assert "EXTRA root" in checks["tdx-pck-chain"].explanation
    plain = tdx.verify_evidence(_ev(quote), report_data=b"\x42" * 64, policy=tdx.TdxPolicy(),
                                now=now)
    assert not plain[-1].ok and "not a pinned root key" in plain[-1].explanation


def test_debuggable_td(intel: FakeIntel, now: datetime) -> None:
    quote = intel.quote(report_data=b"\x42" * 64, td_attributes=0x10000001)
    assert not _verify(intel, quote, now)["tdx-debug"].ok
    assert _verify(intel, quote, now, allow_debug=True)["tdx-debug"].ok


def test_other_quoting_enclave(intel: FakeIntel, now: datetime) -> None:
    quote = intel.quote(report_data=b"\x42" * 64, mrsigner=b"\x01" * 32)
    assert not _verify(intel, quote, now)["tdx-qe-identity"].ok


def test_signed_by_another_key(intel: FakeIntel, now: datetime) -> None:
    quote = intel.quote(report_data=b"\x42" * 64, att=ec.generate_private_key(ec.SECP256R1()))
    assert not _verify(intel, quote, now)["tdx-quote-signature"].ok


def test_report_data_and_mrtd(intel: FakeIntel, now: datetime) -> None:
    assert not _verify(intel, intel.quote(report_data=bytes(64)), now)["tdx-report-data"].ok
    other = intel.quote(report_data=b"\x42" * 64, mrtd=b"\x44" * 48)
    assert not _verify(intel, other, now)["tdx-mrtd"].ok


@pytest.mark.parametrize(("quote", "message"), [
    (b"\x04\x00", "truncated"),
    (struct.pack("<HHI", 3, 2, 0x81) + bytes(700), "not a TDX quote v4"),
    (struct.pack("<HHI", 4, 2, 0x00) + bytes(700), "TEE type 0x0"),
])
def test_parse_errors(quote: bytes, message: str) -> None:
    with pytest.raises(AttestationError, match=message):
        tdx.parse_quote(quote)


def test_bad_evidence(now: datetime) -> None:
    for payload in ({"quote": "***"}, {"quote": 1}, {}, {"quote": "AA==", "x": 1}):
        (check,) = tdx.verify_evidence(payload, report_data=bytes(64), policy=tdx.TdxPolicy(),
                                       now=now)
        assert check.name == "tdx-quote" and not check.ok


def test_provider_round_trip(intel: FakeIntel, now: datetime) -> None:
    provider = get_provider("tdx", tsm=intel)
    assert provider.is_tee and provider.untested_on_hardware
    keys = ServerKeys(now=0)
    m = Measurement(code="a" * 64, model="b" * 64, config="c" * 64)
    report = build_report(provider, key_configs=encode_key_configs(keys.key_configs(now=0)),
                          measurement=m, nonce=None, now=now)
    policy = VerificationPolicy(tdx=tdx.TdxPolicy(extra_roots=intel.roots, mrtd=("33" * 48,)))
    result = verify_report(report, policy=policy, now=now)
    assert result.ok and result.platform == "tdx" and result.untested_on_hardware
    assert result.key_configs == keys.key_configs(now=0)
    swapped = dict(report, key_configs=base64.b64encode(encode_key_configs(
        ServerKeys(now=0).key_configs(now=0))).decode())
    with pytest.raises(VerificationFailed, match="report-data"):
        verify_report(swapped, policy=policy, now=now)


def test_not_running_on_tdx(tmp_path: Path) -> None:
    tsm = ConfigfsTsm(platform="TDX", expected_provider="tdx_guest", root=tmp_path / "none")
    with pytest.raises(AttestationError, match=r"not running on TDX: .*none not found"):
        tdx.TdxProvider(tsm=tsm).evidence(bytes(64))
