"""AMD SEV-SNP: the provider (configfs-tsm) and the verifier. UNTESTED ON HARDWARE.

The verifier parses the 1184-byte ATTESTATION_REPORT (AMD SEV-SNP ABI
specification, "ATTESTATION_REPORT Structure"), checks its ECDSA P-384
signature with the VCEK (or VLEK), the VCEK -> ASK -> ARK chain up to a
pinned AMD root key (Milan, Genoa, Turin; pinned by SubjectPublicKeyInfo
SHA-256), that the VCEK certifies exactly the reported TCB and chip, and
the policy: debug off, a minimum TCB, the launch measurement in an allow-list.

What a passing result proves: an AMD secure processor with a key AMD
certified signed this report data for a guest with this launch measurement.
What it does not: it has not been run against a live SEV-SNP guest
(``untested_on_hardware``); certificate revocation (AMD KDS CRLs) is not
checked; the launch measurement covers the initial guest image only, so the
reference values must describe an image that measures what it later runs.
"""

from __future__ import annotations

import base64
import binascii
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sealtune.attest._pki import ChainError, load_der, load_pem_chain, verify_chain
from sealtune.attest._tsm import ConfigfsTsm, Tsm
from sealtune.attest.base import Check, Evidence
from sealtune.errors import AttestationError

PLATFORM = "sev-snp"
UNTESTED_ON_HARDWARE = True
REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
DEBUG_POLICY_BIT = 1 << 19
#: SHA-256 of the SubjectPublicKeyInfo of AMD's published ARKs (KDS cert_chain).
PINNED_ARKS: dict[str, str] = {
    "9f056bee44377e29308cb5ffa895bdfb62d18881fa6bed8d6f075b0204089cb9": "ARK-Milan",
    "429a69c9422aa258ee4d8db5fcda9c6470ef15f8cd5a9cebd6cbc7d90b863831": "ARK-Genoa",
    "4f125410563a2ab9a50356f9243f6fe0b6f73de98603f53f90339c70e9d7ad08": "ARK-Turin",
}
#: Certificate table GUIDs (GHCB specification), RFC 4122 byte order.
CERT_GUIDS: dict[str, bytes] = {
    "vcek": uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd").bytes,
    "vlek": uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1").bytes,
    "ask": uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782").bytes,
    "ark": uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae").bytes,
}
_OID_TCB = {"bootloader": "1.3.6.1.4.1.3704.1.3.1", "tee": "1.3.6.1.4.1.3704.1.3.2",
            "snp": "1.3.6.1.4.1.3704.1.3.3", "microcode": "1.3.6.1.4.1.3704.1.3.8",
            "fmc": "1.3.6.1.4.1.3704.1.3.9"}
_OID_HWID = "1.3.6.1.4.1.3704.1.4"
_SIGNING_KEYS = {0: "VCEK", 1: "VLEK", 7: "none"}


@dataclass(frozen=True)
class Tcb:
    """A TCB_VERSION: security patch levels of the firmware components."""

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    @classmethod
    def decode(cls, raw: bytes, *, turin: bool) -> Tcb:
        """Milan/Genoa: bl, tee, 4 reserved, snp, ucode.

        Turin: fmc, bl, tee, snp, 3 reserved, ucode.
        """
        if turin:
            return cls(bootloader=raw[1], tee=raw[2], snp=raw[3], microcode=raw[7], fmc=raw[0])
        return cls(bootloader=raw[0], tee=raw[1], snp=raw[6], microcode=raw[7])

    def as_dict(self) -> dict[str, int]:
        """The present components by name."""
        d = {"bootloader": self.bootloader, "tee": self.tee, "snp": self.snp,
             "microcode": self.microcode}
        return d if self.fmc is None else {"fmc": self.fmc, **d}

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.as_dict().items())


