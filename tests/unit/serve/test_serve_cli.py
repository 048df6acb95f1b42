"""``sealtune auth``: keys are printed once, stored hashed, and every change is audited."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sealtune.cli.serve import auth_app, token_service
from sealtune.serve.auth import Authenticator
from sealtune.serve.keystore import KeyStore
from sealtune.workspace import Workspace


def test_create_list_revoke_issue(workspace: Workspace, passphrase: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    runner, home = CliRunner(), ["--home", str(workspace.root)]
    created = runner.invoke(auth_app, ["create-key", "--role", "consumer", "--name", "app",
                                       *home])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("sealtune_")
    store = KeyStore(workspace.root / "serve-keys.json")
    key_id = key.split("_")[1]
    assert store.verify(key)[1] == "ok"
    listed = runner.invoke(auth_app, ["list-keys", "--json", *home])
    assert listed.exit_code == 0 and key_id in listed.stdout
    assert key.split("_", 2)[2] not in listed.stdout
    issued = runner.invoke(auth_app, ["issue-token", "--key-id", key_id, "--ttl", "15m", *home])
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip().splitlines()[-1]
    auth = Authenticator(store, token_service(workspace))
    assert auth.authenticate(f"Bearer {token}").caller == key_id
    assert runner.invoke(auth_app, ["issue-token", "--key-id", key_id, "--ttl", "48h",
                                    *home]).exit_code != 0
    assert runner.invoke(auth_app, ["revoke-key", key_id, *home]).exit_code == 0
    assert store.verify(key)[1] == "revoked_key"
    actions = [e.action for e in workspace.ledger.entries()]
    for action in ("serve.key_created", "serve.jwt_key_created", "serve.token_issued",
                   "serve.key_revoked"):
        assert action in actions
    assert key not in repr([e.details for e in workspace.ledger.entries()])
    assert token not in repr([e.details for e in workspace.ledger.entries()])
