"""Creating a workspace (workspace_init.py): choices refused before anything is asked or written."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealtune.cli import main as cli_main
from sealtune.errors import UsageError
from sealtune.keys.keyfile import KdfParams
from sealtune.workspace_init import (
    MIN_PASSPHRASE,
    WorkspaceOptions,
    check_new_passphrase,
    create_workspace,
)


def test_bad_choices_are_refused_when_made() -> None:
    with pytest.raises(UsageError, match="'aes-128' is not supported"):
        WorkspaceOptions(algorithm="aes-128")
    for module, token in (("/lib/x.so", None), (None, "tok")):
        with pytest.raises(UsageError, match="go together"):
            WorkspaceOptions(pkcs11_module=module, pkcs11_token=token)
    both = WorkspaceOptions(pkcs11_module="/lib/x.so", pkcs11_token="tok",
                            openbao_addr="http://127.0.0.1:8200", openbao_mount="t2")
    assert both.pkcs11 is not None and both.pkcs11.token_label == "tok"
    assert both.openbao is not None and both.openbao.mount == "t2"
    assert WorkspaceOptions().pkcs11 is None and WorkspaceOptions().openbao is None


def test_a_short_passphrase_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    short = "x" * (MIN_PASSPHRASE - 1)
    with pytest.raises(UsageError, match=f"shorter than {MIN_PASSPHRASE}"):
        check_new_passphrase(short, source="entered")
    with pytest.raises(UsageError):
        create_workspace(tmp_path / "ws", WorkspaceOptions(), passphrase=short)
    assert not (tmp_path / "ws").exists()


def test_create_workspace_makes_an_openable_workspace_with_the_chosen_key(tmp_path: Path) -> None:
    ws = create_workspace(tmp_path / "ws", WorkspaceOptions(default_key="main",
                                                            algorithm="sm4-gcm"),
                          passphrase="a long enough passphrase", kdf=KdfParams.unsafe_fast())
    try:
        info = ws.keys.info("main")
        assert (info.algorithm, info.backend) == ("sm4-gcm", "local")
        assert "workspace.unsafe_fast_kdf" in [e.action for e in ws.ledger.entries()]
    finally:
        ws.close()


def test_init_refuses_before_asking_for_a_passphrase(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SEALTUNE_PASSPHRASE", raising=False)  # a prompt would fail differently
    home = tmp_path / "ws"
    assert cli_main(["init", "--home", str(home), "--algorithm", "rot13"]) == 2
    assert "not supported" in capsys.readouterr().err
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", "short")
    assert cli_main(["init", "--home", str(home)]) == 2
    assert "shorter than" in capsys.readouterr().err
    assert not home.exists()
