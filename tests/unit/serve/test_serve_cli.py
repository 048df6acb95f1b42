"""``sealtune auth``: keys are printed once, stored hashed, and every change is audited."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sealtune.cli import main as cli_main
from sealtune.cli.serve import auth_app
from sealtune.serve import token_service
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


def test_revoke_key_by_name_or_id(workspace: Workspace, passphrase: str,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    runner, home = CliRunner(), ["--home", str(workspace.root)]
    store = KeyStore(workspace.root / "serve-keys.json")

    def create(*name: str) -> str:
        res = runner.invoke(auth_app, ["create-key", "--role", "consumer", *name, *home])
        assert res.exit_code == 0, res.output
        return res.stdout.strip().splitlines()[-1]

    old_ci, unnamed = create("--name", "ci"), create()
    assert runner.invoke(auth_app, ["revoke-key", "ci", *home]).exit_code == 0
    assert store.verify(old_ci)[1] == "revoked_key"
    new_ci = create("--name", "ci")  # a name reused after a revocation names the active key
    res = runner.invoke(auth_app, ["revoke-key", "ci", *home])
    assert res.exit_code == 0 and new_ci.split("_")[1] in res.stdout
    assert store.verify(new_ci)[1] == "revoked_key"
    # An unnamed key is named by its id; a name equal to another key's id is refused.
    unnamed_id = unnamed.split("_")[1]
    clash = create("--name", unnamed_id)
    capsys.readouterr()
    assert cli_main(["auth", "revoke-key", unnamed_id, *home]) == 2  # a usage error
    err = capsys.readouterr().err
    assert "fits 2 API keys" in err and unnamed_id in err and clash.split("_")[1] in err
    assert store.verify(unnamed)[1] == "ok" and store.verify(clash)[1] == "ok"
    assert cli_main(["auth", "revoke-key", "nobody", *home]) == 2
    assert "no API key with id or name 'nobody'" in capsys.readouterr().err
    assert runner.invoke(auth_app, ["revoke-key", clash.split("_")[1], *home]).exit_code == 0
    assert store.verify(clash)[1] == "revoked_key" and store.verify(unnamed)[1] == "ok"
    revoked = [e.details["key_id"] for e in workspace.ledger.entries()
               if e.action == "serve.key_revoked"]
    assert revoked == [old_ci.split("_")[1], new_ci.split("_")[1], clash.split("_")[1]]
