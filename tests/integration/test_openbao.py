"""The ``openbao`` keyring against a real OpenBao dev server (no mocks)."""

from __future__ import annotations

import base64
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from sealtune.config import OpenBaoConfig
from sealtune.errors import (
    BackendUnavailableError,
    IntegrityError,
    KeyDestroyedError,
    KeyNotFoundError,
    KeyringError,
    UsageError,
)
from sealtune.keys.base import Keyring, WrappedKey, keyring_for
from sealtune.keys.openbao import OpenBaoKeyring
from sealtune.workspace import Workspace

WorkspaceFactory = Callable[..., Workspace]  # the make_workspace fixture
AAD = b"sealtune-file:bao-0001"


@pytest.fixture
def ring(openbao: OpenBaoConfig, make_workspace: WorkspaceFactory) -> OpenBaoKeyring:
    kr = keyring_for(make_workspace(openbao=openbao), "openbao")
    assert isinstance(kr, OpenBaoKeyring)
    return kr


@pytest.fixture
def admin(openbao: OpenBaoConfig) -> Iterator[Any]:
    """A direct hvac client with the root token, as the key service's operator has."""
    import hvac

    client = hvac.Client(url=openbao.addr, token=os.environ[openbao.token_env])
    yield client
    client.adapter.close()


def test_round_trip_with_a_non_exportable_key(
    ring: OpenBaoKeyring, openbao: OpenBaoConfig, admin: Any
) -> None:
    from hvac.exceptions import VaultError

    assert isinstance(ring, Keyring)
    info = ring.create("byok", algorithm="aes-256-gcm")
    assert (info.uri, info.current, info.versions, info.state) == (
        "openbao:byok",
        1,
        (1,),
        "active",
    )
    assert info.details["transit_key"] == f"{openbao.key_prefix}byok"
    assert info.created
    dk = secrets.token_bytes(32)
    w = ring.wrap("byok", dk, aad=AAD)
    assert (w.kek_uri, w.version) == ("openbao:byok", 1)
    assert w.blob.startswith(b"vault:v1:")
    assert base64.b64encode(dk) not in w.blob
    assert ring.unwrap(w, aad=AAD) == dk
    assert ring.unwrap(ring.wrap("byok", dk[:16], aad=b""), aad=b"") == dk[:16]
    meta = admin.secrets.transit.read_key(f"{openbao.key_prefix}byok")["data"]
    assert meta["type"] == "aes256-gcm96"
    assert meta["exportable"] is False and meta["allow_plaintext_backup"] is False
    with pytest.raises(VaultError):
        admin.secrets.transit.export_key(f"{openbao.key_prefix}byok", key_type="encryption-key")


def test_wrong_aad_and_tampering_fail(ring: OpenBaoKeyring) -> None:
    ring.create("byok", algorithm="aes-256-gcm")
    dk = secrets.token_bytes(32)
    w = ring.wrap("byok", dk, aad=AAD)
    with pytest.raises(IntegrityError) as exc:
        ring.unwrap(w, aad=AAD + b"!")
    assert "openbao:byok" in str(exc.value)
    with pytest.raises(IntegrityError):
        ring.unwrap(w, aad=b"")
    raw = bytearray(base64.b64decode(w.blob.split(b":", 2)[2]))
    raw[-1] ^= 0x01
    tampered = b"vault:v1:" + base64.b64encode(bytes(raw))
    for blob in (tampered, b"vault:v1:", b"vault:v1:!!!", b"garbage", b"\xff\xfe", w.blob[:-4]):
        with pytest.raises(IntegrityError):
            ring.unwrap(WrappedKey(w.kek_uri, 1, blob), aad=AAD)
    with pytest.raises(IntegrityError):  # metadata says v2, the blob says v1
        ring.unwrap(WrappedKey(w.kek_uri, 2, w.blob), aad=AAD)


def test_rotation_and_retirement_trim_old_versions(
    ring: OpenBaoKeyring, openbao: OpenBaoConfig, admin: Any
) -> None:
    ring.create("byok", algorithm="aes-256-gcm")
    dk1, dk2 = secrets.token_bytes(32), secrets.token_bytes(32)
    w1 = ring.wrap("byok", dk1, aad=AAD)
    info = ring.rotate("byok")
    assert (info.current, info.versions) == (2, (1, 2))
    w2 = ring.wrap("byok", dk2, aad=AAD)
    assert w2.version == 2 and w2.blob.startswith(b"vault:v2:")
    assert ring.unwrap(w1, aad=AAD) == dk1
    assert ring.unwrap(w2, aad=AAD) == dk2
    with pytest.raises(UsageError):
        ring.retire("byok", below=3)
    info = ring.retire("byok", below=2)
    assert (info.current, info.versions) == (2, (2,))
    with pytest.raises(KeyDestroyedError, match="retired"):
        ring.unwrap(w1, aad=AAD)
    assert ring.unwrap(w2, aad=AAD) == dk2
    with pytest.raises(KeyNotFoundError):
        ring.unwrap(WrappedKey(w2.kek_uri, 9, w2.blob.replace(b"vault:v2:", b"vault:v9:")), aad=AAD)
    meta = admin.secrets.transit.read_key(f"{openbao.key_prefix}byok")["data"]
    assert set(meta["keys"]) == {"2"}
    assert meta["min_available_version"] == 2  # trimmed: really gone, not just disallowed
    assert ring.retire("byok", below=2).versions == (2,)  # idempotent at the same floor