@dataclass(frozen=True)
class SnpReport:
    """The fields of an ATTESTATION_REPORT that sealtune uses."""

    raw: bytes
    version: int
    guest_svn: int
    policy: int
    vmpl: int
    signature_algo: int
    current_tcb: Tcb
    platform_info: int
    signing_key: str
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    reported_tcb: Tcb
    chip_id: bytes
    committed_tcb: Tcb
    launch_tcb: Tcb
    signature_r: int
    signature_s: int

    @property
    def debug(self) -> bool:
        """Whether the guest policy allows debugging (the hypervisor can read its memory)."""
        return bool(self.policy & DEBUG_POLICY_BIT)


def parse_report(raw: bytes) -> SnpReport:
    """Parse an ATTESTATION_REPORT (version 2 or later, 1184 bytes).

    Raises:
        AttestationError: wrong size, unsupported version or malformed.
    """
    if len(raw) != REPORT_SIZE:
        raise AttestationError(f"an SEV-SNP report is {REPORT_SIZE} bytes, not {len(raw)}")
    version, guest_svn, policy = struct.unpack_from("<IIQ", raw, 0)
    if version < 2:
        raise AttestationError(f"SEV-SNP report version {version} is not supported (need >= 2)")
    vmpl, algo = struct.unpack_from("<II", raw, 0x30)
    (platform_info,) = struct.unpack_from("<Q", raw, 0x40)
    (key_info,) = struct.unpack_from("<I", raw, 0x48)
    turin = version >= 3 and raw[0x188] == 0x1A  # CPUID family 1Ah = Turin
    def tcb(offset: int) -> Tcb:
        return Tcb.decode(raw[offset : offset + 8], turin=turin)
    return SnpReport(
        raw=bytes(raw), version=version, guest_svn=guest_svn, policy=policy, vmpl=vmpl,
        signature_algo=algo, current_tcb=tcb(0x38), platform_info=platform_info,
        signing_key=_SIGNING_KEYS.get((key_info >> 2) & 7, "reserved"),
        report_data=raw[0x50:0x90], measurement=raw[0x90:0xC0], host_data=raw[0xC0:0xE0],
        id_key_digest=raw[0xE0:0x110], author_key_digest=raw[0x110:0x140],
        report_id=raw[0x140:0x160], reported_tcb=tcb(0x180), chip_id=raw[0x1A0:0x1E0],
        committed_tcb=tcb(0x1E0), launch_tcb=tcb(0x1F0),
        signature_r=int.from_bytes(raw[0x2A0:0x2E8], "little"),
        signature_s=int.from_bytes(raw[0x2E8:0x330], "little"))


def parse_cert_table(blob: bytes) -> dict[str, bytes]:
    """Parse the extended report's certificate table into ``{"vcek"|"vlek"|"ask"|"ark": DER}``.

    An empty blob is an empty table. Unknown GUIDs are skipped.

    Raises:
        AttestationError: an entry points into the header or outside the blob, or the
            table is not terminated by an all-zero entry.
    """
    names = {guid: name for name, guid in CERT_GUIDS.items()}
    entries: list[tuple[bytes, int, int]] = []
    for pos in range(0, len(blob) - 23, 24):
        guid, offset, length = blob[pos : pos + 16], *struct.unpack_from("<II", blob, pos + 16)
        if guid == bytes(16) and offset == length == 0:
            header = pos + 24
            if any(o < header or o + n > len(blob) or n == 0 for _, o, n in entries):
                raise AttestationError("the SEV-SNP certificate table is malformed")
            return {names[g]: blob[o : o + n] for g, o, n in entries if g in names}
        entries.append((guid, offset, length))
    if not blob:
        return {}
    raise AttestationError("the SEV-SNP certificate table is not terminated")


def build_cert_table(certs: Mapping[str, bytes]) -> bytes:
    """The inverse of :func:`parse_cert_table` (used by tests and fakes)."""
    header = 24 * (len(certs) + 1)
    entries, body = b"", b""
    for name, der in certs.items():
        entries += CERT_GUIDS[name] + struct.pack("<II", header + len(body), len(der))
        body += der
    return entries + bytes(24) + body


