"""The ``pkcs11`` keyring against a real SoftHSM2 token (no mocks)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest

from sealtune.config import Pkcs11Config
from sealtune.errors import (
    BackendUnavailableError,
    IntegrityError,
    KeyDestroyedError,
    KeyNotFoundError,
    KeyringError,
    UsageError,
)
from sealtune.keys.base import Keyring, WrappedKey, keyring_for
from sealtune.keys.pkcs11 import Pkcs11Keyring
from sealtune.workspace import Workspace

WorkspaceFactory = Callable[..., Workspace]  # the make_workspace fixture

AAD = b"sealtune-file:hsm-0001"


@pytest.fixture
def ring(softhsm: Pkcs11Config, make_workspace: WorkspaceFactory) -> Pkcs11Keyring:
    kr = keyring_for(make_workspace(pkcs11=softhsm), "pkcs11")
    assert isinstance(kr, Pkcs11Keyring)
    return kr


@contextmanager
def token_session(cfg: Pkcs11Config, pin: str, *, rw: bool = False) -> Iterator[Any]:
    """A direct session on the token, as an administrator (or attacker with the PIN) has."""
    import pkcs11
    from pkcs11.exceptions import NoSuchToken

    lib = pkcs11.lib(cfg.module)
    try:
        token = lib.get_token(token_label=cfg.token_label)
    except NoSuchToken:
        lib.reinitialize()
        token = lib.get_token(token_label=cfg.token_label)
    with token.open(rw=rw, user_pin=pin) as session:
        yield session


def labels_on_token(cfg: Pkcs11Config, pin: str) -> set[str]:
    from pkcs11 import Attribute

    with token_session(cfg, pin) as s:
        return {str(o[Attribute.LABEL]) for o in list(s.get_objects())}


def test_round_trip_on_the_token(
    ring: Pkcs11Keyring, softhsm: Pkcs11Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(ring, Keyring)
    info = ring.create("cmk", algorithm="aes-256-gcm")
    assert (info.uri, info.current, info.versions, info.state) == ("pkcs11:cmk", 1, (1,), "active")
    assert info.details["token"] == softhsm.token_label
    dk = secrets.token_bytes(32)
    w = ring.wrap("cmk", dk, aad=AAD)
    assert (w.kek_uri, w.version, len(w.blob)) == ("pkcs11:cmk", 1, 12 + 32 + 16)
    assert dk not in w.blob
    assert ring.unwrap(w, aad=AAD) == dk
    assert ring.wrap("cmk", dk, aad=AAD).blob != w.blob  # fresh nonce
    assert ring.unwrap(ring.wrap("cmk", dk[:16], aad=b""), aad=b"") == dk[:16]


def test_wrong_aad_and_tampering_fail(ring: Pkcs11Keyring) -> None:
    ring.create("cmk", algorithm="aes-256-gcm")
    dk = secrets.token_bytes(32)
    w = ring.wrap("cmk", dk, aad=AAD)
    with pytest.raises(IntegrityError) as exc:
        ring.unwrap(w, aad=AAD + b"!")
    assert "pkcs11:cmk" in str(exc.value)
    with pytest.raises(IntegrityError):
        ring.unwrap(w, aad=b"")
    for i in (0, 11, 12, len(w.blob) - 1):
        bad = bytearray(w.blob)
        bad[i] ^= 0x80
        with pytest.raises(IntegrityError):
            ring.unwrap(WrappedKey(w.kek_uri, 1, bytes(bad)), aad=AAD)
    for blob in (b"", w.blob[:20], w.blob[:-1]):
        with pytest.raises(IntegrityError):
            ring.unwrap(WrappedKey(w.kek_uri, 1, blob), aad=AAD)


def test_rotation_and_retirement(ring: Pkcs11Keyring, softhsm: Pkcs11Config) -> None:
    pin = _pin(softhsm)
    ring.create("cmk", algorithm="aes-256-gcm")
    dk1, dk2 = secrets.token_bytes(32), secrets.token_bytes(32)
    w1 = ring.wrap("cmk", dk1, aad=AAD)
    info = ring.rotate("cmk")
    assert (info.current, info.versions) == (2, (1, 2))
    w2 = ring.wrap("cmk", dk2, aad=AAD)
    assert w2.version == 2
    assert ring.unwrap(w1, aad=AAD) == dk1
    assert ring.unwrap(w2, aad=AAD) == dk2
    with pytest.raises(IntegrityError):  # a v1 blob relabelled v2 fails under the v2 key
        ring.unwrap(WrappedKey(w1.kek_uri, 2, w1.blob), aad=AAD)
    with pytest.raises(UsageError):
        ring.retire("cmk", below=3)
    info = ring.retire("cmk", below=2)
    assert (info.current, info.versions) == (2, (2,))
    with pytest.raises(KeyDestroyedError, match="retired"):
        ring.unwrap(w1, aad=AAD)
    with pytest.raises(KeyNotFoundError):
        ring.unwrap(WrappedKey(w1.kek_uri, 7, w1.blob), aad=AAD)
    assert ring.unwrap(w2, aad=AAD) == dk2
    labels = {lab for lab in labels_on_token(softhsm, pin) if lab.endswith(("/v1", "/v2"))}
    assert len(labels) == 1 and next(iter(labels)).endswith("/cmk/v2")
    assert ring.rotate("cmk").versions == (2, 3)


def test_destroy_makes_wrapped_keys_unreadable(ring: Pkcs11Keyring, softhsm: Pkcs11Config) -> None:
    ring.create("cmk", algorithm="aes-256-gcm")
    ring.create("other", algorithm="aes-256-gcm")
    w = ring.wrap("cmk", secrets.token_bytes(32), aad=AAD)
    ring.rotate("cmk")
    ring.destroy("cmk")
    with pytest.raises(KeyDestroyedError):
        ring.unwrap(w, aad=AAD)
    with pytest.raises(KeyDestroyedError):
        ring.wrap("cmk", b"k" * 32, aad=AAD)
    with pytest.raises(KeyDestroyedError):
        ring.destroy("cmk")
    info = ring.describe("cmk")
    assert (info.state, info.current, info.versions) == ("destroyed", 0, ())
    assert [(i.name, i.state) for i in ring.list()] == [("cmk", "destroyed"), ("other", "active")]
    with pytest.raises(UsageError):
        ring.create("cmk", algorithm="aes-256-gcm")
    labels = labels_on_token(softhsm, _pin(softhsm))
    assert not any("/cmk/v" in lab for lab in labels)
    assert any(lab.endswith("/cmk/destroyed") for lab in labels)


def test_key_objects_are_non_extractable(ring: Pkcs11Keyring, softhsm: Pkcs11Config) -> None:
    from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
    from pkcs11.exceptions import AttributeSensitive, KeyUnextractable, PKCS11Error

    ring.create("cmk", algorithm="aes-256-gcm")
    with token_session(softhsm, _pin(softhsm), rw=True) as s:
        (key,) = [
            o
            for o in s.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
            if str(o[Attribute.LABEL]).endswith("/cmk/v1")
        ]
        assert key[Attribute.TOKEN] is True
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.ALWAYS_SENSITIVE] is True  # generated on the token, never clear
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        assert key[Attribute.ENCRYPT] is True and key[Attribute.DECRYPT] is True
        assert key[Attribute.WRAP] is False and key[Attribute.UNWRAP] is False
        assert key[Attribute.SIGN] is False and key[Attribute.DERIVE] is False
        assert key[Attribute.VALUE_LEN] == 32
        with pytest.raises(AttributeSensitive):
            key[Attribute.VALUE]
        # CKR_ATTRIBUTE_READ_ONLY, or CKR_ACTION_PROHIBITED as the object is not modifiable.
        with pytest.raises(PKCS11Error):
            key[Attribute.EXTRACTABLE] = True
        assert key[Attribute.EXTRACTABLE] is False
        wrapper = s.generate_key(
            KeyType.AES,
            256,
            label="attacker-wrapping-key",
            capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP,
        )
        with pytest.raises(KeyUnextractable):
            wrapper.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)


def test_pin_errors_are_clear_and_never_echo_the_pin(
    ring: Pkcs11Keyring, softhsm: Pkcs11Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring.create("cmk", algorithm="aes-256-gcm")
    wrong = "0000" + secrets.token_hex(4)
    monkeypatch.setenv(softhsm.pin_env, wrong)
    with pytest.raises(KeyringError) as exc:
        ring.describe("cmk")
    text = exc.value.diagnostics()
    assert softhsm.pin_env in text and softhsm.token_label in text
    assert wrong not in text
    monkeypatch.delenv(softhsm.pin_env)
    with pytest.raises(BackendUnavailableError, match=softhsm.pin_env):
        ring.describe("cmk")


def test_two_workspaces_on_one_token_are_apart(
    softhsm: Pkcs11Config, make_workspace: WorkspaceFactory
) -> None:
    a = keyring_for(make_workspace(pkcs11=softhsm), "pkcs11")
    b = keyring_for(make_workspace(pkcs11=softhsm), "pkcs11")
    a.create("shared-name", algorithm="aes-256-gcm")
    a.create("only-a", algorithm="aes-256-gcm")
    b.create("shared-name", algorithm="aes-256-gcm")
    assert [i.name for i in a.list()] == ["only-a", "shared-name"]
    assert [i.name for i in b.list()] == ["shared-name"]
    with pytest.raises(KeyNotFoundError):
        b.describe("only-a")
    w = a.wrap("shared-name", secrets.token_bytes(32), aad=AAD)
    with pytest.raises(IntegrityError):
        b.unwrap(w, aad=AAD)
    b.destroy("shared-name")
    assert a.describe("shared-name").state == "active"


def test_configuration_errors(softhsm: Pkcs11Config, make_workspace: WorkspaceFactory) -> None:
    with pytest.raises(BackendUnavailableError, match="not configured"):
        keyring_for(make_workspace(), "pkcs11")
    ws = make_workspace(pkcs11=softhsm)
    ring = keyring_for(ws, "pkcs11")
    with pytest.raises(KeyringError, match="sm4-gcm") as exc:
        ring.create("sm", algorithm="sm4-gcm")
    assert exc.value.hint and "local" in exc.value.hint
    with pytest.raises(UsageError):
        ring.create("bad/name", algorithm="aes-256-gcm")
    missing_token = Pkcs11Keyring(
        replace(softhsm, token_label="no-such-token"), workspace_id=ws.config.workspace_id
    )
    with pytest.raises(BackendUnavailableError, match="no-such-token"):
        missing_token.list()
    missing_module = Pkcs11Keyring(
        replace(softhsm, module="/nonexistent/libnothing.so"), workspace_id=ws.config.workspace_id
    )
    with pytest.raises(BackendUnavailableError, match="libnothing"):
        missing_module.list()


def test_no_session_outlives_an_operation(ring: Pkcs11Keyring, softhsm: Pkcs11Config) -> None:
    """Login state lasts while any session is open: a fresh login must not find one."""
    ring.create("cmk", algorithm="aes-256-gcm")
    w = ring.wrap("cmk", b"k" * 32, aad=AAD)
    ring.unwrap(w, aad=AAD)
    with pytest.raises(IntegrityError):
        ring.unwrap(w, aad=b"wrong")
    ring.rotate("cmk")
    ring.list()
    with token_session(softhsm, _pin(softhsm)):  # UserAlreadyLoggedIn if a session leaked
        # ... and the backend still works while another session holds the login.
        assert ring.unwrap(w, aad=AAD) == b"k" * 32
    with token_session(softhsm, _pin(softhsm)):
        pass


def test_key_service_end_to_end(softhsm: Pkcs11Config, make_workspace: WorkspaceFactory) -> None:
    ws = make_workspace(pkcs11=softhsm, full=True)
    info = ws.keys.create("hsm", backend="pkcs11")
    assert info.uri == "pkcs11:hsm"
    dk = secrets.token_bytes(32)
    w = ws.keys.wrap("hsm", dk, aad=AAD)
    assert ws.keys.unwrap(w, aad=AAD) == dk
    ws.keys.rotate("hsm")
    assert ws.keys.unwrap(w, aad=AAD) == dk
    assert ws.keys.wrap("hsm", dk, aad=AAD).version == 2
    with pytest.raises(IntegrityError):
        ws.keys.unwrap(w, aad=b"other file")
    assert {i.uri for i in ws.keys.list()} >= {"pkcs11:hsm"}
    ws.keys.destroy("hsm")
    assert ws.keys.info("hsm").state == "destroyed"
    with pytest.raises(KeyDestroyedError):
        ws.keys.unwrap(w, aad=AAD)


def _pin(cfg: Pkcs11Config) -> str:
    return os.environ[cfg.pin_env]