def test_destroy_deletes_the_transit_key(
    ring: OpenBaoKeyring, openbao: OpenBaoConfig, admin: Any
) -> None:
    from hvac.exceptions import InvalidPath

    ring.create("byok", algorithm="aes-256-gcm")
    ring.create("keep", algorithm="aes-256-gcm")
    w = ring.wrap("byok", secrets.token_bytes(32), aad=AAD)
    ring.destroy("byok")
    with pytest.raises(KeyNotFoundError):
        ring.unwrap(w, aad=AAD)
    with pytest.raises(KeyNotFoundError):
        ring.describe("byok")
    with pytest.raises(KeyNotFoundError):  # and transit's encrypt did not re-create it
        ring.wrap("byok", b"k" * 32, aad=AAD)
    with pytest.raises(InvalidPath):
        admin.secrets.transit.read_key(f"{openbao.key_prefix}byok")
    assert [i.name for i in ring.list()] == ["keep"]


def test_create_refuses_existing_and_unsupported(
    ring: OpenBaoKeyring, openbao: OpenBaoConfig, admin: Any
) -> None:
    admin.secrets.transit.create_key(f"{openbao.key_prefix}stranger", key_type="aes256-gcm96")
    with pytest.raises(UsageError, match="already exists"):
        ring.create("stranger", algorithm="aes-256-gcm")
    ring.create("mine", algorithm="aes-256-gcm")
    with pytest.raises(UsageError):
        ring.create("mine", algorithm="aes-256-gcm")
    with pytest.raises(KeyringError, match="sm4-gcm"):
        ring.create("sm", algorithm="sm4-gcm")
    with pytest.raises(UsageError):
        ring.create("bad/name", algorithm="aes-256-gcm")
    with pytest.raises(UsageError):
        ring.wrap("mine", b"", aad=AAD)


def test_workspaces_with_different_prefixes_are_apart(
    openbao: OpenBaoConfig, make_workspace: WorkspaceFactory
) -> None:
    other = replace(openbao, key_prefix=f"u{secrets.token_hex(4)}-")
    a = keyring_for(make_workspace(openbao=openbao), "openbao")
    b = keyring_for(make_workspace(openbao=other), "openbao")
    a.create("k", algorithm="aes-256-gcm")
    a.create("only-a", algorithm="aes-256-gcm")
    b.create("k", algorithm="aes-256-gcm")
    assert [i.name for i in a.list()] == ["k", "only-a"]
    assert [i.name for i in b.list()] == ["k"]
    w = a.wrap("k", secrets.token_bytes(32), aad=AAD)
    with pytest.raises(IntegrityError):
        b.unwrap(w, aad=AAD)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_server_down_is_unavailable_and_names_the_address(
    openbao: OpenBaoConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "hvs.planted-" + secrets.token_hex(8)
    monkeypatch.setenv(openbao.token_env, token)
    down = replace(openbao, addr=f"http://127.0.0.1:{_closed_port()}")
    ring = OpenBaoKeyring(down)
    for call in (
        lambda: ring.create("k", algorithm="aes-256-gcm"),
        ring.list,
        lambda: ring.unwrap(WrappedKey("openbao:k", 1, b"vault:v1:AAAA"), aad=AAD),
    ):
        with pytest.raises(BackendUnavailableError) as exc:
            call()
        assert down.addr in str(exc.value)
        assert token not in exc.value.diagnostics()
        assert exc.value.__cause__ is None and exc.value.__suppress_context__


def test_token_problems_are_clear_and_never_echo_the_token(
    ring: OpenBaoKeyring,
    openbao: OpenBaoConfig,
    monkeypatch: pytest.MonkeyPatch,
    make_workspace: WorkspaceFactory,
) -> None:
    ring.create("k", algorithm="aes-256-gcm")
    wrong = "hvs.wrong-" + secrets.token_hex(8)
    monkeypatch.setenv(openbao.token_env, wrong)
    with pytest.raises(KeyringError, match="permission denied") as exc:
        ring.describe("k")
    assert wrong not in exc.value.diagnostics()
    assert exc.value.hint and openbao.token_env in exc.value.hint
    monkeypatch.delenv(openbao.token_env)
    with pytest.raises(BackendUnavailableError, match=openbao.token_env):
        keyring_for(make_workspace(openbao=openbao), "openbao")
    with pytest.raises(BackendUnavailableError, match=openbao.token_env):
        ring.describe("k")


def test_missing_mount_and_missing_config(
    openbao: OpenBaoConfig, make_workspace: WorkspaceFactory
) -> None:
    ring = OpenBaoKeyring(replace(openbao, mount="no-such-mount"))
    with pytest.raises(BackendUnavailableError, match="no-such-mount"):
        ring.create("k", algorithm="aes-256-gcm")
    with pytest.raises(BackendUnavailableError, match="no-such-mount"):
        ring.list()
    with pytest.raises(BackendUnavailableError, match="not configured"):
        keyring_for(make_workspace(), "openbao")


def test_key_service_end_to_end(openbao: OpenBaoConfig, make_workspace: WorkspaceFactory) -> None:
    ws = make_workspace(openbao=openbao, full=True)
    info = ws.keys.create("hyok", backend="openbao")
    assert info.uri == "openbao:hyok"
    dk = secrets.token_bytes(32)
    w = ws.keys.wrap("hyok", dk, aad=AAD)
    assert ws.keys.unwrap(w, aad=AAD) == dk
    ws.keys.rotate("hyok")
    assert ws.keys.wrap("hyok", dk, aad=AAD).version == 2
    ws.keys.retire("hyok", below=2)
    with pytest.raises(KeyDestroyedError):
        ws.keys.unwrap(w, aad=AAD)
    with pytest.raises(IntegrityError):
        ws.keys.unwrap(ws.keys.wrap("hyok", dk, aad=AAD), aad=b"other file")
    ws.keys.destroy("hyok")
    assert ws.keys.info("hyok").state == "destroyed"
