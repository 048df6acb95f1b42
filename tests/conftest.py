"""Shared fixtures: real workspaces in temp dirs (no mocks of keyrings or ledgers)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sealtune.config import WorkspaceConfig
from sealtune.keys.keyfile import KdfParams, KeyFile
from sealtune.workspace import Workspace

# Tests never inherit a developer's workspace or passphrase.
for _var in ("SEALTUNE_HOME", "SEALTUNE_PASSPHRASE", "SEALTUNE_ACTOR"):
    os.environ.pop(_var, None)


@pytest.fixture
def passphrase() -> str:
    """A unique passphrase per test (also a planted string: it must never hit disk)."""
    return "pp-" + secrets.token_hex(12)


@pytest.fixture
def bare_workspace(tmp_path: Path, passphrase: str) -> Workspace:
    """A workspace with config and an unlocked keyring but no ledger use.

    For backend-level tests that exercise a Keyring directly; anything that
    audits (KeyService, files) needs the full ``workspace`` fixture.
    """
    root = tmp_path / "bare-ws"
    root.mkdir(mode=0o700)
    config = WorkspaceConfig(
        workspace_id=secrets.token_hex(8), created=datetime.now(UTC).isoformat(timespec="seconds")
    )
    (root / "config.toml").write_text(config.to_toml())
    ws = Workspace(root, config, lambda: passphrase)
    ws._keyfile = KeyFile.create(ws.keyfile_path, passphrase, kdf=KdfParams.unsafe_fast())
    return ws


@pytest.fixture
def workspace(tmp_path: Path, passphrase: str) -> Iterator[Workspace]:
    """A fully initialised workspace with local keys ``k1``, ``k2`` (AES) and ``ksm4`` (SM4)."""
    ws = Workspace.init(
        tmp_path / "ws", passphrase=passphrase, kdf=KdfParams.unsafe_fast(), default_key="k1"
    )
    ws.keys.create("k2", backend="local", algorithm="aes-256-gcm")
    ws.keys.create("ksm4", backend="local", algorithm="sm4-gcm")
    yield ws
    ws.close()
