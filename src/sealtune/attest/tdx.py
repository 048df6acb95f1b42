"""Intel TDX: the provider (configfs-tsm) and the verifier. UNTESTED ON HARDWARE.

The verifier parses a DCAP quote version 4 for a TD (Intel TDX DCAP Quoting
Library API, "Quote Format"): the 48-byte header, the 584-byte TD report
body (TEE TCB SVN, MRSEAM, TD attributes, MRTD, RTMR0-3, report data) and
the ECDSA-256 signature data with QE report certification data (type 6)
carrying the PCK certificate chain (type 5). It checks the quote's ECDSA
P-256 signature by the attestation key, the QE report's signature by the
PCK key, that the QE report binds the attestation key, the QE's identity
(Intel's signer), the PCK chain up to the pinned Intel SGX Root CA key, and
the policy: debug off, MRTD/RTMR reference values, a minimum TEE TCB SVN.

What a passing result proves: an Intel quoting enclave on a platform Intel
certified signed this report data for a TD with this MRTD and these RTMRs.
What it does not: it has not been run against a live TD
(``untested_on_hardware``); Intel's TCB status (TCB Info, QE Identity
collateral from the PCS) and the PCK CRLs are not checked, so a platform
with a revoked or out-of-date TCB still passes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sealtune.attest._pki import ChainError, load_pem_chain, verify_chain
from sealtune.attest._tsm import ConfigfsTsm, Tsm
from sealtune.attest.base import Check, Evidence
from sealtune.errors import AttestationError

PLATFORM = "tdx"
UNTESTED_ON_HARDWARE = True
HEADER_SIZE, BODY_SIZE = 48, 584
SIGNED_SIZE = HEADER_SIZE + BODY_SIZE
TD_ATTRIBUTES_DEBUG = 1
#: SHA-256 of the SubjectPublicKeyInfo of the Intel SGX Root CA (also the TDX root).
PINNED_ROOTS: dict[str, str] = {
    "a0af031289f5d5d4132f9186068a7fc13628633ba235777472e29b6b6c67a49e": "Intel SGX Root CA",
}
#: MRSIGNER of Intel's quoting enclaves, and the TDX QE's product id.
INTEL_QE_MRSIGNER = bytes.fromhex(
    "dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5")
TDX_QE_PRODID = 2


@dataclass(frozen=True)
class TdxQuote:
    """The fields of a TDX quote v4 that sealtune uses."""

    raw: bytes
    version: int
    tee_tcb_svn: bytes
    mrseam: bytes
    td_attributes: int
    xfam: bytes
    mrtd: bytes
    mrconfigid: bytes
    mrowner: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes
    signature: bytes
    attestation_key: bytes
    qe_report: bytes
    qe_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes

    @property
    def debug(self) -> bool:
        """Whether the TD is debuggable (the host can read and change its state)."""
        return bool(self.td_attributes & TD_ATTRIBUTES_DEBUG)


def _take(raw: bytes, pos: int, size: int) -> bytes:
    if size < 0 or pos + size > len(raw):
        raise AttestationError("the TDX quote is truncated")
    return raw[pos : pos + size]


def parse_quote(raw: bytes) -> TdxQuote:
    """Parse a TDX DCAP quote v4 with QE report certification data.

    Raises:
        AttestationError: truncated, another version, key type or TEE type.
    """
    version, key_type, tee_type = struct.unpack_from("<HHI", _take(raw, 0, HEADER_SIZE))
    if (version, key_type, tee_type) != (4, 2, 0x81):
        raise AttestationError(f"not a TDX quote v4 with an ECDSA P-256 key (version {version},"
                               f" key type {key_type}, TEE type 0x{tee_type:x})")
    body = _take(raw, HEADER_SIZE, BODY_SIZE)
    (sig_len,) = struct.unpack("<I", _take(raw, SIGNED_SIZE, 4))
    sig = _take(raw, SIGNED_SIZE + 4, sig_len)
    cert_type, cert_size = struct.unpack("<HI", _take(sig, 128, 6))
    if cert_type != 6:
        raise AttestationError(f"TDX certification data type {cert_type} is not 6 (QE report)")
    cert = _take(sig, 134, cert_size)
    (auth_len,) = struct.unpack("<H", _take(cert, 448, 2))
    inner_at = 450 + auth_len
    inner_type, inner_size = struct.unpack("<HI", _take(cert, inner_at, 6))
    if inner_type != 5:
        raise AttestationError(f"TDX certification data type {inner_type} is not 5 (PCK chain)")
    return TdxQuote(
        raw=bytes(raw[: SIGNED_SIZE + 4 + sig_len]), version=version,
        tee_tcb_svn=body[0:16], mrseam=body[16:64],
        td_attributes=int.from_bytes(body[120:128], "little"), xfam=body[128:136],
        mrtd=body[136:184], mrconfigid=body[184:232], mrowner=body[232:280],
        rtmrs=(body[328:376], body[376:424], body[424:472], body[472:520]),
        report_data=body[520:584], signature=sig[0:64], attestation_key=sig[64:128],
        qe_report=cert[0:384], qe_signature=cert[384:448],
        qe_auth_data=cert[450:inner_at], pck_chain_pem=_take(cert, inner_at + 6, inner_size))


@dataclass(frozen=True)
class TdxPolicy:
    """What a TDX quote must satisfy.

    Attributes:
        allow_debug: accept debuggable TDs (never in production).
        mrtd: allowed MRTD values (96 hex digits); empty fails closed.
        rtmr: per RTMR index (0-3), allowed values; indexes not given are not checked.
        min_tee_tcb_svn: 32 hex digits; each byte of TEE_TCB_SVN must be >= it.
        extra_roots: SPKI SHA-256 -> name of additional trusted roots (tests only:
            every result then warns that a non-Intel root was trusted).
    """

    allow_debug: bool = False
    mrtd: tuple[str, ...] = ()
    rtmr: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    min_tee_tcb_svn: str | None = None
    extra_roots: Mapping[str, str] = field(default_factory=dict)


class TdxProvider:
    """Reads TDX quotes through configfs-tsm. UNTESTED ON HARDWARE.

    Args:
        tsm: the configfs-tsm adapter (the real one by default).
    """

    platform = PLATFORM
    is_tee = True
    untested_on_hardware = UNTESTED_ON_HARDWARE

    def __init__(self, tsm: Tsm | None = None) -> None:
        self._tsm = tsm or ConfigfsTsm(platform="TDX", expected_provider="tdx_guest")

    def evidence(self, report_data: bytes) -> Evidence:
        """Request a quote binding ``report_data``."""
        quote = parse_quote(self._tsm.report(report_data).outblob)
        if quote.report_data != report_data:
            raise AttestationError("the TDX quote does not carry the requested report data")
        return Evidence(platform=PLATFORM, is_tee=True,
                        payload={"quote": base64.b64encode(quote.raw).decode("ascii")})


def _p256(raw: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)


def _ecdsa_ok(key: object, signature: bytes, data: bytes) -> bool:
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                               int.from_bytes(signature[32:], "big"))
    try:
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _decode(payload: dict[str, Any]) -> TdxQuote:
    if set(payload) != {"quote"} or not isinstance(payload["quote"], str):
        raise AttestationError("the TDX evidence must have exactly one field, quote (base64)")
    try:
        return parse_quote(base64.b64decode(payload["quote"], validate=True))
    except (binascii.Error, ValueError):
        raise AttestationError("the TDX quote is not valid base64") from None


def _authenticity(quote: TdxQuote, extra_roots: Mapping[str, str],
                  now: datetime) -> list[Check]:
    """Chain, QE signature, QE binding and identity, quote signature; stop at a failure."""
    checks: list[Check] = []
    try:
        chain = load_pem_chain(quote.pck_chain_pem)
        root = verify_chain(chain, pinned={**PINNED_ROOTS, **extra_roots}, now=now)
    except (ChainError, ValueError) as exc:
        reason = str(exc) if isinstance(exc, ChainError) else "the PCK chain is not valid PEM"
        return [Check("tdx-pck-chain", False, reason)]
    pinned = "pinned Intel root key" if root in PINNED_ROOTS.values() else \
        "an EXTRA root from the policy, not Intel's"
    checks.append(Check("tdx-pck-chain", True, f"PCK certificate -> {root} ({pinned})"))
    steps = [
        ("tdx-qe-signature", _ecdsa_ok(chain[0].public_key(), quote.qe_signature,
                                       quote.qe_report),
         "the quoting enclave's report is signed by the PCK key",
         "the quoting enclave's report is not signed by the PCK key"),
        ("tdx-qe-binding", quote.qe_report[320:384] == hashlib.sha256(
            quote.attestation_key + quote.qe_auth_data).digest() + bytes(32),
         "the quoting enclave vouches for the attestation key",
         "the attestation key is not the one the quoting enclave vouched for"),
        ("tdx-qe-identity", quote.qe_report[128:160] == INTEL_QE_MRSIGNER
         and int.from_bytes(quote.qe_report[256:258], "little") == TDX_QE_PRODID,
         "the quoting enclave is Intel's TDX QE (MRSIGNER and product id)",
         "the quoting enclave is not Intel's TDX QE"),
        ("tdx-quote-signature", _ecdsa_ok(_p256_or_none(quote.attestation_key),
                                          quote.signature, quote.raw[:SIGNED_SIZE]),
         "the quote's ECDSA P-256 signature by the attestation key verifies",
         "the quote's signature does not verify: altered or signed by another key"),
    ]
    for name, ok, yes, no in steps:
        checks.append(Check(name, ok, yes if ok else no))
        if not ok:
            break
    return checks


def _p256_or_none(raw: bytes) -> ec.EllipticCurvePublicKey | None:
    try:
        return _p256(raw)
    except ValueError:
        return None


def verify_evidence(payload: dict[str, Any], *, report_data: bytes, policy: TdxPolicy,
                    now: datetime) -> list[Check]:
    """Verify a ``tdx`` evidence payload; stop at the first authenticity failure."""
    try:
        quote = _decode(payload)
    except AttestationError as exc:
        return [Check("tdx-quote", False, exc.message)]
    checks = [Check("tdx-quote", True, f"TDX quote v{quote.version}, MRTD "
                    f"{quote.mrtd[:8].hex()}..., TEE TCB SVN {quote.tee_tcb_svn.hex()}")]
    checks += _authenticity(quote, policy.extra_roots, now)
    if not checks[-1].ok:
        return checks
    ok = quote.report_data == report_data
    checks.append(Check("tdx-report-data", ok,
                        "the quote binds this report's key configs, nonce and claims" if ok else
                        "the quote binds different report data: key configs, nonce or claims "
                        "were substituted"))
    checks.append(Check("tdx-debug", policy.allow_debug or not quote.debug,
                        f"TD attributes 0x{quote.td_attributes:016x}: debugging "
                        + ("ALLOWED (the host can read the TD)" if quote.debug else "disabled")))
    return checks + _reference_checks(quote, policy)


def _reference_checks(quote: TdxQuote, policy: TdxPolicy) -> list[Check]:
    mrtd = quote.mrtd.hex()
    if not policy.mrtd:
        checks = [Check("tdx-mrtd", False, f"MRTD {mrtd} cannot be judged: the policy has no "
                        "tdx.mrtd reference values")]
    else:
        ok = mrtd in policy.mrtd
        checks = [Check("tdx-mrtd", ok, f"MRTD {mrtd} " + ("is in" if ok else "is NOT in")
                        + " the policy's allow-list")]
    for index, allowed in sorted(policy.rtmr.items()):
        value = quote.rtmrs[index].hex()
        ok = value in allowed
        checks.append(Check(f"tdx-rtmr{index}", ok, f"RTMR{index} {value} "
                            + ("matches" if ok else "does NOT match")
                            + " a reference value"))
    if policy.min_tee_tcb_svn is not None:
        floor = bytes.fromhex(policy.min_tee_tcb_svn)
        low = [i for i, (h, m) in enumerate(zip(quote.tee_tcb_svn, floor, strict=True)) if h < m]
        checks.append(Check("tdx-tee-tcb-svn", not low,
                            f"TEE TCB SVN {quote.tee_tcb_svn.hex()} "
                            + (f"is below the minimum at byte(s) {low}" if low else
                               f"meets the minimum {policy.min_tee_tcb_svn}")))
    return checks
