"""verify_report: every rejection the client relies on, and acceptance.

Reports here come from the dev-software provider (the only one that runs
without hardware); the SEV-SNP and TDX evidence checks have their own tests.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sealtune.attest.report import (
    Measurement,
    binding,
    build_report,
    decode_nonce,
    dumps_report,
    measure_bytes,
    measure_tree,
)
from sealtune.attest.software import SoftwareProvider
from sealtune.attest.verify import (
    VerificationFailed,
    VerificationPolicy,
    load_policy,
    verify_report,
)
from sealtune.core.protocol import ServerKeys, encode_key_configs
from sealtune.errors import AttestationError, ConfigError, UsageError

NONCE = b"N" * 32
DEV = VerificationPolicy(allow_dev_attestation=True)
Report = dict[str, Any]


@pytest.fixture
def keys() -> ServerKeys:
    return ServerKeys(now=0)


@pytest.fixture
def measurement() -> Measurement:
    return Measurement(code=measure_bytes(b"code"), model=measure_bytes(b"model"),
                       config=measure_bytes(b"config"))


@pytest.fixture
def provider() -> SoftwareProvider:
    return SoftwareProvider()


@pytest.fixture
def make(keys: ServerKeys, measurement: Measurement, provider: SoftwareProvider,
         now: datetime) -> Callable[..., Report]:
    def make(**overrides: Any) -> Report:
        args: dict[str, Any] = {"key_configs": encode_key_configs(keys.key_configs(now=0)),
                                "measurement": measurement, "nonce": NONCE, "now": now}
        args.update(overrides)
        return build_report(overrides.pop("provider", provider),
                            **{k: v for k, v in args.items() if k != "provider"})
    return make


def failed(report: Report | bytes | str, *, policy: VerificationPolicy = DEV,
           nonce: bytes | None = NONCE, now: datetime) -> dict[str, bool]:
    with pytest.raises(VerificationFailed) as info:
        verify_report(report, policy=policy, nonce=nonce, now=now)
    assert info.value.exit_code == 3
    assert info.value.result.key_configs == () and info.value.result.key_configs_raw == b""
    return {c.name: c.ok for c in info.value.result.checks}


def resign(report: Report, provider: SoftwareProvider) -> Report:
    """What an attacker holding ``provider``'s key can do: recompute and re-sign."""
    m = Measurement(**report["measurement"])
    rd = binding(platform=report["platform"], key_configs=base64.b64decode(report["key_configs"]),
                 measurement=m, issued_at=report["issued_at"],
                 nonce=None if report["nonce"] is None else base64.b64decode(report["nonce"]))
    return dict(report, report_data=rd.hex(), evidence=provider.evidence(rd).payload)


def test_accepts_with_the_right_nonce_and_policy(make: Callable[..., Report], keys: ServerKeys,
                                                  now: datetime) -> None:
    result = verify_report(dumps_report(make()), policy=DEV, nonce=NONCE, now=now)
    assert result.ok and result.platform == "dev-software"
    assert result.is_tee is False and result.untested_on_hardware is False
    assert result.key_configs == keys.key_configs(now=0)
    assert result.key_configs_raw == encode_key_configs(keys.key_configs(now=0))
    assert any("no hardware isolation" in w for w in result.warnings)
    assert all(c.ok for c in result.checks)
    json.dumps(result.to_dict())


def test_dev_software_rejected_under_the_default_policy(make: Callable[..., Report],
                                                        now: datetime) -> None:
    with pytest.raises(VerificationFailed) as info:
        verify_report(make(), policy=VerificationPolicy(), nonce=NONCE, now=now)
    text = info.value.diagnostics()
    assert text.startswith("attestation: report rejected: platform:")
    assert "--allow-dev-attestation" in text
    assert isinstance(info.value, AttestationError)
    assert VerificationPolicy().unsafe_allowing_dev_attestation().allow_dev_attestation


