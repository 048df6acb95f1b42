"""The dev-software provider: an Ed25519 key, NOT a TEE, and says so everywhere."""

from __future__ import annotations

import base64
import stat
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from sealtune.attest.base import PROVIDERS, AttestationProvider, get_provider, report_data
from sealtune.attest.report import Measurement, build_report
from sealtune.attest.software import (
    SIGNATURE_LABEL,
    WARNING,
    SoftwareProvider,
    fingerprint,
    verify_evidence,
)
from sealtune.core.protocol import ServerKeys, encode_key_configs
from sealtune.errors import AttestationError

RD = bytes(range(64))


def test_registered_and_satisfies_the_port() -> None:
    provider = get_provider("dev-software")
    assert isinstance(provider, SoftwareProvider)
    assert isinstance(provider, AttestationProvider)
    assert provider.is_tee is False and provider.untested_on_hardware is False
    assert "NOT a TEE" in repr(provider)
    with pytest.raises(ValueError, match="already registered"):
        from sealtune.attest.base import register_provider
        register_provider("dev-software", PROVIDERS["dev-software"])
    with pytest.raises(AttestationError, match="unknown attestation provider"):
        get_provider("sgx")


def test_evidence_says_it_is_not_a_tee_and_verifies() -> None:
    provider = SoftwareProvider()
    ev = provider.evidence(RD)
    assert ev.platform == "dev-software" and ev.is_tee is False
    assert ev.payload["warning"] == WARNING
    assert "no hardware isolation" in WARNING
    checks = verify_evidence(ev.payload, report_data=RD)
    assert [c.name for c in checks] == ["dev-signature", "dev-key"]
    assert all(c.ok for c in checks)
    assert "not pinned" in checks[1].explanation


def test_signature_covers_the_label_and_report_data() -> None:
    provider = SoftwareProvider()
    ev = provider.evidence(RD)
    sig = base64.b64decode(ev.payload["signature"])
    provider._key.public_key().verify(sig, SIGNATURE_LABEL + RD)
    assert not verify_evidence(ev.payload, report_data=bytes(64))[0].ok


def test_signature_by_another_key_is_rejected() -> None:
    a, b = SoftwareProvider(), SoftwareProvider()
    forged = dict(b.evidence(RD).payload, public_key=a.evidence(RD).payload["public_key"])
    check = verify_evidence(forged, report_data=RD)
    assert len(check) == 1 and not check[0].ok and "another key" in check[0].explanation


def test_pinned_keys() -> None:
    a, b = SoftwareProvider(), SoftwareProvider()
    ev = a.evidence(RD).payload
    ok = verify_evidence(ev, report_data=RD, trusted_keys={a.fingerprint})
    assert all(c.ok for c in ok) and "pinned by the policy" in ok[1].explanation
    bad = verify_evidence(ev, report_data=RD, trusted_keys={b.fingerprint})
    assert bad[0].ok and not bad[1].ok and "another key" in bad[1].explanation
    assert a.fingerprint == fingerprint(a.public_key)


@pytest.mark.parametrize("payload", [
    {}, {"public_key": "!!", "signature": "AA=="},
    {"public_key": base64.b64encode(bytes(31)).decode(), "signature": base64.b64encode(
        bytes(64)).decode()},
    {"public_key": base64.b64encode(bytes(32)).decode(), "signature": base64.b64encode(
        bytes(64)).decode(), "extra": 1},
])
def test_malformed_evidence(payload: dict[str, object]) -> None:
    (check,) = verify_evidence(payload, report_data=RD)
    assert not check.ok and "malformed" in check.explanation


def test_report_data_must_be_64_bytes() -> None:
    with pytest.raises(AttestationError, match="64 bytes"):
        SoftwareProvider().evidence(b"short")


def test_save_and_load(tmp_path: Path) -> None:
    provider = SoftwareProvider()
    path = tmp_path / "attest.pem"
    provider.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SoftwareProvider.load(path).public_key == provider.public_key
    with pytest.raises(FileExistsError):
        provider.save(path)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(AttestationError, match="not found"):
        SoftwareProvider.load(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(AttestationError, match="cannot load"):
        SoftwareProvider.load(tmp_path / "junk.pem")
    ec_pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    (tmp_path / "ec.pem").write_bytes(ec_pem)
    with pytest.raises(AttestationError, match="not Ed25519"):
        SoftwareProvider.load(tmp_path / "ec.pem")


def test_built_report_says_not_a_tee(now: datetime) -> None:
    kc = encode_key_configs(ServerKeys(now=0).key_configs(now=0))
    m = Measurement(code="1" * 64, model="2" * 64, config="3" * 64)
    report = build_report(SoftwareProvider(), key_configs=kc, measurement=m, nonce=None, now=now)
    assert report["is_tee"] is False
    assert report["warning"] == WARNING
    assert report["evidence"]["warning"] == WARNING
    assert report["nonce"] is None


def test_report_data_binds_every_part() -> None:
    base = report_data(b"k", b"n", claims=b"c")
    assert len(base) == 64
    assert len({base, report_data(b"k2", b"n", claims=b"c"), report_data(b"k", b"n2", claims=b"c"),
                report_data(b"k", b"n", claims=b"c2"), report_data(b"kn", b"", claims=b"c")}) == 5