@dataclass(frozen=True)
class SnpPolicy:
    """What an SEV-SNP report must satisfy.

    Attributes:
        allow_debug: accept guests whose policy allows debugging (never in production).
        min_tcb: minimum reported TCB per component (bootloader, tee, snp, microcode, fmc).
        measurements: allowed launch measurements (96 hex digits); empty fails closed.
        cert_chain_pem: VCEK/ASK/ARK certificates to use when the report carries none.
        extra_roots: SPKI SHA-256 -> name of additional trusted roots (tests only:
            every result then warns that a non-AMD root was trusted).
    """

    allow_debug: bool = False
    min_tcb: Mapping[str, int] = field(default_factory=dict)
    measurements: tuple[str, ...] = ()
    cert_chain_pem: bytes | None = None
    extra_roots: Mapping[str, str] = field(default_factory=dict)


class SnpProvider:
    """Reads SEV-SNP reports through configfs-tsm. UNTESTED ON HARDWARE.

    Args:
        tsm: the configfs-tsm adapter (the real one by default).
    """

    platform = PLATFORM
    is_tee = True
    untested_on_hardware = UNTESTED_ON_HARDWARE

    def __init__(self, tsm: Tsm | None = None) -> None:
        self._tsm = tsm or ConfigfsTsm(platform="SEV-SNP", expected_provider="sev_guest")

    def evidence(self, report_data: bytes) -> Evidence:
        """Request a report binding ``report_data``; include the certificate table if any."""
        got = self._tsm.report(report_data)
        report = parse_report(got.outblob[:REPORT_SIZE])
        if report.report_data != report_data:
            raise AttestationError("the SEV-SNP report does not carry the requested report data")
        table = got.auxblob
        return Evidence(platform=PLATFORM, is_tee=True, payload={
            "report": base64.b64encode(report.raw).decode("ascii"),
            "cert_table": None if not table else base64.b64encode(table).decode("ascii"),
        })


def _certs(payload: dict[str, Any], policy: SnpPolicy) -> list[x509.Certificate]:
    table = payload.get("cert_table")
    found: dict[str, x509.Certificate] = {}
    if table is not None:
        if not isinstance(table, str):
            raise AttestationError("cert_table must be base64")
        for name, der in parse_cert_table(_b64(table)).items():
            found[name] = load_der(der)
    for cert in load_pem_chain(policy.cert_chain_pem) if policy.cert_chain_pem else []:
        self_signed = cert.issuer == cert.subject
        name = "ark" if self_signed else ("ask" if _is_ca(cert) else "vcek")
        found.setdefault(name, cert)
    leaf = found.get("vcek") or found.get("vlek")
    if leaf is None or "ask" not in found or "ark" not in found:
        raise AttestationError("the SEV-SNP evidence lacks the VCEK, ASK or ARK certificate: "
                               "give them (from AMD KDS) in the policy's snp.cert_chain")
    return [leaf, found["ask"], found["ark"]]


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AttestationError("the SEV-SNP evidence is not valid base64") from None


def _ext(cert: x509.Certificate, oid: str) -> bytes | None:
    """The content of an AMD extension, or None.

    The SPLs are a DER INTEGER inside extnValue; the hwID is the raw bytes
    themselves (64 bytes; 8 on Turin), as AMD KDS issues them.
    """
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value
    except x509.ExtensionNotFound:
        return None
    value: bytes = ext.value  # type: ignore[attr-defined]
    if oid == _OID_HWID:
        return value if len(value) in (8, 64) else None
    if len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2:
        return None
    return value[2:]


def _vcek_binding(report: SnpReport, leaf: x509.Certificate) -> Check:
    """The VCEK (or VLEK) must certify exactly the reported TCB; a VCEK also the chip."""
    key = report.signing_key
    mismatched = []
    for name, want in report.reported_tcb.as_dict().items():
        got = _ext(leaf, _OID_TCB[name])
        if got is None or int.from_bytes(got, "big") != want:
            mismatched.append(name)
    hwid = _ext(leaf, _OID_HWID)
    if key != "VLEK" and (hwid is None or hwid != report.chip_id[: len(hwid)]
                          or any(report.chip_id[len(hwid):])):
        mismatched.append("chip id")
    if mismatched:
        return Check("snp-vcek-tcb", False, f"the {key} does not certify this report's "
                     + ", ".join(mismatched) + ": it was issued for another chip or TCB")
    what = "TCB" if key == "VLEK" else "chip and TCB"
    return Check("snp-vcek-tcb", True, f"the {key} certifies this {what} "
                 f"({report.reported_tcb})")


