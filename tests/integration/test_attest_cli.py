"""``sealtune attest verify`` end to end, in a subprocess through the real ``main()``.

Until the main CLI registers the ``attest`` group, the subprocess attaches
``sealtune.cli.attest.app`` to it first (same ``main()``, same exit-status
mapping); once it is registered, the real ``python -m sealtune`` is used.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sealtune.attest.report import Measurement, build_report, dumps_report, measure_bytes
from sealtune.attest.software import SoftwareProvider
from sealtune.core.protocol import ServerKeys, encode_key_configs

NONCE = b"cli-nonce-0123456789abcdef"
_WIRED = """
import sys
from sealtune import cli
from sealtune.cli import attest
if "attest" not in {g.name for g in cli.app.registered_groups}:
    cli.app.add_typer(attest.app, name="attest")
sys.argv[0] = "sealtune"
cli.main()
"""


def sealtune(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    return subprocess.run([sys.executable, "-c", _WIRED, *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


@pytest.fixture
def measurement() -> Measurement:
    return Measurement(code=measure_bytes(b"c"), model=measure_bytes(b"m"),
                       config=measure_bytes(b"f"))


@pytest.fixture
def report_file(tmp_path: Path, measurement: Measurement) -> Path:
    keys = ServerKeys(now=0)
    report = build_report(SoftwareProvider(),
                          key_configs=encode_key_configs(keys.key_configs(now=0)),
                          measurement=measurement, nonce=NONCE, now=datetime.now(UTC))
    path = tmp_path / "report.json"
    path.write_bytes(dumps_report(report))
    return path


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_dev_software_refused_by_default(report_file: Path) -> None:
    run = sealtune("attest", "verify", str(report_file), "--nonce", b64(NONCE))
    assert run.returncode == 3
    assert run.stderr.startswith("attestation: report rejected: platform:")
    assert "--allow-dev-attestation" in run.stderr
    assert "✗ platform:" in run.stdout and "✓ dev-signature:" in run.stdout


def test_accepted_with_the_flag_and_nonce(report_file: Path) -> None:
    run = sealtune("attest", "verify", str(report_file), "--nonce", b64(NONCE),
                   "--allow-dev-attestation")
    assert run.returncode == 0, run.stderr
    assert "✗" not in run.stdout
    assert "✓ nonce: the report answers this nonce" in run.stdout
    assert "verified: platform dev-software (NOT a TEE)" in run.stdout
    assert "! dev-software: no hardware isolation" in run.stdout
    assert "warning: --allow-dev-attestation" in run.stderr


def test_json_output(report_file: Path) -> None:
    run = sealtune("attest", "verify", str(report_file), "--allow-dev-attestation", "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["ok"] is True and doc["is_tee"] is False and doc["platform"] == "dev-software"
    assert {c["name"] for c in doc["checks"]} >= {"format", "platform", "report-data",
                                                  "dev-signature", "freshness"}


def test_wrong_nonce_and_tampering(report_file: Path, tmp_path: Path) -> None:
    run = sealtune("attest", "verify", str(report_file), "--allow-dev-attestation",
                   "--nonce", b64(b"another nonce 123"))
    assert run.returncode == 3 and "nonce" in run.stderr
    doc = json.loads(report_file.read_text())
    doc["measurement"]["model"] = measure_bytes(b"swapped")
    flipped = tmp_path / "flipped.json"
    flipped.write_text(json.dumps(doc))
    run = sealtune("attest", "verify", str(flipped), "--allow-dev-attestation")
    assert run.returncode == 3 and "report-data" in run.stderr
    (tmp_path / "junk.json").write_text("{not json")
    run = sealtune("attest", "verify", str(tmp_path / "junk.json"))
    assert run.returncode == 3 and run.stderr.startswith("attestation: report rejected: format:")
    run = sealtune("attest", "verify", str(tmp_path / "missing.json"))
    assert run.returncode == 3 and "not found" in run.stderr
    run = sealtune("attest", "verify", str(report_file), "--nonce", "***")
    assert run.returncode == 2 and run.stderr.startswith("usage: --nonce:")


def test_policy_file(report_file: Path, tmp_path: Path, measurement: Measurement) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"allow_dev_attestation": True,
                                "expected_measurements": measurement.to_dict()}))
    run = sealtune("attest", "verify", str(report_file), "--policy", str(good))
    assert run.returncode == 0, run.stderr
    assert "✓ measurement-model:" in run.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"allow_dev_attestation": True,
                               "expected_measurements": {"model": measure_bytes(b"other")}}))
    run = sealtune("attest", "verify", str(report_file), "--policy", str(bad))
    assert run.returncode == 3 and "measurement-model" in run.stderr
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"allow_dev": True}))
    run = sealtune("attest", "verify", str(report_file), "--policy", str(invalid))
    assert run.returncode == 1 and run.stderr.startswith("config:")