def test_flipped_measurement(make: Callable[..., Report], now: datetime) -> None:
    report = make()
    report["measurement"]["model"] = measure_bytes(b"another model")
    assert failed(report, now=now)["report-data"] is False


def test_flipped_measurement_with_recomputed_report_data(make: Callable[..., Report],
                                                         now: datetime) -> None:
    report = make()
    report["measurement"]["code"] = measure_bytes(b"backdoored code")
    attacker = SoftwareProvider()
    forged = resign(report, attacker)
    forged["evidence"]["public_key"] = report["evidence"]["public_key"]
    assert failed(forged, now=now)["dev-signature"] is False


def test_expected_measurement_mismatch(make: Callable[..., Report], now: datetime,
                                       measurement: Measurement) -> None:
    good = VerificationPolicy(allow_dev_attestation=True,
                              expected_measurements={"model": measurement.model})
    verify_report(make(), policy=good, nonce=NONCE, now=now)
    bad = VerificationPolicy(allow_dev_attestation=True,
                             expected_measurements={"model": measure_bytes(b"x")})
    assert failed(make(), policy=bad, now=now)["measurement-model"] is False


def test_key_substitution(make: Callable[..., Report], now: datetime) -> None:
    report = make()
    mallory = encode_key_configs(ServerKeys(now=0).key_configs(now=0))
    report["key_configs"] = base64.b64encode(mallory).decode()
    assert failed(report, now=now)["report-data"] is False


def test_key_substitution_resigned_by_an_attacker(make: Callable[..., Report], now: datetime,
                                                   provider: SoftwareProvider) -> None:
    """dev-software's limit: only a pinned key stops an attacker who signs with their own."""
    report = make()
    report["key_configs"] = base64.b64encode(
        encode_key_configs(ServerKeys(now=0).key_configs(now=0))).decode()
    forged = resign(report, SoftwareProvider())
    result = verify_report(forged, policy=DEV, nonce=NONCE, now=now)
    assert any("not pinned" in w for w in result.warnings)
    pinned = VerificationPolicy(allow_dev_attestation=True,
                                dev_attestation_keys=frozenset({provider.fingerprint}))
    assert failed(forged, policy=pinned, now=now)["dev-key"] is False


def test_stale_nonce(make: Callable[..., Report], now: datetime) -> None:
    assert failed(make(), nonce=b"M" * 32, now=now)["nonce"] is False


def test_missing_nonce_when_one_was_given(make: Callable[..., Report], now: datetime) -> None:
    assert failed(make(nonce=None), now=now)["nonce"] is False


def test_nonce_required_by_policy(make: Callable[..., Report], now: datetime) -> None:
    policy = VerificationPolicy(allow_dev_attestation=True, require_nonce=True)
    assert failed(make(), policy=policy, nonce=None, now=now)["nonce"] is False
    result = verify_report(make(), policy=DEV, nonce=None, now=now)
    assert any("replay" in w for w in result.warnings)


def test_signature_by_another_key(make: Callable[..., Report], now: datetime,
                                  provider: SoftwareProvider) -> None:
    report = make()
    other = SoftwareProvider()
    report["evidence"]["signature"] = other.evidence(bytes.fromhex(
        report["report_data"])).payload["signature"]
    assert failed(report, now=now)["dev-signature"] is False
    pinned = VerificationPolicy(allow_dev_attestation=True,
                                dev_attestation_keys=frozenset({provider.fingerprint}))
    assert failed(make(provider=other), policy=pinned, now=now)["dev-key"] is False
    verify_report(make(), policy=pinned, nonce=NONCE, now=now)


