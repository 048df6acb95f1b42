"""SEV-SNP: a real published report through pinned AMD roots, then synthetic reports.

Real data (``tests/vectors/data/attest``, provenance in its README): a Milan
ATTESTATION_REPORT with the VCEK that signed it, AMD's Milan ASK/ARK, the
Genoa ARK (with its VLEK signing key) and the Turin ASK/ARK. Everything a
real report can show is checked on it: parsing, the ECDSA signature, the
chain to the pinned ARK, the VCEK's TCB/chip binding and policy results.

Synthetic data: reports built here and signed by a TEST CA ("TEST ARK (not
AMD)", ECDSA instead of AMD's RSA-PSS), trusted only through ``extra_roots``,
exercise what the real report cannot: debug guests, low TCBs, foreign
chips, substituted keys, the certificate table, the provider and the whole
report round trip. The provider itself is UNTESTED ON HARDWARE.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from sealtune.attest import snp
from sealtune.attest._pki import load_pem_chain, spki_sha256
from sealtune.attest._tsm import ConfigfsTsm, TsmReport
from sealtune.attest.base import get_provider
from sealtune.attest.report import Measurement, build_report
from sealtune.attest.verify import VerificationFailed, VerificationPolicy, verify_report
from sealtune.core.protocol import ServerKeys, encode_key_configs
from sealtune.errors import AttestationError

MILAN_MEASUREMENT = ("a0431c00c36c43b68705e54c7544830d1f2cf536a6f3b94a"
                     "991d1e475d9a88b2aa8e4481e8107b75c8b761c2357c0ec2")
MILAN_REPORT_DATA = ("ef9507b5391b3df87972310b8d2bc58a6432b321a521ff579d66478282a99a8b"
                     "8db1c6803947afff068d8c918f230dfea37cafabbd4bca560eeb1654e6de53a6")
CHIP = bytes(range(64))


# -- the published Milan report -------------------------------------------------------------


@pytest.fixture(scope="module")
def real(vectors: Path) -> tuple[bytes, bytes]:
    report = bytes.fromhex("".join((vectors / "snp-milan-report.hex").read_text().split()))
    chain = (vectors / "snp-milan-vcek.pem").read_bytes() + \
        (vectors / "amd-milan-ask-ark.pem").read_bytes()
    return report, chain


def _ev(report: bytes, table: bytes | None = None) -> dict[str, Any]:
    return {"report": base64.b64encode(report).decode(),
            "cert_table": None if table is None else base64.b64encode(table).decode()}


def test_real_report_fields(real: tuple[bytes, bytes]) -> None:
    r = snp.parse_report(real[0])
    assert (r.version, r.guest_svn, r.policy, r.vmpl, r.signature_algo) == (2, 0, 0x30000, 0, 1)
    assert not r.debug and r.signing_key == "VCEK" and r.platform_info == 3
    assert r.reported_tcb == snp.Tcb(bootloader=3, tee=0, snp=8, microcode=115)
    assert r.current_tcb == r.committed_tcb == r.launch_tcb == r.reported_tcb
    assert r.measurement.hex() == MILAN_MEASUREMENT
    assert r.report_data.hex() == MILAN_REPORT_DATA
    assert r.chip_id[:4].hex() == "20028d46"


def test_real_report_verifies_to_the_pinned_milan_ark(real: tuple[bytes, bytes],
                                                      now: datetime) -> None:
    report, chain = real
    policy = snp.SnpPolicy(cert_chain_pem=chain, measurements=(MILAN_MEASUREMENT,),
                           min_tcb={"bootloader": 3, "snp": 8, "microcode": 115})
    checks = snp.verify_evidence(_ev(report), report_data=report[0x50:0x90], policy=policy,
                                 now=now)
    assert [(c.name, c.ok) for c in checks] == [
        ("snp-report", True), ("snp-certificates", True), ("snp-signature", True),
        ("snp-vcek-tcb", True), ("snp-report-data", True), ("snp-debug", True),
        ("snp-tcb", True), ("snp-launch-measurement", True)]
    assert "ARK-Milan (pinned AMD root key)" in checks[1].explanation


def test_real_report_policy_failures(real: tuple[bytes, bytes], now: datetime) -> None:
    report, chain = real
    policy = snp.SnpPolicy(cert_chain_pem=chain, min_tcb={"microcode": 200})
    checks = {c.name: c for c in snp.verify_evidence(
        _ev(report), report_data=bytes(64), policy=policy, now=now)}
    assert not checks["snp-report-data"].ok
    assert not checks["snp-tcb"].ok and "microcode 115 < 200" in checks["snp-tcb"].explanation
    assert not checks["snp-launch-measurement"].ok  # no reference values: fail closed


@pytest.mark.parametrize("offset", [0x08, 0x50, 0x90, 0x1A0, 0x2A0])
def test_real_report_tampered(real: tuple[bytes, bytes], now: datetime, offset: int) -> None:
    report = bytearray(real[0])
    report[offset] ^= 1
    checks = snp.verify_evidence(_ev(bytes(report)), report_data=bytes(64),
                                 policy=snp.SnpPolicy(cert_chain_pem=real[1]), now=now)
    assert checks[-1].name == "snp-signature" and not checks[-1].ok


def test_real_chain_expiry_and_wrong_root(real: tuple[bytes, bytes], vectors: Path) -> None:
    report, chain = real
    late = datetime(2030, 1, 1, tzinfo=UTC)
    checks = snp.verify_evidence(_ev(report), report_data=bytes(64),
                                 policy=snp.SnpPolicy(cert_chain_pem=chain), now=late)
    assert not checks[-1].ok and "not valid at" in checks[-1].explanation
    turin = (vectors / "snp-milan-vcek.pem").read_bytes() + \
        (vectors / "amd-turin-ask-ark.pem").read_bytes()
    checks = snp.verify_evidence(_ev(report), report_data=bytes(64),
                                 policy=snp.SnpPolicy(cert_chain_pem=turin),
                                 now=datetime(2025, 6, 1, tzinfo=UTC))
    assert checks[-1].name == "snp-certificates" and not checks[-1].ok


@pytest.mark.parametrize(("name", "ark"), [("amd-milan-ask-ark.pem", "ARK-Milan"),
                                           ("amd-genoa-vlek-ask-ark.pem", "ARK-Genoa"),
                                           ("amd-turin-ask-ark.pem", "ARK-Turin")])
def test_pinned_arks_are_amds(vectors: Path, name: str, ark: str) -> None:
    intermediate, root = load_pem_chain((vectors / name).read_bytes())
    assert snp.PINNED_ARKS[spki_sha256(root)] == ark
    root.verify_directly_issued_by(root)
    intermediate.verify_directly_issued_by(root)


# -- synthetic reports under a TEST CA ------------------------------------------------------


def _tcb_bytes(bl: int, tee: int, snp_: int, ucode: int) -> bytes:
    return bytes([bl, tee, 0, 0, 0, 0, snp_, ucode])


def sign_report(key: ec.EllipticCurvePrivateKey, *, report_data: bytes, chip: bytes = CHIP,
                measurement: bytes = b"\x11" * 48, policy: int = 0x30000,
                tcb: tuple[int, int, int, int] = (3, 0, 8, 115), version: int = 2,
                family: int = 0) -> bytes:
    b = bytearray(snp.REPORT_SIZE)
    struct.pack_into("<IIQ", b, 0, version, 0, policy)
    struct.pack_into("<II", b, 0x30, 0, 1)
    for offset in (0x38, 0x180, 0x1E0, 0x1F0):
        b[offset : offset + 8] = _tcb_bytes(*tcb)
    b[0x188] = family
    b[0x50:0x90], b[0x90:0xC0], b[0x1A0:0x1E0] = report_data, measurement, chip
    r, s = decode_dss_signature(key.sign(bytes(b[: snp.SIGNED_SIZE]), ec.ECDSA(hashes.SHA384())))
    b[0x2A0:0x2E8], b[0x2E8:0x330] = r.to_bytes(72, "little"), s.to_bytes(72, "little")
    return bytes(b)


def _amd_ext(oid: str, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value)


class FakeAmd:
    """A TEST ARK -> ASK -> VCEK hierarchy (not AMD) and a fake configfs-tsm over it."""

    def __init__(self, pki: Any, *, chip: bytes = CHIP,
                 tcb: tuple[int, int, int, int] = (3, 0, 8, 115)) -> None:
        self.ark = pki.root("sealtune TEST ARK (not AMD)")
        self.ask = pki.issue("sealtune TEST ASK (not AMD)", self.ark, ca=True)
        bl, tee, snp_, ucode = tcb
        exts = tuple(_amd_ext(f"1.3.6.1.4.1.3704.1.3.{i}", bytes([2, 1, v]))
                     for i, v in ((1, bl), (2, tee), (3, snp_), (8, ucode)))
        self.vcek = pki.issue("sealtune TEST VCEK (not AMD)", self.ask, ca=False,
                              extensions=(*exts, _amd_ext("1.3.6.1.4.1.3704.1.4", chip)))
        self.roots = {spki_sha256(self.ark.cert): "TEST ARK (not AMD)"}
        self.calls: list[bytes] = []

    def table(self) -> bytes:
        der = serialization.Encoding.DER
        return snp.build_cert_table({"vcek": self.vcek.cert.public_bytes(der),
                                     "ask": self.ask.cert.public_bytes(der),
                                     "ark": self.ark.cert.public_bytes(der)})

    def report(self, inblob: bytes) -> TsmReport:
        self.calls.append(inblob)
        return TsmReport("sev_guest", sign_report(self.vcek.key, report_data=inblob), self.table())


@pytest.fixture(scope="module")
def amd(pki384: Any) -> FakeAmd:
    return FakeAmd(pki384)


def _verify(amd: FakeAmd, report: bytes, now: datetime, *, rd: bytes = b"\x42" * 64,
            **policy: Any) -> dict[str, Any]:
    pol = snp.SnpPolicy(extra_roots=amd.roots, measurements=("11" * 48,), **policy)
    checks = snp.verify_evidence(_ev(report, amd.table()), report_data=rd, policy=pol, now=now)
    return {c.name: c for c in checks}


def test_synthetic_report_passes_only_with_the_test_root(amd: FakeAmd, now: datetime) -> None:
    report = sign_report(amd.vcek.key, report_data=b"\x42" * 64)
    checks = _verify(amd, report, now)
    assert all(c.ok for c in checks.values()) and len(checks) == 8
    assert "EXTRA root" in checks["snp-certificates"].explanation
    plain = snp.verify_evidence(_ev(report, amd.table()), report_data=b"\x42" * 64,
                                policy=snp.SnpPolicy(), now=now)
    assert not plain[-1].ok and "not a pinned root key" in plain[-1].explanation


def test_debug_guest(amd: FakeAmd, now: datetime) -> None:
    report = sign_report(amd.vcek.key, report_data=b"\x42" * 64,
                         policy=0x30000 | snp.DEBUG_POLICY_BIT)
    assert not _verify(amd, report, now)["snp-debug"].ok
    assert _verify(amd, report, now, allow_debug=True)["snp-debug"].ok


def test_minimum_tcb_and_measurement(amd: FakeAmd, now: datetime) -> None:
    report = sign_report(amd.vcek.key, report_data=b"\x42" * 64)
    assert not _verify(amd, report, now, min_tcb={"snp": 9})["snp-tcb"].ok
    assert _verify(amd, report, now, min_tcb={"snp": 8, "tee": 0})["snp-tcb"].ok
    other = sign_report(amd.vcek.key, report_data=b"\x42" * 64, measurement=b"\x22" * 48)
    assert not _verify(amd, other, now)["snp-launch-measurement"].ok


def test_report_data_substitution(amd: FakeAmd, now: datetime) -> None:
    report = sign_report(amd.vcek.key, report_data=b"\x43" * 64)
    assert not _verify(amd, report, now)["snp-report-data"].ok


@pytest.mark.parametrize(("kwargs", "needle"), [({"chip": b"\x01" * 64}, "chip id"),
                                                ({"tcb": (3, 0, 9, 115)}, "snp")])
def test_vcek_for_another_chip_or_tcb(amd: FakeAmd, now: datetime, kwargs: dict[str, Any],
                                      needle: str) -> None:
    report = sign_report(amd.vcek.key, report_data=b"\x42" * 64, **kwargs)
    check = _verify(amd, report, now)["snp-vcek-tcb"]
    assert not check.ok and needle in check.explanation


def test_signed_by_another_key(amd: FakeAmd, now: datetime) -> None:
    report = sign_report(ec.generate_private_key(ec.SECP384R1()), report_data=b"\x42" * 64)
    assert not _verify(amd, report, now)["snp-signature"].ok


def test_cert_table_and_parse_errors(amd: FakeAmd) -> None:
    table = amd.table()
    assert set(snp.parse_cert_table(table)) == {"vcek", "ask", "ark"}
    assert snp.parse_cert_table(b"") == {}
    into_header = snp.CERT_GUIDS["vcek"] + struct.pack("<II", 0, 8) + bytes(24)
    with pytest.raises(AttestationError, match="malformed"):
        snp.parse_cert_table(into_header)
    with pytest.raises(AttestationError, match="not terminated"):
        snp.parse_cert_table(snp.CERT_GUIDS["vcek"] + struct.pack("<II", 0, 24))
    bad = bytearray(table)
    struct.pack_into("<I", bad, 16, len(table))
    with pytest.raises(AttestationError, match="malformed"):
        snp.parse_cert_table(bytes(bad))
    with pytest.raises(AttestationError, match="1184 bytes"):
        snp.parse_report(bytes(100))
    with pytest.raises(AttestationError, match="version 1"):
        snp.parse_report(struct.pack("<I", 1) + bytes(snp.REPORT_SIZE - 4))


def test_missing_certificates_and_bad_evidence(amd: FakeAmd, now: datetime) -> None:
    report = sign_report(amd.vcek.key, report_data=b"\x42" * 64)
    (check,) = snp.verify_evidence(_ev(report), report_data=b"\x42" * 64,
                                   policy=snp.SnpPolicy(), now=now)
    assert not check.ok and "snp.cert_chain" in check.explanation
    for payload in ({"report": "***", "cert_table": None}, {"report": 1}, {"other": 1}):
        (check,) = snp.verify_evidence(payload, report_data=bytes(64), policy=snp.SnpPolicy(),
                                       now=now)
        assert not check.ok


def test_turin_tcb_layout() -> None:
    raw = bytes([1, 2, 3, 4, 0, 0, 0, 9])
    assert snp.Tcb.decode(raw, turin=True) == snp.Tcb(bootloader=2, tee=3, snp=4, microcode=9,
                                                      fmc=1)
    key = ec.generate_private_key(ec.SECP384R1())
    report = snp.parse_report(sign_report(key, report_data=bytes(64), version=3, family=0x1A))
    assert report.reported_tcb == snp.Tcb(bootloader=0, tee=0, snp=0, microcode=115, fmc=3)


# -- the provider, configfs-tsm and the full report round trip --------------------------------


def test_provider_round_trip(amd: FakeAmd, now: datetime) -> None:
    provider = get_provider("sev-snp", tsm=amd)
    assert provider.is_tee and provider.untested_on_hardware
    keys = ServerKeys(now=0)
    m = Measurement(code="a" * 64, model="b" * 64, config="c" * 64)
    report = build_report(provider, key_configs=encode_key_configs(keys.key_configs(now=0)),
                          measurement=m, nonce=b"n" * 16, now=now)
    assert report["is_tee"] is True and "untested on hardware" in report["warning"]
    policy = VerificationPolicy(snp=snp.SnpPolicy(extra_roots=amd.roots,
                                                  measurements=("11" * 48,)))
    result = verify_report(report, policy=policy, nonce=b"n" * 16, now=now)
    assert result.ok and result.untested_on_hardware and result.is_tee
    assert result.key_configs == keys.key_configs(now=0)
    assert any("not the vendor's" in w for w in result.warnings)
    assert any("untested on hardware" in w for w in result.warnings)
    tampered = dict(report, measurement=dict(report["measurement"], model="d" * 64))
    with pytest.raises(VerificationFailed):
        verify_report(tampered, policy=policy, nonce=b"n" * 16, now=now)
    strict = replace(policy, snp=replace(policy.snp, extra_roots={}))
    with pytest.raises(VerificationFailed, match="snp-certificates"):
        verify_report(report, policy=strict, nonce=b"n" * 16, now=now)


def test_provider_refuses_a_report_for_other_data(amd: FakeAmd) -> None:
    class Liar:
        def report(self, inblob: bytes) -> TsmReport:
            return amd.report(bytes(64))

    with pytest.raises(AttestationError, match="requested report data"):
        snp.SnpProvider(tsm=Liar()).evidence(b"\x01" * 64)


def test_not_running_on_snp(tmp_path: Path) -> None:
    tsm = ConfigfsTsm(platform="SEV-SNP", expected_provider="sev_guest", root=tmp_path / "none")
    with pytest.raises(AttestationError, match=r"not running on SEV-SNP: .*none not found"):
        snp.SnpProvider(tsm=tsm).evidence(bytes(64))


def _entry(tmp_path: Path, provider: str, outblob: bytes) -> Path:
    entry = tmp_path / "entry"
    entry.mkdir()
    (entry / "provider").write_text(provider + "\n")
    (entry / "generation").write_text("1\n")
    (entry / "outblob").write_bytes(outblob)
    (entry / "auxblob").write_bytes(b"AUX")
    return entry


def test_configfs_collect(tmp_path: Path) -> None:
    tsm = ConfigfsTsm(platform="SEV-SNP", expected_provider="sev_guest", root=tmp_path)
    got = tsm.collect(_entry(tmp_path, "sev_guest", b"REPORT"), b"\x07" * 64)
    assert got == TsmReport("sev_guest", b"REPORT", b"AUX")
    assert (tmp_path / "entry" / "inblob").read_bytes() == b"\x07" * 64


@pytest.mark.parametrize(("provider", "outblob", "message"), [
    ("tdx_guest", b"R", "provider is 'tdx_guest'"), ("sev_guest", b"", "empty report")])
def test_configfs_errors(tmp_path: Path, provider: str, outblob: bytes, message: str) -> None:
    tsm = ConfigfsTsm(platform="SEV-SNP", expected_provider="sev_guest", root=tmp_path)
    with pytest.raises(AttestationError, match=message):
        tsm.collect(_entry(tmp_path, provider, outblob), bytes(64))
    with pytest.raises(AttestationError, match="64 bytes"):
        tsm.report(b"short")


def test_configfs_generation_race(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sealtune.attest._tsm as tsm_module

    entry = _entry(tmp_path, "sev_guest", b"R")
    reads = iter(range(100))
    monkeypatch.setattr(tsm_module, "_read_int", lambda path: next(reads))  # another writer
    tsm = ConfigfsTsm(platform="SEV-SNP", expected_provider="sev_guest", root=tmp_path)
    with pytest.raises(AttestationError, match="another writer"):
        tsm.collect(entry, bytes(64))