def verify_evidence(payload: dict[str, Any], *, report_data: bytes, policy: SnpPolicy,
                    now: datetime) -> list[Check]:
    """Verify an ``sev-snp`` evidence payload; stop at the first authenticity failure."""
    checks: list[Check] = []
    try:
        if set(payload) - {"report", "cert_table"} or not isinstance(payload.get("report"), str):
            raise AttestationError("the evidence must have report (base64) and cert_table")
        report = parse_report(_b64(payload["report"]))
        if report.signature_algo != 1:
            raise AttestationError(f"signature algorithm {report.signature_algo} is not "
                                   "ECDSA P-384 with SHA-384")
        chain = _certs(payload, policy)
    except AttestationError as exc:
        return [Check("snp-report", False, exc.message)]
    checks.append(Check("snp-report", True, f"SEV-SNP report v{report.version}, VMPL "
                        f"{report.vmpl}, signed by {report.signing_key}, chip "
                        f"{report.chip_id[:8].hex()}..."))
    try:
        root = verify_chain(chain, pinned={**PINNED_ARKS, **policy.extra_roots}, now=now)
    except ChainError as exc:
        checks.append(Check("snp-certificates", False, str(exc)))
        return checks
    pinned = "pinned AMD root key" if root in PINNED_ARKS.values() else \
        "an EXTRA root from the policy, not AMD's"
    checks.append(Check("snp-certificates", True,
                        f"{report.signing_key} -> ASK -> {root} ({pinned})"))
    leaf_key = chain[0].public_key()
    try:
        if not isinstance(leaf_key, ec.EllipticCurvePublicKey):
            raise InvalidSignature
        leaf_key.verify(encode_dss_signature(report.signature_r, report.signature_s),
                        report.raw[:SIGNED_SIZE], ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        checks.append(Check("snp-signature", False, "the report's signature does not verify "
                            f"with the {report.signing_key}: altered or signed by another key"))
        return checks
    checks.append(Check("snp-signature", True, f"ECDSA P-384 signature by the "
                        f"{report.signing_key} verifies"))
    checks.append(_vcek_binding(report, chain[0]))
    if not checks[-1].ok:
        return checks
    return checks + _policy_checks(report, report_data, policy)


def _policy_checks(report: SnpReport, report_data: bytes, policy: SnpPolicy) -> list[Check]:
    checks = [Check("snp-report-data", report.report_data == report_data,
                    "the hardware report binds this report's key configs, nonce and claims"
                    if report.report_data == report_data else
                    "the hardware report binds different report data: key configs, nonce or "
                    "claims were substituted")]
    checks.append(Check("snp-debug", policy.allow_debug or not report.debug,
                        f"guest policy 0x{report.policy:x}: debugging "
                        + ("ALLOWED (the host can read guest memory)" if report.debug
                           else "disabled")))
    have = report.reported_tcb.as_dict()
    low = [f"{k} {have.get(k, 0)} < {v}" for k, v in policy.min_tcb.items() if have.get(k, 0) < v]
    checks.append(Check("snp-tcb", not low,
                        ("reported TCB below minimum: " + ", ".join(low)) if low else
                        f"reported TCB {report.reported_tcb} meets the minimum "
                        f"{dict(policy.min_tcb) or '(none configured)'}"))
    measured = report.measurement.hex()
    if not policy.measurements:
        checks.append(Check("snp-launch-measurement", False,
                            f"launch measurement {measured} cannot be judged: the policy has no "
                            "snp.measurements reference values"))
    else:
        ok = measured in policy.measurements
        checks.append(Check("snp-launch-measurement", ok, f"launch measurement {measured} "
                            + ("is in" if ok else "is NOT in") + " the policy's allow-list"))
    return checks