def test_expired_and_future_reports(make: Callable[..., Report], now: datetime) -> None:
    report = make()
    later = now + timedelta(seconds=3601)
    assert failed(report, now=later)["freshness"] is False
    assert failed(report, now=now - timedelta(seconds=61))["freshness"] is False
    verify_report(report, policy=DEV, nonce=NONCE, now=now + timedelta(seconds=3599))
    no_limit = VerificationPolicy(allow_dev_attestation=True, max_age_seconds=None)
    result = verify_report(report, policy=no_limit, nonce=NONCE, now=now + timedelta(days=400))
    assert any("not limited" in w for w in result.warnings)


def test_platform_not_allowed(make: Callable[..., Report], now: datetime) -> None:
    report = dict(make(), platform="sev-snp", is_tee=True)
    policy = VerificationPolicy(allowed_platforms=frozenset({"tdx"}))
    checks = failed(report, policy=policy, now=now)
    assert checks["platform"] is False and checks["snp-report"] is False


def test_is_tee_lie(make: Callable[..., Report], now: datetime) -> None:
    checks = failed(dict(make(), is_tee=True), now=now)
    assert checks["is-tee"] is False


@pytest.mark.parametrize("mutate", [
    lambda r: b"{",
    lambda r: b"[]",
    lambda r: b'{"version": 1, "version": 1}',
    lambda r: dumps_report(r).replace(b'"version":1', b'"version":1.0'),
    lambda r: dumps_report(r).replace(b'"version":1', b'"version":NaN'),
    lambda r: dict(r, version=2),
    lambda r: dict(r, extra=True),
    lambda r: dict(r, platform="sgx"),
    lambda r: dict(r, key_configs="***"),
    lambda r: dict(r, nonce="AAAA"),
    lambda r: dict(r, issued_at="2025-06-01 12:00:00"),
    lambda r: dict(r, report_data="00"),
    lambda r: dict(r, measurement={"code": "0" * 64}),
    lambda r: dict(r, evidence=[]),
    lambda r: b"x" * (2 << 20),
    lambda r: b'{"version": ' + b"[" * 100_000,  # a RecursionError in the stdlib parser
    lambda r: dumps_report(r).replace(b'"dev-software"', b'"dev-\\ud800"'),
    lambda r: dumps_report(r).replace(b'"dev-software"', b'"dev-\xff"'),
])
def test_malformed_reports(make: Callable[..., Report], now: datetime,
                           mutate: Callable[[Report], Report | bytes]) -> None:
    with pytest.raises(VerificationFailed) as info:
        verify_report(mutate(make()), policy=DEV, nonce=NONCE, now=now)
    result = info.value.result
    assert result.platform is None and [c.name for c in result.checks] == ["format"]
    assert info.value.diagnostics().startswith("attestation: report rejected: format:")


def test_malformed_key_configs_fail(make: Callable[..., Report], now: datetime,
                                    provider: SoftwareProvider) -> None:
    report = resign(dict(make(), key_configs="AAE="), provider)
    assert failed(report, now=now)["key-configs"] is False


def test_naive_time_is_a_usage_error(make: Callable[..., Report], now: datetime) -> None:
    naive = now.replace(tzinfo=None)
    with pytest.raises(UsageError):
        verify_report(make(), policy=DEV, nonce=NONCE, now=naive)
    with pytest.raises(UsageError):
        make(now=naive)


