"""The server assembly behind ``sealtune serve`` (serve/launch.py), without a network."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sealtune.cli import main as cli_main
from sealtune.errors import UsageError
from sealtune.serve import ServeOptions, build_server, create_api_key
from sealtune.serve.settings import ConnectionLimits
from sealtune.workspace import Workspace


def test_an_echo_server_is_built_attests_and_answers_an_authenticated_caller(
        workspace: Workspace) -> None:
    server = build_server(workspace, ServeOptions(model="echo", engine="echo", port=9443,
                                                  limits=ConnectionLimits(header_timeout=3)))
    assert server.model_id == "echo"
    assert server.description == "serving echo on 127.0.0.1:9443 (echo, dev-software)"
    assert len(server.warnings) == 1 and "dev-software attestation is NOT a TEE" in \
        server.warnings[0]
    opts = server.uvicorn_options
    assert (opts["host"], opts["port"], opts["ssl_certfile"], opts["access_log"]) == \
        ("127.0.0.1", 9443, None, False)
    assert opts["timeout_keep_alive"] == 3 and opts["ws"] == "none"
    key, _ = create_api_key(workspace, role="consumer", name="launch")
    with TestClient(server.app) as client:
        assert client.get("/v1/attestation").json()["platform"] == "dev-software"
        assert client.get("/v1/models").status_code == 401
        models = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert models.status_code == 200 and models.json()["data"][0]["id"] == "echo"
    assert "serve.jwt_key_created" in [e.action for e in workspace.ledger.entries()]


def test_weakened_guarantees_come_back_as_warnings_and_the_filter_switch_is_recorded(
        workspace: Workspace) -> None:
    server = build_server(workspace, ServeOptions(model="echo", engine="echo", host="0.0.0.0",
                                                  unsafe_no_pii_filter=True,
                                                  encrypted_only=True))
    assert server.warnings[0] == "--no-pii-filter: outputs are not redacted"
    assert "beyond loopback without TLS" in server.warnings[-1]
    assert server.description.endswith("(echo, dev-software, encrypted only)")
    assert [e.resource for e in workspace.ledger.entries(action="serve.unsafe_no_pii_filter")] \
        == ["echo"]
    with_tls = build_server(workspace, ServeOptions(
        model="echo", engine="echo", host="0.0.0.0", ssl_certfile=Path("cert.pem")))
    assert not any("TLS" in w for w in with_tls.warnings)


def test_inconsistent_options_are_usage_errors(workspace: Workspace, tmp_path: Path) -> None:
    for rate in (0.0, -1.0, 2e6):
        with pytest.raises(UsageError, match="--rate"):
            ServeOptions(model="echo", rate=rate)
    with pytest.raises(UsageError, match="transformers engine only"):
        build_server(workspace, ServeOptions(model="echo", engine="echo", base=tmp_path))
    with pytest.raises(UsageError, match="dev-software only"):
        build_server(workspace, ServeOptions(model="echo", engine="echo", attestation="tdx",
                                             dev_attestation_key=tmp_path / "k.pem"))


def test_the_command_refuses_a_bad_rate_before_asking_for_a_passphrase(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SEALTUNE_PASSPHRASE", raising=False)
    code = cli_main(["serve", "--engine", "echo", "--model", "echo", "--rate", "0",
                     "--home", str(tmp_path / "none")])
    assert code == 2 and "--rate must be a positive number" in capsys.readouterr().err
