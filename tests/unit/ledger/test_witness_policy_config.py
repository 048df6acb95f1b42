"""``[ledger.witnesses]`` in config.toml: strict, fail closed, round-trips."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealtune.config import WitnessPolicyConfig, WorkspaceConfig, load_config
from sealtune.core.cosignature import CosignatureSigner
from sealtune.errors import ConfigError, UsageError
from sealtune.ledger.verify_global import WitnessPolicy

K1 = CosignatureSigner(Ed25519PrivateKey.generate(), "w.test/1").verifier_key
K2 = CosignatureSigner(Ed25519PrivateKey.generate(), "w.test/2").verifier_key


def write(tmp_path: Path, witnesses: str) -> Path:
    path = tmp_path / "config.toml"
    base = WorkspaceConfig(workspace_id="abc", created="2026-01-01").to_toml()
    path.write_text(base + "\n[ledger.witnesses]\n" + witnesses)
    return path


def test_round_trip(tmp_path: Path) -> None:
    cfg = WorkspaceConfig(workspace_id="abc", created="2026-01-01")
    assert "witnesses" not in cfg.to_toml()
    policy = WitnessPolicyConfig(k=1, keys=(K1, K2), urls=("http://127.0.0.1:7380",))
    cfg = replace(cfg, ledger=replace(cfg.ledger, witnesses=policy))
    path = tmp_path / "config.toml"
    path.write_text(cfg.to_toml())
    assert load_config(path) == cfg
    assert WitnessPolicy.from_keys(policy.k, policy.keys).k == 1


@pytest.mark.parametrize(("body", "field"), [
    (f'k = 3\nkeys = ["{K1}", "{K2}"]\n', "k must be"),
    (f'k = 0\nkeys = ["{K1}"]\n', "k must be"),
    ('k = 1\nkeys = []\n', "keys must be"),
    (f'k = 1\nkeys = ["{K1}"]\nurls = ["ftp://x"]\n', "urls"),
    (f'k = 1\nkeys = ["{K1}"]\nquorum = 1\n', "quorum is not a known setting"),
    (f'k = 1\nkeys = ["{K1[:-2]}"]\n', "keys\\[0\\]"),
    (f'k = 1\nkeys = ["{K1}", "{K1}"]\n', "twice"),
    (f'k = true\nkeys = ["{K1}"]\n', "k must be"),
], ids=["k-too-big", "k-zero", "no-keys", "bad-url", "unknown", "bad-key", "twice", "k-bool"])
def test_invalid_policies_fail_closed(tmp_path: Path, body: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config(write(tmp_path, body))


def test_policy_object_checks() -> None:
    with pytest.raises(UsageError):
        WitnessPolicy.from_keys(2, [K1])
    with pytest.raises(UsageError, match="twice"):
        WitnessPolicy.from_keys(1, [K1, K1])
