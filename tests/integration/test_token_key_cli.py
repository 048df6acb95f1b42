"""``sealtune auth rotate-token-key | token-keys | retire-token-key`` as a user runs them.

Real subprocesses on a real workspace; a token service in this process
stands in for a running server that follows the keyring.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest

from sealtune.serve import token_service
from sealtune.serve.auth import Denied
from sealtune.workspace import Workspace

SEALTUNE = [sys.executable, "-m", "sealtune"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    base.update({"SEALTUNE_HOME": str(tmp_path / "home"),
                 "SEALTUNE_PASSPHRASE": "tk-pass-" + secrets.token_hex(8),
                 "SEALTUNE_UNSAFE_FAST_KDF": "1", "TMPDIR": str(tmp_path / "tmp")})
    (tmp_path / "tmp").mkdir()
    return base


def sealtune(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SEALTUNE, *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def ok(env: dict[str, str], *args: str) -> str:
    res = sealtune(env, *args)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res.stdout


def token_keys(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {k["kid"]: k for k in json.loads(ok(env, "auth", "token-keys", "--json"))}


def events(env: dict[str, str], action: str) -> list[dict[str, Any]]:
    out = ok(env, "audit", "log", "--action", action, "--json")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_rotate_list_retire(env: dict[str, str]) -> None:
    ok(env, "init")
    key_id = ok(env, "auth", "create-key", "--role", "consumer").strip().split("_")[1]
    token1 = ok(env, "auth", "issue-token", "--key-id", key_id).strip().splitlines()[-1]
    (kid1, listed), = token_keys(env).items()
    assert listed["state"] == "signing" and listed["superseded"] is None
    assert jwt.get_unverified_header(token1)["kid"] == kid1
    ws = Workspace.open(Path(env["SEALTUNE_HOME"]), passphrase=env["SEALTUNE_PASSPHRASE"])
    try:
        server = token_service(ws)
        assert server.verify(token1)["sub"] == key_id

        kid2 = ok(env, "auth", "rotate-token-key").strip()
        assert kid2 != kid1
        keys = token_keys(env)
        assert {k: v["state"] for k, v in keys.items()} == {kid1: "verify-only", kid2: "signing"}
        assert all(set(v) == {"kid", "created", "state", "superseded"} for v in keys.values())
        ws.keyfile.reload()
        stored = [r["key"] for r in ws.keyfile.items("serve").values()]  # both keys
        token2 = ok(env, "auth", "issue-token", "--key-id", key_id).strip().splitlines()[-1]
        assert jwt.get_unverified_header(token2)["kid"] == kid2
        assert token_service(ws).verify(token1) and token_service(ws).verify(token2)

        refused = sealtune(env, "auth", "retire-token-key", kid2)
        assert refused.returncode == 2 and "rotate-token-key" in refused.stderr
        recent = sealtune(env, "auth", "retire-token-key", kid1)
        assert recent.returncode == 2 and "--force" in recent.stderr
        assert "less than 24 hours" in recent.stderr
        unknown = sealtune(env, "auth", "retire-token-key", "nosuchkid")
        assert unknown.returncode == 2 and "token-keys" in unknown.stderr
        assert set(token_keys(env)) == {kid1, kid2}

        forced = sealtune(env, "auth", "retire-token-key", kid1, "--force")
        assert forced.returncode == 0, forced.stderr
        assert "--force" in forced.stderr
        assert set(token_keys(env)) == {kid2}
        fresh = token_service(ws)
        with pytest.raises(Denied):
            fresh.verify(token1)
        assert fresh.verify(token2)["sub"] == key_id
    finally:
        ws.close()

    assert [e["details"] for e in events(env, "serve.jwt_key_created")] == [{"kid": kid1}]
    assert [e["details"] for e in events(env, "serve.jwt_key_rotated")] == [
        {"old_kid": kid1, "new_kid": kid2}]
    assert [e["details"] for e in events(env, "serve.jwt_key_retired")] == [
        {"kid": kid1, "forced": True}]
    exported = ok(env, "audit", "export", "--format", "jsonl")
    assert len(stored) == 2 and not any(key in exported for key in stored)
    assert token1 not in exported and token2 not in exported
    assert "audit log verified" in ok(env, "audit", "verify")
