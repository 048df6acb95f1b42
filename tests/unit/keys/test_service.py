"""KeyService: catalogue, dispatch to backends and audit events (real workspace and ledger)."""

from __future__ import annotations

import base64
import json
import secrets

import pytest

from sealtune.errors import (
    BackendUnavailableError,
    ConfigError,
    IntegrityError,
    KeyDestroyedError,
    KeyNotFoundError,
    UsageError,
)
from sealtune.keys.base import WrappedKey
from sealtune.workspace import Workspace

AAD = b"sealtune-file:svc-0001"


def events(ws: Workspace, action: str | None = None) -> list[tuple[str, str, str, dict]]:  # type: ignore[type-arg]
    """(action, resource, outcome, details) of key events, in order."""
    return [
        (e.action, e.resource, e.outcome, dict(e.details))
        for e in ws.ledger.entries(action=action)
        if e.action.startswith("key.")
    ]


def test_fixture_keys_are_catalogued_and_audited(workspace: Workspace) -> None:
    infos = workspace.keys.list()
    assert [(i.name, i.backend, i.algorithm, i.current) for i in infos] == [
        ("k1", "local", "aes-256-gcm", 1),
        ("k2", "local", "aes-256-gcm", 1),
        ("ksm4", "local", "sm4-gcm", 1),
    ]
    assert events(workspace, "key.create") == [
        ("key.create", "local:k1", "success", {"algorithm": "aes-256-gcm", "version": 1}),
        ("key.create", "local:k2", "success", {"algorithm": "aes-256-gcm", "version": 1}),
        ("key.create", "local:ksm4", "success", {"algorithm": "sm4-gcm", "version": 1}),
    ]


@pytest.mark.parametrize(("name", "size"), [("k1", 32), ("ksm4", 16)])
def test_wrap_unwrap_are_audited_without_secrets(
    workspace: Workspace, name: str, size: int
) -> None:
    dk = secrets.token_bytes(size)
    w = workspace.keys.wrap(name, dk, aad=AAD)
    assert w.kek_uri == f"local:{name}"
    assert workspace.keys.can_unwrap(w)
    assert workspace.keys.unwrap(w, aad=AAD) == dk
    with pytest.raises(IntegrityError):
        workspace.keys.unwrap(w, aad=b"another file")
    assert events(workspace)[-3:] == [
        ("key.wrap", f"local:{name}", "success", {"version": 1}),
        ("key.unwrap", f"local:{name}", "success", {"version": 1}),
        ("key.unwrap", f"local:{name}", "failure", {"version": 1, "error": "IntegrityError"}),
    ]
    dump = json.dumps([e.to_dict() for e in workspace.ledger.entries()], default=str)
    for needle in (dk.hex(), base64.b64encode(dk).decode(), w.blob.hex(), AAD.decode()):
        assert needle not in dump


def test_rotate_retire_destroy_lifecycle(workspace: Workspace) -> None:
    keys = workspace.keys
    dk = secrets.token_bytes(32)
    w1 = keys.wrap("k2", dk, aad=AAD)
    assert keys.rotate("k2").current == 2
    w2 = keys.wrap("k2", dk, aad=AAD)
    assert (w2.version, keys.unwrap(w1, aad=AAD)) == (2, dk)
    info = keys.retire("k2", below=2)
    assert info.versions == (2,)
    with pytest.raises(KeyDestroyedError):
        keys.unwrap(w1, aad=AAD)
    assert keys.unwrap(w2, aad=AAD) == dk
    keys.destroy("k2")
    assert keys.info("k2").state == "destroyed"
    assert not keys.can_unwrap(w2)
    for call in (
        lambda: keys.unwrap(w2, aad=AAD),
        lambda: keys.wrap("k2", dk, aad=AAD),
        lambda: keys.rotate("k2"),
        lambda: keys.retire("k2", below=2),
        lambda: keys.destroy("k2"),
    ):
        with pytest.raises(KeyDestroyedError):
            call()
    with pytest.raises(UsageError):
        keys.create("k2")
    life = [
        (a, r, o, d)
        for a, r, o, d in events(workspace)
        if a in {"key.rotate", "key.retire", "key.destroy"} or o == "failure"
    ]
    assert life == [
        ("key.rotate", "local:k2", "success", {"version": 2}),
        ("key.retire", "local:k2", "success", {"below": 2}),
        ("key.unwrap", "local:k2", "failure", {"version": 1, "error": "KeyDestroyedError"}),
        ("key.destroy", "local:k2", "success", {}),
        ("key.unwrap", "local:k2", "failure", {"version": 2, "error": "KeyDestroyedError"}),
    ]
    # The other keys are untouched.
    assert [i.state for i in keys.list()] == ["active", "destroyed", "active"]