def test_nonce_helpers() -> None:
    raw = bytes.fromhex("fbffbffbffbffbff")
    assert decode_nonce(base64.b64encode(raw).decode()) == raw
    assert decode_nonce(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    for bad in ("***", "AAAA", "A" * 100):
        with pytest.raises(AttestationError):
            decode_nonce(bad)


def test_measure_tree(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_bytes(b"1")
    (tmp_path / "b.txt").write_bytes(b"2")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "junk.pyc").write_bytes(b"3")
    first = measure_tree(tmp_path)
    (tmp_path / "__pycache__" / "more.pyc").write_bytes(b"4")
    assert measure_tree(tmp_path) == first
    (tmp_path / "b.txt").write_bytes(b"changed")
    assert measure_tree(tmp_path) != first
    assert measure_tree(tmp_path / "b.txt") == measure_bytes(b"changed")
    with pytest.raises(AttestationError):
        measure_tree(tmp_path / "missing")


# -- policy files ---------------------------------------------------------------------------


def test_load_policy_json_and_yaml(tmp_path: Path) -> None:
    doc = {"allowed_platforms": ["tdx"], "allow_dev_attestation": True,
           "dev_attestation_keys": ["ab" * 32], "expected_measurements": {"code": "CD" * 32},
           "max_age_seconds": None, "require_nonce": True,
           "snp": {"allow_debug": False, "min_tcb": {"snp": 8}, "measurements": ["ef" * 48],
                   "cert_chain": "chain.pem"},
           "tdx": {"mrtd": ["01" * 48], "rtmr": {"0": ["02" * 48]}, "min_tee_tcb_svn": "00" * 16}}
    (tmp_path / "chain.pem").write_bytes(b"PEM")
    (tmp_path / "p.json").write_text(json.dumps(doc))
    policy = load_policy(tmp_path / "p.json")
    assert policy.allowed_platforms == {"tdx"} and policy.allow_dev_attestation
    assert policy.expected_measurements == {"code": "cd" * 32}
    assert policy.max_age_seconds is None and policy.require_nonce
    assert policy.snp.min_tcb == {"snp": 8} and policy.snp.cert_chain_pem == b"PEM"
    assert policy.tdx.rtmr == {0: ("02" * 48,)}
    import yaml
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    assert load_policy(tmp_path / "p.yaml") == policy


@pytest.mark.parametrize(("doc", "message"), [
    ({"allow_dev": True}, "allow_dev: unknown key"),
    ({"allow_dev_attestation": "yes"}, "wrong type"),
    ({"max_age_seconds": True}, "wrong type"),
    ({"allowed_platforms": ["dev-software"]}, "allowed_platforms"),
    ({"expected_measurements": {"weights": "00" * 32}}, "unknown key"),
    ({"expected_measurements": {"code": "00"}}, "64 hex digits"),
    ({"snp": {"min_tcb": {"snp": 256}}}, "min_tcb"),
    ({"snp": {"measurements": ["zz" * 48]}}, "96 hex digits"),
    ({"snp": {"cert_chain": "missing.pem"}}, "cannot read"),
    ({"tdx": {"rtmr": {"4": []}}}, "rtmr"),
    ({"tdx": {"min_tee_tcb_svn": "00"}}, "32 hex digits"),
    ({"tdx": {"debug": True}}, "tdx.debug: unknown key"),
    ([], "must be a mapping"),
])
def test_load_policy_is_strict(tmp_path: Path, doc: object, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=message):
        load_policy(path)


def test_load_policy_fails_closed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_policy(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_policy(tmp_path / "bad.json")
    (tmp_path / "bad.yaml").write_text("a: [")
    import yaml  # noqa: F401
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_policy(tmp_path / "bad.yaml")


class _FsPath:
    """A minimal os.PathLike that is neither str nor pathlib.Path."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __fspath__(self) -> str:
        return self.path


def test_load_policy_accepts_str_and_pathlike(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "chain.pem").write_bytes(b"PEM")
    doc = {"allowed_platforms": ["tdx"], "snp": {"cert_chain": "chain.pem"}}
    (tmp_path / "p.json").write_text(json.dumps(doc))
    expected = load_policy(tmp_path / "p.json")
    assert expected.allowed_platforms == {"tdx"} and expected.snp.cert_chain_pem == b"PEM"
    assert load_policy(str(tmp_path / "p.json")) == expected
    assert load_policy(_FsPath(str(tmp_path / "p.json"))) == expected
    monkeypatch.chdir(tmp_path)  # a relative str: cert_chain is still found next to the file
    assert load_policy("p.json") == expected
    with pytest.raises(ConfigError, match=r"missing\.json: policy file not found"):
        load_policy(str(tmp_path / "missing.json"))
