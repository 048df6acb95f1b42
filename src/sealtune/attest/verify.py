"""Verify an attestation report against a policy (the RFC 9334 verifier role).

:func:`verify_report` runs every check, explains each in words, and returns
the server's key configurations only when all of them pass; otherwise it
raises :class:`VerificationFailed` (an :class:`~sealtune.errors.AttestationError`,
exit status 3) that carries the full result. Fail closed: a malformed report,
an unknown platform or evidence field, a policy that names no reference
value where one is needed, all fail.

What it protects against: a report from a platform the policy does not
trust (``dev-software`` unless explicitly allowed), a flipped measurement, a
substituted server key, a replayed report (with a nonce), a stale report,
evidence signed by another key or chained to another root. What it does not:
see each platform module; in short, dev-software proves possession of a key,
SEV-SNP and TDX support is untested on hardware, and revocation and vendor
TCB-status collateral are not checked.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sealtune.attest.base import Check
from sealtune.attest.policy import VerificationPolicy, load_policy
from sealtune.attest.report import (
    PLATFORMS,
    WARNINGS,
    Measurement,
    ParsedReport,
    binding,
    parse_report,
)
from sealtune.attest.snp import verify_evidence as verify_snp
from sealtune.attest.software import verify_evidence as verify_dev
from sealtune.attest.tdx import verify_evidence as verify_tdx
from sealtune.core.protocol import KeyConfig, decode_key_configs
from sealtune.errors import AttestationError, UsageError

__all__ = ["Check", "VerificationFailed", "VerificationPolicy", "VerificationResult",
           "load_policy", "verify_report"]

_DEV_HINT = ("dev-software is not a TEE; to accept it for development pass "
             "--allow-dev-attestation (or set allow_dev_attestation: true in the policy)")


@dataclass(frozen=True)
class VerificationResult:
    """The outcome of :func:`verify_report`.

    Attributes:
        ok: every check passed.
        platform: the report's platform (as claimed; trusted only if ``ok``).
        is_tee: whether that platform is a TEE (from sealtune's table, not the report).
        untested_on_hardware: True for ``sev-snp`` and ``tdx``.
        key_configs: the verified server key configurations (empty unless ``ok``).
        key_configs_raw: their RFC 9458 encoding (empty unless ``ok``).
        measurement: the report's measurement, or None if the report was unreadable.
        checks: every check, in order.
        warnings: what the result does not prove.
    """

    ok: bool
    platform: str | None
    is_tee: bool
    untested_on_hardware: bool
    key_configs: tuple[KeyConfig, ...]
    key_configs_raw: bytes
    measurement: Measurement | None
    checks: tuple[Check, ...]
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (key configurations as hex)."""
        return {"ok": self.ok, "platform": self.platform, "is_tee": self.is_tee,
                "untested_on_hardware": self.untested_on_hardware,
                "key_configs": self.key_configs_raw.hex(),
                "measurement": None if self.measurement is None else self.measurement.to_dict(),
                "checks": [asdict(c) for c in self.checks], "warnings": list(self.warnings)}


class VerificationFailed(AttestationError):
    """The report failed verification; ``result`` holds every check."""

    def __init__(self, result: VerificationResult) -> None:
        failed = [c for c in result.checks if not c.ok]
        first = failed[0] if failed else Check("verification", False, "failed")
        hint = _DEV_HINT if first.name == "platform" and result.platform == "dev-software" \
            else "do not send data to this server; check the report and the policy"
        super().__init__(f"report rejected: {first.name}: {first.explanation}", hint=hint)
        self.result = result


EvidenceVerifier = Callable[[dict[str, Any], bytes, VerificationPolicy, datetime], list[Check]]
EVIDENCE_VERIFIERS: dict[str, EvidenceVerifier] = {
    "dev-software": lambda ev, rd, pol, now: verify_dev(
        ev, report_data=rd, trusted_keys=pol.dev_attestation_keys),
    "sev-snp": lambda ev, rd, pol, now: verify_snp(ev, report_data=rd, policy=pol.snp, now=now),
    "tdx": lambda ev, rd, pol, now: verify_tdx(ev, report_data=rd, policy=pol.tdx, now=now),
}


def _platform_check(platform: str, policy: VerificationPolicy) -> Check:
    if platform == "dev-software":
        if policy.allow_dev_attestation:
            return Check("platform", True, "dev-software accepted because development "
                         "attestation was explicitly allowed; it is NOT a TEE")
        return Check("platform", False, "dev-software is refused by the policy: it is not a "
                     "TEE and proves only possession of a key")
    ok = platform in policy.allowed_platforms
    return Check("platform", ok, f"{platform} is " + ("" if ok else "not ")
                 + "an allowed platform (" + ", ".join(sorted(policy.allowed_platforms)) + ")")


def _nonce_checks(parsed: ParsedReport, nonce: bytes | None,
                  policy: VerificationPolicy) -> list[Check]:
    if nonce is None:
        if policy.require_nonce:
            return [Check("nonce", False, "the policy requires a nonce and none was given")]
        return []
    if parsed.nonce is None:
        return [Check("nonce", False, "the report carries no nonce although one was given: "
                      "it may be a replay")]
    ok = hmac.compare_digest(parsed.nonce, nonce)
    return [Check("nonce", ok, "the report answers this nonce" if ok else
                  "the report answers another nonce: stale or replayed")]


def _freshness(parsed: ParsedReport, policy: VerificationPolicy, now: datetime) -> Check:
    age = (now - parsed.issued_at).total_seconds()
    if age < -policy.clock_skew_seconds:
        return Check("freshness", False, f"issued {parsed.issued_at_text}, {-age:.0f} s in the "
                     "future: the server's or this machine's clock is wrong")
    if policy.max_age_seconds is not None and age > policy.max_age_seconds:
        return Check("freshness", False, f"expired: issued {parsed.issued_at_text}, {age:.0f} s "
                     f"ago; the policy allows {policy.max_age_seconds} s")
    return Check("freshness", True, f"issued {parsed.issued_at_text}, {max(age, 0):.0f} s ago")


def _measurement_checks(parsed: ParsedReport, policy: VerificationPolicy) -> list[Check]:
    checks = []
    for name in ("code", "model", "config"):
        want = policy.expected_measurements.get(name)
        if want is None:
            continue
        got = getattr(parsed.measurement, name)
        ok = hmac.compare_digest(got, want.lower())
        checks.append(Check(f"measurement-{name}", ok, f"{name} digest {got} "
                            + ("matches the expected value" if ok else
                               f"differs from the expected {want.lower()}")))
    return checks


def _warnings(parsed: ParsedReport, policy: VerificationPolicy, nonce: bytes | None,
              checks: list[Check]) -> list[str]:
    out = [WARNINGS[parsed.platform]]
    if parsed.platform == "dev-software" and not policy.dev_attestation_keys:
        out.append("the dev-software key is not pinned: the report proves only that it is "
                   "internally consistent")
    extra = {"sev-snp": policy.snp.extra_roots, "tdx": policy.tdx.extra_roots}.get(
        parsed.platform)
    if extra:
        out.append("the policy trusts extra roots that are not the vendor's: " + ", ".join(
            sorted(extra.values())))
    if parsed.platform != "dev-software":
        out.append("certificate revocation lists and vendor TCB-status collateral were not "
                   "checked")
    if not any(c.name.startswith("measurement-") for c in checks):
        out.append("no expected code/model/config measurements in the policy: the "
                   "measurement was not compared with reference values")
    if nonce is None:
        out.append("no nonce given: the report may be a replay of an earlier one")
    if policy.max_age_seconds is None:
        out.append("max_age_seconds is null: report age is not limited")
    return out


def verify_report(report_json: bytes | str | dict[str, Any], *, policy: VerificationPolicy,
                  nonce: bytes | None = None, now: datetime) -> VerificationResult:
    """Verify an attestation-v1 report and return the server's key configurations.

    Args:
        report_json: the report as received (bytes, text or an already parsed dict).
        policy: what to accept (:class:`VerificationPolicy`; see :func:`load_policy`).
        nonce: the nonce this client sent, if any.
        now: the current time (timezone-aware).

    Returns:
        The result with ``ok`` True and the verified key configurations.

    Raises:
        VerificationFailed: any check failed (``exc.result`` has all of them).
        UsageError: ``now`` is not timezone-aware.
    """
    if now.tzinfo is None:
        raise UsageError("verify_report: now must be timezone-aware (e.g. datetime.now(UTC))")
    try:
        parsed = parse_report(report_json)
    except AttestationError as exc:
        raise VerificationFailed(VerificationResult(
            ok=False, platform=None, is_tee=False, untested_on_hardware=False, key_configs=(),
            key_configs_raw=b"", measurement=None, checks=(Check("format", False, exc.message),),
            warnings=())) from None
    platform = parsed.platform
    checks = [Check("format", True, f"attestation-v1 report from platform {platform}"),
              _platform_check(platform, policy)]
    tee_ok = parsed.claimed_is_tee == PLATFORMS[platform]
    checks.append(Check("is-tee", tee_ok, f"{platform} is " + ("a TEE" if PLATFORMS[platform]
                        else "NOT a TEE") + ("" if tee_ok else "; the report claims otherwise")))
    configs: tuple[KeyConfig, ...] = ()
    try:
        configs = decode_key_configs(parsed.key_configs)
        checks.append(Check("key-configs", True, f"{len(configs)} HPKE key configuration(s), "
                            "key ids " + ", ".join(str(c.key_id) for c in configs)))
    except AttestationError as exc:
        checks.append(Check("key-configs", False, exc.message))
    expected_rd = binding(platform=platform, key_configs=parsed.key_configs,
                          measurement=parsed.measurement, issued_at=parsed.issued_at_text,
                          nonce=parsed.nonce)
    rd_ok = hmac.compare_digest(expected_rd, parsed.report_data)
    checks.append(Check("report-data", rd_ok, "report_data is the digest of this report's key "
                        "configs, nonce and claims" if rd_ok else "report_data does not match "
                        "the report's key configs, nonce and claims: a field was altered"))
    checks += EVIDENCE_VERIFIERS[platform](parsed.evidence, expected_rd, policy, now)
    checks += _nonce_checks(parsed, nonce, policy)
    checks.append(_freshness(parsed, policy, now))
    checks += _measurement_checks(parsed, policy)
    ok = all(c.ok for c in checks)
    result = VerificationResult(
        ok=ok, platform=platform, is_tee=PLATFORMS[platform],
        untested_on_hardware=platform in ("sev-snp", "tdx"),
        key_configs=configs if ok else (), key_configs_raw=parsed.key_configs if ok else b"",
        measurement=parsed.measurement, checks=tuple(checks),
        warnings=tuple(_warnings(parsed, policy, nonce, checks)))
    if not ok:
        raise VerificationFailed(result)
    return result