def test_create_refusals(workspace: Workspace) -> None:
    keys = workspace.keys
    with pytest.raises(UsageError):
        keys.create("k1")
    with pytest.raises(UsageError):
        keys.create("no/slash")
    with pytest.raises(UsageError):
        keys.create("x", algorithm="rot13")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        keys.create("x", backend="nosuch")
    with pytest.raises(BackendUnavailableError, match="not configured"):
        keys.create("x", backend="pkcs11")
    assert [n for n in (i.name for i in keys.list())] == ["k1", "k2", "ksm4"]
    failures = [
        (a, r, d["error"]) for a, r, o, d in events(workspace, "key.create") if o == "failure"
    ]
    assert failures == [
        ("key.create", "nosuch:x", "ConfigError"),
        ("key.create", "pkcs11:x", "BackendUnavailableError"),
    ]


def test_unwrap_refuses_unknown_and_mismatched_keys(workspace: Workspace) -> None:
    keys = workspace.keys
    w = keys.wrap("k1", secrets.token_bytes(32), aad=AAD)
    with pytest.raises(KeyNotFoundError):
        keys.unwrap(WrappedKey("pkcs11:k1", 1, w.blob), aad=AAD)
    with pytest.raises(KeyNotFoundError):
        keys.unwrap(WrappedKey("local:ghost", 1, w.blob), aad=AAD)
    with pytest.raises(KeyNotFoundError):
        keys.info("ghost")
    with pytest.raises(IntegrityError):  # k1's blob under k2
        keys.unwrap(WrappedKey("local:k2", 1, w.blob), aad=AAD)
    assert not keys.can_unwrap(WrappedKey("pkcs11:k1", 1, w.blob))


def test_reopened_workspace_unwraps_and_ledger_verifies(
    workspace: Workspace, passphrase: str
) -> None:
    dk = secrets.token_bytes(32)
    w = workspace.keys.wrap("k1", dk, aad=AAD)
    workspace.keys.rotate("k1")
    workspace.close()
    again = Workspace.open(workspace.root, passphrase=passphrase)
    try:
        assert again.keys.unwrap(w, aad=AAD) == dk
        assert again.keys.info("k1").versions == (1, 2)
        report = again.ledger.verify(again.ledger_verifier())
        assert report.ok, report.reason
    finally:
        again.close()


_KILL_DURING_CREATE = """
import os, signal, sys
from pathlib import Path
from sealtune.keys.local import LocalKeyring
from sealtune.workspace import Workspace

real = LocalKeyring.create
def create(self, name, *, algorithm):
    if sys.argv[3] == "after":
        real(self, name, algorithm=algorithm)
    os.kill(os.getpid(), signal.SIGKILL)
LocalKeyring.create = create
ws = Workspace.open(Path(sys.argv[1]), passphrase=sys.argv[2])
ws.keys.create("half", backend="local")
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_create_killed_midway_is_refused_then_cleared(
        workspace: Workspace, passphrase: str, when: str) -> None:
    """SIGKILL between reserving the name and finishing: the key is unusable until cleared."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _KILL_DURING_CREATE, str(workspace.root),
                           passphrase, when], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    workspace.keyfile.reload()
    assert workspace.keys.info("half").state == "creating"
    with pytest.raises(UsageError, match="interrupted") as info:
        workspace.keys.create("half", backend="local")
    assert "keys destroy half --yes" in str(info.value.hint)
    with pytest.raises(KeyNotFoundError, match="never finished"):
        workspace.keys.wrap("half", secrets.token_bytes(32), aad=b"x")
    workspace.keys.destroy("half")
    event = [e for e in workspace.ledger.entries() if e.action == "key.destroy"][-1]
    assert event.details == {"interrupted_create": True, "backend_had_it": when == "after"}
    if when == "before":  # the backend never made it: the name is free again
        assert workspace.keys.create("half", backend="local").current == 1
    else:  # the backend made and destroyed it: like every destroyed name, it stays used
        assert workspace.keys.info("half").state == "destroyed"
        with pytest.raises(UsageError, match="already exists"):
            workspace.keys.create("half", backend="local")
